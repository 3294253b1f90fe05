#!/usr/bin/env bash
# tandem tokenize: stdin byte for byte, ids round-trip through --decode, --json and --add-special, the
# same ids through tokenizer.json, the fixture directory and the GGUF's embedded vocabulary, and clear
# errors for bad input.
set -u
fail=0
tok="$TANDEM_SHARED/fixtures/tokenizer/tokenizer.json"
gguf="$TANDEM_SHARED/fixtures/gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
[ -f "$tok" ] || { echo "SKIP: no fixture tokenizer"; exit 77; }
bad() { echo "FAIL: $*"; fail=1; }

# text -> ids -> text is the identity, trailing newline or not, special markers included
printf 'Hello world, 12345 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x99\x82\n\n' > "$tmp/a.txt"
printf 'Hello world' > "$tmp/b.txt"
printf '<\xef\xbd\x9cUser\xef\xbd\x9c>hi<\xef\xbd\x9c' > "$tmp/c.txt"   # "<｜User｜>hi" then half a marker
: > "$tmp/empty.txt"
for f in a b c empty; do
  "$TANDEM" tokenize --tokenizer "$tok" < "$tmp/$f.txt" > "$tmp/$f.ids" || bad "tokenize $f"
  "$TANDEM" tokenize --tokenizer "$tok" --decode < "$tmp/$f.ids" > "$tmp/$f.back" || bad "decode $f"
  cmp -s "$tmp/$f.txt" "$tmp/$f.back" || bad "round trip of $f.txt differs"
  "$TANDEM" tokenize --tokenizer "$tok" --json < "$tmp/$f.txt" > "$tmp/$f.json" || bad "tokenize --json $f"
  "$TANDEM" tokenize --tokenizer "$tok" --decode < "$tmp/$f.json" > "$tmp/$f.back2" || bad "decode json $f"
  cmp -s "$tmp/$f.txt" "$tmp/$f.back2" || bad "JSON round trip of $f.txt differs"
done
grep -q '^\[.*\]$' "$tmp/a.json" || bad "--json is not one array: $(cat "$tmp/a.json")"
[ "$(cat "$tmp/empty.ids")" = "" ] || bad "empty input gave ids"
# the trailing newlines are tokens: the file without them tokenizes differently
[ "$(cat "$tmp/a.ids")" != "$("$TANDEM" tokenize --tokenizer "$tok" < <(printf 'Hello world, 12345 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x99\x82'))" ] \
  || bad "trailing newlines were dropped"
# the marker is one token (the first id), and --skip-special leaves it out
user=$(printf '<\xef\xbd\x9cUser\xef\xbd\x9c>' | "$TANDEM" tokenize --tokenizer "$tok")
[ "$(echo "$user" | wc -w)" = 1 ] || bad "<｜User｜> is not one token: $user"
[ "$(cut -d' ' -f1 < "$tmp/c.ids")" = "$user" ] || bad "the marker in text is not matched as a token"
"$TANDEM" tokenize --tokenizer "$tok" --decode --skip-special < "$tmp/c.ids" | grep -q '^hi<' || bad "--skip-special"

# --add-special puts BOS (the id of <｜begin▁of▁sentence｜>) first, and nothing else changes
bos=$(printf '<\xef\xbd\x9c''begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>' | "$TANDEM" tokenize --tokenizer "$tok")
with=$("$TANDEM" tokenize --tokenizer "$tok" --add-special < "$tmp/b.txt")
[ "$with" = "$bos $(cat "$tmp/b.ids")" ] || bad "--add-special gave '$with' (BOS $bos)"

# the same ids from the directory and from the GGUF's embedded vocabulary
"$TANDEM" tokenize --tokenizer "$(dirname "$tok")" < "$tmp/a.txt" | cmp -s - "$tmp/a.ids" || bad "directory form differs"
if [ -f "$gguf" ]; then
  out=$("$TANDEM" tokenize --tokenizer "$gguf" < "$tmp/a.txt" 2>&1); rc=$?
  [ $rc -eq 0 ] && [ "$out" = "$(cat "$tmp/a.ids")" ] || bad "GGUF vocabulary gave '$out' (rc=$rc)"
fi

# bad input: a clear message and exit 1; bad usage: exit 2
expect() { # expect <rc> <pattern> <stdin file> <args...>
  local want=$1 pat=$2 in=$3; shift 3
  local out rc
  out=$("$TANDEM" tokenize "$@" < "$in" 2>&1); rc=$?
  if [ $rc -ne "$want" ] || ! printf '%s' "$out" | grep -q -- "$pat"; then bad "tokenize $* -> rc=$rc: $out"; fi
}
printf 'ok \xff\xfe' > "$tmp/bad.txt"
expect 1 "not valid UTF-8 at byte 3" "$tmp/bad.txt" --tokenizer "$tok"
echo '[5, 4096]' > "$tmp/ids1"; expect 1 "4096.*outside the vocabulary" "$tmp/ids1" --tokenizer "$tok" --decode
echo '[5, -1]' > "$tmp/ids2"; expect 1 "outside the vocabulary" "$tmp/ids2" --tokenizer "$tok" --decode
echo '[5, 1.5]' > "$tmp/ids3"; expect 1 "not a token id" "$tmp/ids3" --tokenizer "$tok" --decode
echo '5 x 7' > "$tmp/ids4"; expect 1 "not a token id" "$tmp/ids4" --tokenizer "$tok" --decode
echo '[5, 99999999999]' > "$tmp/ids5"; expect 1 "not a token id" "$tmp/ids5" --tokenizer "$tok" --decode
expect 1 "no such file" "$tmp/b.txt" --tokenizer "$tmp/nope.json"
printf '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}' > "$tmp/broken.json"
expect 1 "broken.json: not valid JSON" "$tmp/b.txt" --tokenizer "$tmp/broken.json"
printf '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}' > "$tmp/no_pre.json"
expect 1 "no pre_tokenizer" "$tmp/b.txt" --tokenizer "$tmp/no_pre.json"
printf '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}, "decoder": {"type": "ByteLevel"},
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}}' > "$tmp/bad_merge.json"
expect 1 "merge 0 ('a b'): its right part is not in the vocabulary" "$tmp/b.txt" --tokenizer "$tmp/bad_merge.json"
expect 2 "unknown option" "$tmp/b.txt" --tokenizer "$tok" --frobnicate
expect 2 "needs a value" "$tmp/b.txt" --tokenizer
expect 2 "add-special" "$tmp/b.txt" --tokenizer "$tok" --decode --add-special
# a model directory without a tokenizer says where it looked
expect 1 "no tokenizer.json" "$tmp/b.txt" --tokenizer "$TANDEM_SHARED/fixtures/safetensors/tiny-dsv3-bf16"

# the benchmark runs on a given file (its speed is printed, never asserted)
out=$("$TANDEM" bench tokenize --tokenizer "$tok" --file "$tmp/a.txt" --repeat 1 --json 2>&1)
printf '%s' "$out" | grep -q '"mb_per_s":' || bad "bench tokenize: $out"
out=$("$TANDEM" bench tokenize --tokenizer "$tok" --file "$tmp/nope.txt" 2>&1); [ $? -eq 1 ] || bad "bench tokenize on a missing file: $out"

[ $fail -eq 0 ] && echo "ok: tokenize"
exit $fail
