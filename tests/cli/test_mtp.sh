#!/usr/bin/env bash
# MTP speculative decoding from the command line: greedy streams are the same with --mtp on, auto and
# off (200 tokens, on the default model and on the bundled model when models/ holds one), generate --json
# reports the MTP fields, a model without MTP gets one note and still answers, chat /stats shows MTP,
# `tandem bench mtp` ends with a JSON line, and bad values are refused.
set -u
fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bad() { echo "FAIL: $*"; fail=1; }
field() { printf '%s' "$1" | sed -n "s/.*\"$2\":\(\[[^]]*\]\|\"[^\"]*\"\|[^,}]*\).*/\1/p"; }
gen() { "$TANDEM" generate --threads 2 --ignore-eos --json "$@" 2>"$tmp/err" | tail -n 1; }

# greedy: the same 200 tokens with --mtp on and off (the first 64 for k = 2 and auto), on the default
# model and the bundled one; under the sanitizers 24 tokens on the default model (test_mtp covers more)
n=200; short=64
models=("")
if [ "${TANDEM_SANITIZED:-0}" = 1 ]; then
  n=24; short=24
else
  for m in "${TANDEM_SOURCE_DIR:-.}"/models/*.gguf; do [ -f "$m" ] && models+=("$m"); done
fi
first() { printf '%s' "$1" | tr -d '[]' | cut -d, -f"1-$2"; } # the first N ids of a JSON array
for m in "${models[@]}"; do
  margs=(); [ -n "$m" ] && margs=(--model "$m")
  name=${m:-default model}
  off=$(gen "${margs[@]}" --prompt "Tell me about the sea." -n $n --mtp off)
  [ "$(field "$off" mtp)" = '"off"' ] && [ "$(field "$off" mtp_acceptance)" = null ] || bad "$name: --mtp off JSON: $off"
  want=$(field "$off" tokens)
  [ "$(printf '%s' "$want" | tr -cd ',' | wc -c)" -eq $((n - 1)) ] || bad "$name: $n tokens asked, got: $want"
  for args in "--mtp on" "--mtp on --mtp-k 2" "--mtp auto"; do
    len=$short; [ "$args" = "--mtp on" ] && len=$n
    # shellcheck disable=SC2086
    out=$(gen "${margs[@]}" --prompt "Tell me about the sea." -n $len $args)
    [ "$(first "$(field "$out" tokens)" $len)" = "$(first "$want" $len)" ] ||
      bad "$name: $args gives another greedy stream than --mtp off"
    acc=$(field "$out" mtp_acceptance)
    awk "BEGIN{exit !($acc >= 0 && $acc <= 1)}" 2>/dev/null || bad "$name: $args: mtp_acceptance '$acc'"
    awk "BEGIN{exit !($(field "$out" tokens_per_step) >= 1)}" || bad "$name: $args: tokens_per_step"
    case "$args" in
      *auto*) # auto decides within 64 tokens and reports the speedup it measured
        [ "$(field "$out" mtp)" = '"auto"' ] || bad "$name: auto: mtp field: $out"
        sp=$(field "$out" mtp_speedup)
        [ $len -lt 64 ] || awk "BEGIN{exit !($sp > 0)}" 2>/dev/null || bad "$name: auto measured no speedup: '$sp'" ;;
      *) [ "$(field "$out" mtp)" = '"on"' ] && [ "$(field "$out" mtp_drafting)" = true ] &&
           [ "$(field "$out" mtp_speedup)" = null ] || bad "$name: $args JSON: $out" ;;
    esac
  done
done

# the streamed run says how MTP did on stderr
"$TANDEM" generate --threads 2 --prompt Hi -n 16 --ignore-eos --mtp on > /dev/null 2>"$tmp/stats" || bad "streamed --mtp on failed"
grep -q "MTP [0-9]*% accepted, [0-9.]* tokens/step" "$tmp/stats" || bad "no MTP in the stats line: $(cat "$tmp/stats")"

# sampling with MTP: a seed repeats itself
s1=$(field "$(gen --prompt Hi -n 24 --temp 1 --seed 5 --mtp on)" tokens)
s2=$(field "$(gen --prompt Hi -n 24 --temp 1 --seed 5 --mtp on)" tokens)
[ -n "$s1" ] && [ "$s1" = "$s2" ] || bad "seeded sampling with MTP does not repeat: $s1 / $s2"

# a model without an MTP block: one note, and the answer still comes
legacy="$TANDEM_SHARED/fixtures/gguf/tiny-dsv3-q8_0-legacy.gguf"
out=$(gen --model "$legacy" --prompt Hi -n 8 --mtp on) || bad "--mtp on without an MTP block failed"
[ "$(grep -c "no MTP block" "$tmp/err")" -eq 1 ] || bad "expected one note about the missing MTP block: $(cat "$tmp/err")"
[ "$(field "$out" mtp)" = '"off"' ] && [ "$(field "$out" mtp_acceptance)" = null ] || bad "no-MTP model JSON: $out"
gen --model "$legacy" --prompt Hi -n 4 --mtp off > /dev/null; [ -s "$tmp/err" ] && bad "--mtp off printed: $(cat "$tmp/err")"

# chat: the same answers with and without MTP, and /stats shows it
printf 'Hello\nHow are you?\n/stats\n' | "$TANDEM" chat --threads 2 --temp 0 -n 24 --mtp on > "$tmp/chat_on" 2>/dev/null || bad "chat --mtp on failed"
printf 'Hello\nHow are you?\n/stats\n' | "$TANDEM" chat --threads 2 --temp 0 -n 24 > "$tmp/chat_off" 2>/dev/null || bad "chat failed"
grep -q "^mtp  *on, 1 draft per step: [0-9]* of [0-9]* drafts accepted" "$tmp/chat_on" || bad "chat /stats lacks MTP: $(grep -i mtp "$tmp/chat_on")"
grep -q "^mtp  *off" "$tmp/chat_off" || bad "chat /stats without MTP: $(grep -i mtp "$tmp/chat_off")"
strip() { sed -n '1,/^model /p' "$1" | grep -v '^model '; }
cmp -s <(strip "$tmp/chat_on") <(strip "$tmp/chat_off") || bad "chat answers differ with --mtp on"

# the benchmark
out=$("$TANDEM" bench mtp --threads 2 --tokens 8 2>&1) || bad "bench mtp failed: $out"
last=$(printf '%s\n' "$out" | tail -n 1)
for key in acceptance tokens_per_step plain_tok_s mtp_tok_s speedup identical verify_ms experts; do
  printf '%s' "$last" | grep -q "\"$key\":" || bad "bench mtp JSON lacks $key: $last"
done
[ "$(field "$last" identical)" = true ] || bad "bench mtp: greedy streams differ: $last"
printf '%s\n' "$out" | grep -q "^  layer [0-9]* *[0-9.]* vs [0-9.]*" || bad "bench mtp prints no expert table: $out"
"$TANDEM" bench mtp --threads 2 --tokens 4 --k 2 --json | tail -n 1 | grep -q '"k":2' || bad "bench mtp --k 2"

# bad values
expect() { # expect <rc> <pattern> <command...>
  local want=$1 pat=$2; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ $rc -ne "$want" ] || ! printf '%s' "$out" | grep -q -- "$pat"; then bad "$* -> rc=$rc: $out"; fi
}
expect 2 "\-\-mtp" "$TANDEM" generate --prompt x --mtp maybe
expect 2 "\-\-mtp-k" "$TANDEM" generate --prompt x --mtp-k 0
expect 2 "\-\-mtp-k" "$TANDEM" generate --prompt x --mtp-k 9
expect 2 "\-\-mtp" "$TANDEM" chat --mtp sometimes
expect 1 "mtp-from.*no MTP block" "$TANDEM" generate --prompt x --model "$legacy" --mtp-from "$TANDEM_SHARED/fixtures/safetensors/tiny-dsv3-bf16"
expect 2 "\-\-k" "$TANDEM" bench mtp --k 0
expect 2 "unknown option" "$TANDEM" bench mtp --frob
expect 1 "no MTP block" "$TANDEM" bench mtp --model "$legacy"
expect 1 "no prompts" "$TANDEM" bench mtp --prompts /dev/null

[ $fail -eq 0 ] && echo "ok: mtp"
exit $fail
