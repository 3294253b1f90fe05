#!/usr/bin/env bash
# tandem chat with a conversation piped in: one message per line, plain output with no escape codes,
# a status line per answer on stderr, the commands, and answers equal to tandem generate's (greedy).
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
chat < "$tmp/conv.txt" > "$tmp/out" 2> "$tmp/err"; rc=$?
[ $rc -eq 0 ] || bad "exit code $rc: $(cat "$tmp/err")"
if grep -q $'\x1b' "$tmp/out" "$tmp/err"; then bad "escape codes in piped output"; fi
[ "$(grep -c '^\[prompt .* tok.*answer .* tok.*tokens of context' "$tmp/err")" = 3 ] || bad "want 3 status lines on stderr: $(cat "$tmp/err")"
grep -q '^context *[0-9]*/[0-9]* tokens' "$tmp/out" || bad "/stats printed no context line"
grep -q "temp 0.5 " "$tmp/out" || bad "/set temp did not take"
grep -q "top_k: 'banana' is not a number" "$tmp/out" || bad "/set top_k banana was not refused"
grep -q "max 6 tokens" "$tmp/out" || bad "/set max did not take"
grep -q "system prompt: You are terse." "$tmp/out" || bad "/system did not take"
grep -q "(conversation cleared)" "$tmp/out" || bad "/reset said nothing"
grep -q "error: .*nonexistent.json" "$tmp/out" || bad "/load of a missing file was not reported"
grep -q "(loaded 4 turns" "$tmp/out" || bad "/load did not load 4 turns"
grep -q "unknown command /frobnicate" "$tmp/out" || bad "unknown command not reported"
grep -q "^  /quit" "$tmp/out" || bad "/help printed no list"
grep -q "never read" "$tmp/out" && bad "input after /quit was used"
# the saved conversation: the system prompt and two full turns, in order
tr -d ' \t\n' < "$tmp/saved.json" > "$tmp/saved.min"
grep -q '"role":"system","content":"Youareterse."' "$tmp/saved.min" || bad "saved file lacks the system prompt"
[ "$(grep -o '"role":"user"' "$tmp/saved.min" | wc -l)" = 2 ] || bad "saved file does not hold 2 user turns"
[ "$(grep -o '"role":"assistant"' "$tmp/saved.min" | wc -l)" = 2 ] || bad "saved file does not hold 2 answers"
grep -q '"content":"WhatisthecapitalofFrance?"},{"role":"assistant"' "$tmp/saved.min" || bad "turns out of order"

# piped chat is deterministic with --temp 0 (the KV cache reuse must not change answers)
chat < "$tmp/conv.txt" 2>/dev/null | grep -v '^last\|^ *answer\|^context\|turns' > "$tmp/out2"
grep -v '^last\|^ *answer\|^context\|turns' "$tmp/out" | cmp -s - "$tmp/out2" || bad "two runs of the same conversation differ"
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
