#!/usr/bin/env bash
# tandem chat with a conversation piped in: one message per line, plain output with no escape codes,
# a status line per answer and every error on stderr, the commands, answers equal to tandem generate's
# (greedy), the same context as generate, and exit 1 when a turn failed.
# TANDEM_CHAT_TEST_MODEL runs it on another model (one with a tokenizer).
set -u
fail=0
model=()
[ -n "${TANDEM_CHAT_TEST_MODEL:-}" ] && model=(--model "$TANDEM_CHAT_TEST_MODEL")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export HOME="$tmp/home" XDG_STATE_HOME=
bad() { echo "FAIL: $*"; fail=1; }
chat() { "$TANDEM" chat "${model[@]}" --threads 2 --temp 0 -n 10 "$@"; }

# the first answer is what generate gives for the same single user turn
printf 'Hello there\n' | chat > "$tmp/one.out" 2> "$tmp/one.err" || bad "chat failed: $(cat "$tmp/one.err")"
"$TANDEM" generate "${model[@]}" --threads 2 --temp 0 -n 10 --prompt "Hello there" > "$tmp/gen.out" 2>/dev/null
# generate always ends with a newline, chat only when the answer does not: compare without them
strip() { perl -0777 -pe 's/\n+\z//' "$1"; }
cmp -s <(strip "$tmp/one.out") <(strip "$tmp/gen.out") || { bad "chat's answer differs from generate's"; od -c "$tmp/one.out" | head; od -c "$tmp/gen.out" | head; }

cat > "$tmp/conv.txt" <<EOF
What is the capital of France?
/stats
/set temp 0.5
/set temp -1
/set top_k banana
/set max 6
/system You are terse.
And of Italy?

/save $tmp/saved.json
/reset
/load $tmp/nonexistent.json
/load $tmp/saved.json
/frobnicate
Thanks!
/help
/quit
This line comes after /quit and is never read as a message.
EOF
chat --seed 5 < "$tmp/conv.txt" > "$tmp/out" 2> "$tmp/err"; rc=$?
[ $rc -eq 0 ] || bad "exit code $rc: $(cat "$tmp/err")"
if grep -q $'\x1b' "$tmp/out" "$tmp/err"; then bad "escape codes in piped output"; fi
[ "$(grep -c '^\[prompt .* tok.*answer .* tok.*tokens of context' "$tmp/err")" = 3 ] || bad "want 3 status lines on stderr: $(cat "$tmp/err")"
grep -q '^context *[0-9]*/[0-9]* tokens' "$tmp/out" || bad "/stats printed no context line"
grep -q "temp 0.5 " "$tmp/out" || bad "/set temp did not take"
# /set checks values as the command-line flags do (generate --temp -1 is refused too)
grep -q "^/set temp: temperature -1 is out of range" "$tmp/err" || bad "/set temp -1 was not refused on stderr: $(cat "$tmp/err")"
grep -q "temp -1" "$tmp/out" && bad "/set temp -1 took"
grep -q "^/set top_k: 'banana' is not a whole number" "$tmp/err" || bad "/set top_k banana was not refused on stderr"
# /stats shows the seed, so that --seed can repeat a run
grep -q "seed 5 " "$tmp/out" || bad "/stats shows no seed"
printf '/stats\n' | chat 2> /dev/null | grep -q "seed [0-9][0-9]* " || bad "/stats shows no seed without --seed"
# errors go to stderr only: stdout holds the answers and what the commands print
grep -q '^error:\|^unknown command\|^/set' "$tmp/out" && bad "errors on stdout: $(grep '^error:\|^unknown command\|^/set' "$tmp/out")"
grep -q "max 6 tokens" "$tmp/out" || bad "/set max did not take"
grep -q "system prompt: You are terse." "$tmp/out" || bad "/system did not take"
grep -q "(conversation cleared)" "$tmp/out" || bad "/reset said nothing"
grep -q "error: .*nonexistent.json" "$tmp/err" || bad "/load of a missing file was not reported on stderr"
grep -q "(loaded 4 turns" "$tmp/out" || bad "/load did not load 4 turns"
grep -q "unknown command /frobnicate" "$tmp/err" || bad "unknown command not reported on stderr"
grep -q "^  /quit" "$tmp/out" || bad "/help printed no list"
grep -q "never read" "$tmp/out" && bad "input after /quit was used"
# the saved conversation: the system prompt and two full turns, in order
tr -d ' \t\n' < "$tmp/saved.json" > "$tmp/saved.min"
grep -q '"role":"system","content":"Youareterse."' "$tmp/saved.min" || bad "saved file lacks the system prompt"
[ "$(grep -o '"role":"user"' "$tmp/saved.min" | wc -l)" = 2 ] || bad "saved file does not hold 2 user turns"
[ "$(grep -o '"role":"assistant"' "$tmp/saved.min" | wc -l)" = 2 ] || bad "saved file does not hold 2 answers"
grep -q '"content":"WhatisthecapitalofFrance?"},{"role":"assistant"' "$tmp/saved.min" || bad "turns out of order"

# piped chat is deterministic with a seed (the KV cache reuse must not change answers; the conversation
# samples after /set temp 0.5)
skip='^last\|^ *answer\|^context\|turns'
chat --seed 5 < "$tmp/conv.txt" 2>/dev/null | grep -v "$skip" > "$tmp/out2"
grep -v "$skip" "$tmp/out" | cmp -s - "$tmp/out2" || bad "two runs of the same conversation differ"

# chat and generate use the same context by default (the model's, capped at 4096)
ctx_chat=$(printf '/quit\n' | "$TANDEM" chat "${model[@]}" --threads 2 2>&1 | sed -n 's/.*· context \([0-9]*\) tokens.*/\1/p')
ctx_gen=$("$TANDEM" generate "${model[@]}" --threads 2 -n 1 --prompt x --json 2>/dev/null | sed -n 's/.*"ctx_size":\([0-9]*\).*/\1/p')
[ -n "$ctx_chat" ] && [ "$ctx_chat" = "$ctx_gen" ] || bad "chat's context ($ctx_chat) is not generate's ($ctx_gen)"

# a failed turn: its error on stderr, the session goes on, and the exit code says so
printf 'Hi\n\xff bad bytes\nHello\n' | chat > "$tmp/f.out" 2> "$tmp/f.err"; rc=$?
[ $rc -eq 1 ] || bad "a failed turn exited $rc"
grep -q "^error: your message is not valid UTF-8 at byte 0 of 11" "$tmp/f.err" || bad "no error for bytes that are not UTF-8: $(cat "$tmp/f.err")"
[ "$(grep -c '^\[prompt' "$tmp/f.err")" = 2 ] || bad "the turns around the failed one were not both answered: $(cat "$tmp/f.err")"
grep -q "1 turn failed" "$tmp/f.err" || bad "no summary of the failed turn"
# no history file is written for piped input
[ ! -e "$tmp/home/.local/state/tandem/history" ] || bad "piped chat wrote a history file"
# bad options exit 2
out=$(printf 'hi\n' | chat --top-p 2 2>&1); [ $? -eq 2 ] || bad "--top-p 2 accepted: $out"
out=$(printf 'hi\n' | chat --bogus 2>&1); [ $? -eq 2 ] || bad "--bogus accepted: $out"

# R1: the answer starts inside the reasoning, shown between tags in plain output, or hidden
printf 'Hi\n' | chat --template r1 > "$tmp/r1.out" 2>/dev/null || bad "chat --template r1 failed"
[ "$(head -c 7 "$tmp/r1.out")" = "<think>" ] || bad "R1 reasoning is not tagged in plain output: $(head -c 40 "$tmp/r1.out")"
printf 'Hi\n' | chat --template r1 --hide-think > "$tmp/r1h.out" 2>/dev/null || bad "chat --hide-think failed"
grep -q "<think>" "$tmp/r1h.out" && bad "--hide-think shows the reasoning tag"
if ! grep -q "</think>" "$tmp/r1.out"; then # all reasoning: nothing of it may show
  [ "$(tr -d '\n' < "$tmp/r1h.out")" = "" ] || bad "--hide-think shows reasoning: $(head -c 40 "$tmp/r1h.out")"
fi

[ $fail -eq 0 ] && echo "ok: chat (piped)"
exit $fail
