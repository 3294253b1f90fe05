#!/usr/bin/env bash
# tandem generate on the default model: greedy output is deterministic, --json ends with one object
# holding the documented fields, the streamed text is the JSON's text, and bad values are refused.
# TANDEM_CHAT_TEST_MODEL runs it on another model (one with a tokenizer).
set -u
fail=0
model=()
[ -n "${TANDEM_CHAT_TEST_MODEL:-}" ] && model=(--model "$TANDEM_CHAT_TEST_MODEL")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bad() { echo "FAIL: $*"; fail=1; }
gen() { "$TANDEM" generate "${model[@]}" --threads 2 "$@"; }

# the field of a one-line JSON object (numbers, null, or an array of numbers)
field() { printf '%s' "$1" | sed -n "s/.*\"$2\":\(\[[^]]*\]\|[^,}]*\).*/\1/p"; }

out1=$(gen --prompt "Hello, how are you?" -n 12 --json 2>"$tmp/err1") || { bad "generate --json failed: $(cat "$tmp/err1")"; }
out2=$(gen --prompt "Hello, how are you?" -n 12 --json 2>/dev/null)
last=$(printf '%s\n' "$out1" | tail -n 1)
case "$last" in \{*\}) ;; *) bad "last line is not one JSON object: $last" ;; esac
for key in text tokens prompt_tok_s decode_tok_s mtp_acceptance tokens_per_step stop; do
  printf '%s' "$last" | grep -q "\"$key\":" || bad "--json lacks \"$key\": $last"
done
[ "$(field "$last" mtp_acceptance)" = "null" ] || bad "mtp_acceptance is not null without MTP"
[ "$(field "$last" tokens_per_step)" = "1" ] || bad "tokens_per_step is not 1 without MTP"
toks=$(field "$last" tokens)
n=$(printf '%s' "$toks" | tr -cd ',' | wc -c)
stop=$(field "$last" stop)
{ [ "$stop" = '"max_tokens"' ] && [ $((n + 1)) -eq 12 ]; } || [ "$stop" = '"eos"' ] || bad "12 tokens asked, got $((n + 1)) (stop $stop)"
[ "$toks" = "$(field "$(printf '%s\n' "$out2" | tail -n 1)" tokens)" ] || bad "greedy runs differ: $toks"
awk "BEGIN{exit !($(field "$last" prompt_tok_s) > 0 && $(field "$last" decode_tok_s) > 0)}" || bad "speeds are not positive"

# the streamed text is the JSON's text: decode the JSON's ids the same way and compare bytes
gen --prompt "Hello, how are you?" -n 12 > "$tmp/streamed" 2>"$tmp/stats" || bad "streaming generate failed"
grep -q "prompt tokens at .* tok/s" "$tmp/stats" || bad "no stats line on stderr: $(cat "$tmp/stats")"
printf '%s' "$toks" | "$TANDEM" tokenize "${model[@]}" --decode --skip-special > "$tmp/decoded" 2>&1 || bad "decode failed"
printf '\n' >> "$tmp/decoded"
cmp -s "$tmp/streamed" "$tmp/decoded" || bad "streamed text differs from the decoded ids"

# sampling with a seed repeats; another seed (almost surely) does not
s1=$(field "$(gen --prompt Hi -n 16 --temp 1 --top-p 0.95 --top-k 50 --seed 7 --json | tail -n 1)" tokens)
s2=$(field "$(gen --prompt Hi -n 16 --temp 1 --top-p 0.95 --top-k 50 --seed 7 --json | tail -n 1)" tokens)
s3=$(field "$(gen --prompt Hi -n 16 --temp 1 --top-p 0.95 --top-k 50 --seed 8 --json | tail -n 1)" tokens)
[ -n "$s1" ] && [ "$s1" = "$s2" ] || bad "seeded sampling does not repeat: $s1 / $s2"
[ "$s1" != "$s3" ] || bad "seeds 7 and 8 gave the same tokens"

# without --seed, sampling takes a fresh seed each run and reports it; --seed with it repeats the run
j1=$(gen --prompt Hi -n 16 --temp 1 --json 2>/dev/null | tail -n 1)
j2=$(gen --prompt Hi -n 16 --temp 1 --json 2>/dev/null | tail -n 1)
seed1=$(field "$j1" seed); seed2=$(field "$j2" seed)
[ -n "$seed1" ] && [ -n "$seed2" ] || bad "--json reports no seed: $j1"
[ "$seed1" != "$seed2" ] || bad "two runs without --seed drew the same seed $seed1"
again=$(gen --prompt Hi -n 16 --temp 1 --seed "$seed1" --json 2>/dev/null | tail -n 1)
[ "$(field "$again" tokens)" = "$(field "$j1" tokens)" ] || bad "--seed $seed1 does not repeat its run: $(field "$j1" tokens) vs $(field "$again" tokens)"
[ "$(field "$again" seed)" = "$seed1" ] || bad "--seed $seed1 reported as $(field "$again" seed)"
gen --prompt Hi -n 4 --temp 1 > /dev/null 2> "$tmp/seeded"
grep -q "seed [0-9]" "$tmp/seeded" || bad "the status line does not show the seed: $(cat "$tmp/seeded")"

# the context in use never reads more than the context (the last token chosen has no position)
gen --prompt Hi -n 8 --ctx 5 > /dev/null 2> "$tmp/ctx5" || bad "--ctx 5 failed: $(cat "$tmp/ctx5")"
grep -q " [0-5]/5 context" "$tmp/ctx5" || bad "--ctx 5 shows: $(cat "$tmp/ctx5")"
j=$(gen --prompt Hi -n 8 --ctx 5 --json 2>/dev/null | tail -n 1)
[ "$(field "$j" ctx_used)" -le "$(field "$j" ctx_size)" ] || bad "ctx_used exceeds ctx_size: $j"

# more threads than cores: it runs, with a warning (and --help says what the default is)
many=$(( $(nproc) + 1 ))
gen --prompt Hi -n 2 --threads "$many" > /dev/null 2> "$tmp/threads" || bad "--threads $many failed"
grep -q "warning: --threads $many is more than this machine's [0-9]* cores" "$tmp/threads" || bad "no warning for --threads $many: $(cat "$tmp/threads")"
gen --prompt Hi -n 2 --threads 1 > /dev/null 2> "$tmp/threads1"
grep -q "warning" "$tmp/threads1" && bad "a warning for --threads 1: $(cat "$tmp/threads1")"
"$TANDEM" generate --help | grep -q -- "--threads N .*one pinned thread per core, [0-9]* here" || bad "--help does not say the default thread count"

# other templates and a system prompt run; raw has no chat markers
gen --prompt Hi -n 4 --template r1 --system "Be brief." --json > /dev/null 2>&1 || bad "--template r1 --system failed"
gen --prompt Hi -n 4 --template raw --json > /dev/null 2>&1 || bad "--template raw failed"
printf 'Hi from a file' > "$tmp/prompt.txt"
gen --prompt-file "$tmp/prompt.txt" -n 4 --json > /dev/null 2>&1 || bad "--prompt-file failed"

# bad values: exit 2 and the option named; bad files: exit 1 and a message
expect() { # expect <rc> <pattern> <args...>
  local want=$1 pat=$2; shift 2
  local out rc
  out=$(gen "$@" 2>&1); rc=$?
  if [ $rc -ne "$want" ] || ! printf '%s' "$out" | grep -q -- "$pat"; then bad "generate $* -> rc=$rc: $out"; fi
}
expect 2 "\-\-temp" --prompt x --temp -1
expect 2 "\-\-temp" --prompt x --temp nan
expect 2 "\-\-top-p" --prompt x --top-p 0
expect 2 "\-\-top-p" --prompt x --top-p 1.5
expect 2 "\-\-top-k" --prompt x --top-k -4
expect 2 "\-\-min-p" --prompt x --min-p 1
expect 2 "not an integer" --prompt x -n abc
expect 2 "out of range" --prompt x -n 99999999999
expect 2 "out of range" --prompt x --ctx 0
expect 2 "out of range" --prompt x --threads 100000
expect 2 "\-\-template" --prompt x --template chatml
expect 2 "\-\-kernels" --prompt x --kernels turbo
expect 2 "exactly one of" -n 3
expect 2 "unknown option" --prompt x --frob
expect 1 "no such file" --prompt x --model "$tmp/missing.gguf"
expect 1 "has no tokenizer" --prompt x --model "$TANDEM_SHARED/fixtures/safetensors/tiny-dsv3-bf16"
expect 1 "cannot open" --prompt-file "$tmp/missing.txt"
expect 2 "is a directory" --prompt-file "$tmp"
# text that is not UTF-8: the offset is in the user's own text, not in the rendered chat template
expect 2 "\-\-prompt is not valid UTF-8 at byte 2 of 5" --prompt $'ab\xffcd'
expect 2 "\-\-system is not valid UTF-8 at byte 0" --prompt x --system $'\xfe'
printf 'caf\xe9' > "$tmp/latin1.txt"
expect 1 "latin1.txt is not valid UTF-8 at byte 3 of 4" --prompt-file "$tmp/latin1.txt"
expect 2 "\-\-seed" --prompt x --seed -3
# the path once, not "--mtp-from x: x: ..."
expect 1 "\-\-mtp-from $tmp/none: [A-Za-z]" --prompt x --mtp-from "$tmp/none"
expect 1 "context holds" --prompt "$(head -c 3000 /dev/zero | tr '\0' 'a') $(seq 1 400)" --ctx 64

[ $fail -eq 0 ] && echo "ok: generate"
exit $fail
