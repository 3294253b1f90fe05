#!/usr/bin/env bash
# tandem chat (piped) with long messages and a full context: messages of 1, 528 and 3000 tokens are
# answered; a message longer than the context is refused with a clear error on stderr and the session
# goes on (exit 1 at the end); when the conversation outgrows the context, the oldest turns are dropped
# (the system prompt stays), said on stderr, and every turn is answered; --no-context-shift refuses
# instead, as before.
set -u
fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bad() { echo "FAIL: $*"; fail=1; }
chat() { "$TANDEM" chat --threads 2 --temp 0 -n 10 "$@"; }
words() { yes the | head -n "$1" | tr '\n' ' '; echo; } # "the" is one token with the bundled tokenizer
answered() { grep -c '^\[prompt' "$1"; }

# 1, 528 and 3000 tokens in one conversation that holds them all (under the sanitizers, whose -O0 build
# prefills a few tokens a second, 1 and 528: the batch boundary is the point)
sizes="1 528 3000"; [ "${TANDEM_SANITIZED:-0}" = 1 ] && sizes="1 528"
for n in $sizes; do words "$n"; done | chat --ctx 4096 > "$tmp/long.out" 2> "$tmp/long.err"; rc=$?
[ $rc -eq 0 ] || bad "long messages: exit $rc: $(tail -n 3 "$tmp/long.err")"
[ "$(answered "$tmp/long.err")" = "$(echo $sizes | wc -w)" ] || bad "long messages ($sizes): not all answered: $(cat "$tmp/long.err")"
for n in $sizes; do
  [ "$n" -gt 1 ] || continue
  grep -q "^\[prompt ${n:0:1}[0-9]\{$((${#n} - 1))\} tok" "$tmp/long.err" || bad "the $n-token message was not prefilled: $(cat "$tmp/long.err")"
done
grep -q "dropped" "$tmp/long.err" && bad "turns dropped from a conversation that fits: $(cat "$tmp/long.err")"

# longer than the context: a clear error, the history kept, the next line answered, exit 1
for shift in "" --no-context-shift; do
  { echo "Hello"; words 700; echo "What does harbor mean?"; } | chat --ctx 512 $shift > "$tmp/over.out" 2> "$tmp/over.err"; rc=$?
  [ $rc -eq 1 ] || bad "an over-long message ($shift) exited $rc"
  grep -q "^error: .*7[0-9][0-9] tokens .*context holds 512.*--ctx" "$tmp/over.err" || bad "no clear error for an over-long message ($shift): $(cat "$tmp/over.err")"
  [ "$(answered "$tmp/over.err")" = 2 ] || bad "the lines around the over-long one were not answered ($shift): $(cat "$tmp/over.err")"
  grep -q '^\[prompt [0-9]* tok (+[0-9]* cached)' "$tmp/over.err" || bad "the last turn lost the history ($shift): $(cat "$tmp/over.err")"
  grep -q "dropped" "$tmp/over.err" && bad "turns dropped for a message that cannot fit ($shift)"
done

# a conversation that outgrows the context: the oldest turns go, the system prompt stays
{ for i in $(seq 1 12); do echo "What does word number $i mean?"; done; echo "/save $tmp/shifted.json"; } |
  chat --ctx 128 --system "Answer briefly." > "$tmp/shift.out" 2> "$tmp/shift.err"; rc=$?
[ $rc -eq 0 ] || bad "context shift: exit $rc: $(tail -n 3 "$tmp/shift.err")"
[ "$(answered "$tmp/shift.err")" = 12 ] || bad "context shift: not every turn answered: $(cat "$tmp/shift.err")"
grep -q "^(context full: dropped the [0-9]* oldest turns\? to make room, the system prompt stays" "$tmp/shift.err" ||
  bad "context shift: nothing said on stderr: $(cat "$tmp/shift.err")"
grep -q "dropped" "$tmp/shift.out" && bad "context shift: the notice went to stdout"
tr -d ' \t\n' < "$tmp/shifted.json" > "$tmp/shifted.min"
grep -q '"role":"system","content":"Answerbriefly."' "$tmp/shifted.min" || bad "context shift lost the system prompt"
grep -q 'wordnumber1mean' "$tmp/shifted.min" && bad "context shift kept the oldest turn"
grep -q 'wordnumber12mean' "$tmp/shifted.min" || bad "context shift lost the newest turn"
# each status line stays within the context
awk -F'· ' '/^\[prompt/ { split($3, a, "[ /]"); if (a[1] > a[2]) { print; exit 1 } }' "$tmp/shift.err" || bad "context use over the context"

# --no-context-shift: today's error and advice once the context is full, and exit 1
for i in $(seq 1 12); do echo "What does word number $i mean?"; done |
  chat --ctx 128 --no-context-shift > /dev/null 2> "$tmp/noshift.err"; rc=$?
[ $rc -eq 1 ] || bad "--no-context-shift with a full context exited $rc"
grep -q "^error: the prompt has [0-9]* tokens but the context holds 128 (raise --ctx)" "$tmp/noshift.err" || bad "--no-context-shift: no error: $(cat "$tmp/noshift.err")"
grep -q "/reset to start over" "$tmp/noshift.err" || bad "--no-context-shift: no advice"
grep -q "dropped" "$tmp/noshift.err" && bad "--no-context-shift dropped turns"

[ $fail -eq 0 ] && echo "ok: chat with long messages and a full context"
exit $fail
