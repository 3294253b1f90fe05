#!/usr/bin/env bash
# Prompts around the engine's batch of 512 tokens, where the chunk loop and the kernels' scratch meet
# (any prompt of 528+ tokens once aborted the process): generate with MTP off and on, the greedy tokens
# of both equal, and a prompt longer than --ctx refused with a clear error and exit 1.
set -u
fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bad() { echo "FAIL: $*"; fail=1; }
field() { printf '%s' "$1" | sed -n "s/.*\"$2\":\(\[[^]]*\]\|[^,}]*\).*/\1/p"; }
gen() { "$TANDEM" generate --threads 2 --template raw --ctx 4096 -n 3 --json "$@"; }

# "the" repeated: one token per word with the bundled tokenizer, plus BOS
for n in 1 511 512 513 527 528 1024 3000; do
  python3 -c "import sys; sys.stdout.write('the' + ' the' * ($n - 1))" > "$tmp/p$n.txt"
  off=$(gen --prompt-file "$tmp/p$n.txt" --mtp off 2>"$tmp/err") || { bad "$n words, MTP off: $(tail -n 3 "$tmp/err")"; continue; }
  on=$(gen --prompt-file "$tmp/p$n.txt" --mtp on 2>"$tmp/err") || { bad "$n words, MTP on: $(tail -n 3 "$tmp/err")"; continue; }
  off=$(printf '%s\n' "$off" | tail -n 1); on=$(printf '%s\n' "$on" | tail -n 1)
  [ "$(field "$off" prompt_tokens)" -ge "$n" ] || bad "$n words gave $(field "$off" prompt_tokens) prompt tokens"
  [ "$(field "$off" tokens)" = "$(field "$on" tokens)" ] || bad "$n words: MTP on and off differ: $(field "$off" tokens) vs $(field "$on" tokens)"
done

# longer than the context: exit 1, a message naming the sizes and --ctx
out=$("$TANDEM" generate --threads 2 --template raw --ctx 600 -n 3 --prompt-file "$tmp/p1024.txt" 2>&1); rc=$?
[ $rc -eq 1 ] || bad "a prompt longer than --ctx exited $rc: $out"
printf '%s' "$out" | grep -q -- "--ctx" || bad "the error does not say how to fix it: $out"

[ $fail -eq 0 ] && echo "ok: long prompts"
exit $fail
