#!/usr/bin/env bash
# tandem chat in a real terminal, driven through tmux: the banner, a streamed answer (checked against
# tandem generate), the status line, /stats, Ctrl-C stopping a long answer while the session goes on,
# Ctrl-C at the prompt, history across sessions (arrow up), Ctrl-D leaving, and the chat under make (as
# `make chat` runs it), where Ctrl-C must not end make with "Interrupt".
# It runs on the random-weight GGUF fixture, whose answers never end by themselves, so that Ctrl-C has a
# long answer to stop (the bundled model answers in one short sentence); TANDEM_CHAT_TEST_MODEL picks
# another model (one with a tokenizer).
set -u
command -v tmux > /dev/null || { echo "SKIP: tmux is not installed"; exit 77; }
fail=0
model=(--model "${TANDEM_CHAT_TEST_MODEL:-$TANDEM_SHARED/fixtures/gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf}")
tmp=$(mktemp -d)
sock="tandem-chat-test-$$"
cleanup() { tmux -L "$sock" kill-server 2> /dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
bad() { echo "FAIL: $*"; fail=1; }
slow=1; [ "${TANDEM_SANITIZED:-0}" = 1 ] && slow=4

pane() { tmux -L "$sock" capture-pane -p -J -S -200 -t chat; }
keys() { tmux -L "$sock" send-keys -t chat "$@"; }
# wait_for <pattern> [count]: until the pane shows the pattern (count times), or time out
wait_for() {
  local pat=$1 count=${2:-1} i
  for ((i = 0; i < 150 * slow; i++)); do
    tmux -L "$sock" has-session -t chat 2> /dev/null || { bad "the terminal closed waiting for '$pat'"; return 1; }
    [ "$(pane | grep -c -- "$pat")" -ge "$count" ] && return 0
    sleep 0.2
  done
  bad "timed out waiting for '$pat' (x$count)"; pane | tail -n 20; return 1
}
# --kernels ref: the Ctrl-C check below needs an answer still streaming after a second; the fast kernels
# finish the tiny model's whole answer before that
start() {
  tmux -L "$sock" -f /dev/null new-session -d -s chat -x 200 -y 50 \
    "env HOME='$tmp/home' XDG_STATE_HOME= TANDEM_SHARED='$TANDEM_SHARED' '$TANDEM' chat ${model[*]} --kernels ref --threads 2 --ctx 4096 --temp 0 -n 10 $*; echo CHAT-EXITED rc=\$?; sleep 60"
}

start
wait_for "Type a message" || exit 1
pane | grep -q "tandem chat · " || bad "no banner"

# a streamed answer: the words of generate's greedy answer to the same turn appear in the terminal
keys "Hello there" Enter
wait_for '^\[prompt .*tokens of context'
"$TANDEM" generate "${model[@]}" --threads 2 --temp 0 -n 10 --prompt "Hello there" 2> /dev/null > "$tmp/expected"
words=$(tr -c 'A-Za-z' ' ' < "$tmp/expected" | tr -s ' ' '\n' | awk 'length >= 3')
shown=$(pane | sed -n '/> Hello there/,/^\[prompt/p' | sed '1d;$d')
[ -n "$shown" ] || bad "no answer between the prompt and the status line"
for w in $words; do printf '%s' "$shown" | grep -q -- "$w" || bad "the answer lacks '$w' (generate gave: $(cat "$tmp/expected"))"; done

keys "/stats" Enter
wait_for '^context *[0-9]*/[0-9]* tokens'
wait_for "MTP acceptance n/a"

# a long answer, stopped with Ctrl-C; the session carries on
keys "/set max 0" Enter
wait_for "max 0 tokens"
keys "Tell me a very long story." Enter
sleep $((1 * slow))
keys C-c
wait_for '· stopped\]'
keys "/set max 10" Enter
wait_for "max 10 tokens"
keys "And now?" Enter
wait_for '^\[prompt .*tokens of context' 3
pane | grep '^\[prompt' | tail -n 1 | grep -q "cached" || bad "the third answer did not reuse the cache"

# Ctrl-C at the prompt only explains itself
keys C-c
wait_for "Ctrl-D or /quit leaves"
# Ctrl-D leaves
keys C-d
wait_for "CHAT-EXITED rc=0"
tmux -L "$sock" kill-session -t chat

# the history was kept and comes back in a new session
hist="$tmp/home/.local/state/tandem/history"
# (libedit's file format escapes spaces as \040)
[ -f "$hist" ] && grep -q "Hello" "$hist" && grep -q "now?" "$hist" || bad "history file missing or incomplete"
start --template r1
wait_for "Type a message" || exit 1
keys Up
wait_for "> And now?"
# R1 answers begin inside the reasoning, which is shown dimmed (SGR 2)
keys C-u "Hi" Enter
wait_for '^\[prompt .*tokens of context'
tmux -L "$sock" capture-pane -p -e -J -t chat | awk 'hit { print; exit } / Hi *$/ { hit = 1 }' | grep -q $'^\x1b\\[2m' \
  || { bad "the R1 reasoning is not dimmed"; tmux -L "$sock" capture-pane -p -e -J -t chat | cat -A | grep -v "^\$$" | tail -n 8; }
keys C-d
wait_for "CHAT-EXITED rc=0"

tmux -L "$sock" kill-session -t chat

# Under make, the chat shared make's process group, so Ctrl-C also reached make, which then died with
# "*** [Makefile:N: chat] Interrupt" when the chat ended (and the shell around it, hit by the same Ctrl-C,
# closed the terminal). The chat keeps Ctrl-C to itself: leaving after one ends make normally. (This
# Makefile runs the built program directly; the project's `make chat` also configures and builds.)
if command -v make > /dev/null; then
  printf 'chat:\n\t%s chat %s --kernels ref --threads 2 --ctx 4096 --temp 0 -n 0 --no-history\n' "$TANDEM" "${model[*]}" \
    > "$tmp/Makefile"
  tmux -L "$sock" -f /dev/null new-session -d -s chat -x 200 -y 50 \
    "env HOME='$tmp/home' XDG_STATE_HOME= make -s -C '$tmp' chat 2> '$tmp/make.err'; echo MAKE-EXITED rc=\$?; sleep 60"
  wait_for "Type a message" || exit 1
  keys "Tell me a very long story." Enter
  sleep $((1 * slow))
  keys C-c
  wait_for '· stopped\]'
  keys C-c
  wait_for "Ctrl-D or /quit leaves"
  keys "/quit" Enter
  wait_for "MAKE-EXITED" && { pane | grep -q "MAKE-EXITED rc=0" || bad "make did not exit 0: $(pane | grep MAKE-EXITED)"; }
  grep -q "Interrupt" "$tmp/make.err" && bad "make reported an interrupt: $(cat "$tmp/make.err")"
fi

[ $fail -eq 0 ] && echo "ok: chat in a terminal"
exit $fail
