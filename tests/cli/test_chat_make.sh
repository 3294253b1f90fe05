#!/usr/bin/env bash
# tandem chat under make, as `make chat` runs it, in a real terminal (tmux): Ctrl-C stops an answer and
# reaches the chat alone, so that leaving afterwards ends make normally (exit 0), not with make's
# "*** [Makefile:N: chat] Interrupt" (after which the shell around make, hit by the same Ctrl-C, dies too
# and the terminal closes). Ctrl-C at the prompt likewise. The Makefile here runs the built program
# directly (the project's `make chat` would also configure and build).
# Like test_chat_tmux.sh it uses the random-weight GGUF fixture, whose answers go on until stopped.
set -u
command -v tmux > /dev/null || { echo "SKIP: tmux is not installed"; exit 77; }
command -v make > /dev/null || { echo "SKIP: make is not installed"; exit 77; }
fail=0
model="${TANDEM_CHAT_TEST_MODEL:-$TANDEM_SHARED/fixtures/gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf}"
tmp=$(mktemp -d)
sock="tandem-chat-make-$$"
cleanup() { tmux -L "$sock" kill-server 2> /dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
bad() { echo "FAIL: $*"; fail=1; }
slow=1; [ "${TANDEM_SANITIZED:-0}" = 1 ] && slow=4

pane() { tmux -L "$sock" capture-pane -p -J -S -200 -t chat; }
keys() { tmux -L "$sock" send-keys -t chat "$@"; }
wait_for() {
  local pat=$1 count=${2:-1} i
  for ((i = 0; i < 150 * slow; i++)); do
    tmux -L "$sock" has-session -t chat 2> /dev/null || { bad "the terminal closed waiting for '$pat': $(cat "$tmp/make.err")"; return 1; }
    [ "$(pane | grep -c -- "$pat")" -ge "$count" ] && return 0
    sleep 0.2
  done
  bad "timed out waiting for '$pat' (x$count)"; pane | tail -n 20; return 1
}

printf 'chat:\n\t%s chat --model %s --kernels ref --threads 2 --ctx 4096 --temp 0 -n 0 --no-history\n' \
  "$TANDEM" "$model" > "$tmp/Makefile"
tmux -L "$sock" -f /dev/null new-session -d -s chat -x 200 -y 50 \
  "env HOME='$tmp/home' XDG_STATE_HOME= make -s -C '$tmp' chat 2> '$tmp/make.err'; echo MAKE-EXITED rc=\$?; sleep 60"
wait_for "Type a message" || exit 1

# Ctrl-C during an answer: the answer stops, the chat goes on
keys "Tell me a very long story." Enter
sleep $((1 * slow))
keys C-c
wait_for '· stopped\]'
# Ctrl-C at the prompt
keys C-c
wait_for "Ctrl-D or /quit leaves"
keys "/quit" Enter
wait_for "MAKE-EXITED" || exit 1
pane | grep -q "MAKE-EXITED rc=0" || bad "make did not exit 0 after /quit: $(pane | grep MAKE-EXITED)"
grep -q "Interrupt" "$tmp/make.err" && bad "make reported an interrupt: $(cat "$tmp/make.err")"

[ $fail -eq 0 ] && echo "ok: chat under make"
exit $fail
