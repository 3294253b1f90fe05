#!/usr/bin/env bash
# What a new user hit writing GGUFs: two converts to one output, a --split convert that fails part-way,
# and the messages around them. The bundled model is the source (it converts in a fraction of a second).
#  - a convert that fails part-way (a full disk, injected in the writer) leaves the previous set whole
#    and no temporary file; a set mixed from two converts is refused by the loader (set identity);
#  - two converts writing one output at once both succeed, and the output is one of them, whole;
#  - the parts of a split output are named on success; messages do not repeat "convert:";
#  - a source without a tokenizer is refused unless --no-tokenizer;
#  - the bundled model is what convert writes from it (chat template and file type included).
set -euo pipefail
M=$TANDEM_SOURCE_DIR/models/tandem-tiny-q8_0.gguf
[ -f "$M" ] || { echo "no bundled model at $M"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
conv() { "$TANDEM" convert --from "$M" --keep-mtp --quiet "$@"; }
sums() { (cd "$tmp" && cat "$@" | cksum); }

# a whole q4_k_m set, its parts named on success
msg=$("$TANDEM" convert --from "$M" --to "$tmp/out.gguf" --type q4_k_m --split 3 --keep-mtp 2>&1) || fail "q4_k_m --split 3: $msg"
grep -q "wrote 3 parts, $tmp/out-00001-of-00003.gguf ... $tmp/out-00003-of-00003.gguf" <<<"$msg" ||
    fail "the parts are not named: $msg"
parts=(out-00001-of-00003.gguf out-00002-of-00003.gguf out-00003-of-00003.gguf)
before=$(sums "${parts[@]}")

# bf16 over it, failing in its last part as a full disk would: the q4_k_m set stays as it was
size1=$(stat -c %s "$tmp/out-00001-of-00003.gguf")
if err=$(TANDEM_TEST_FAIL_WRITE_AFTER=$((size1 * 7)) conv --to "$tmp/out.gguf" --type bf16 --split 3 2>&1); then
    fail "the injected failure did not fail the convert"
fi
grep -q "injected failure" <<<"$err" || fail "not the injected failure: $err"
grep -q "convert: convert:" <<<"$err" && fail "doubled prefix: $err"
[ "$(sums "${parts[@]}")" = "$before" ] || fail "a failed convert changed the previous set"
ls "$tmp" | grep -q '\.tmp\.' && fail "temporary files left behind: $(ls "$tmp")"
out=$("$TANDEM" generate --model "$tmp/out-00001-of-00003.gguf" --prompt hi -n 4 --json) || fail "the kept set: $out"
echo "failed bf16 --split 3 over a q4_k_m set: the set is unchanged and loads"

# parts of two sets mixed (what the old writer left after such a failure): refused, naming the part
conv --to "$tmp/bf16.gguf" --type bf16 --split 3
cp "$tmp/bf16-00002-of-00003.gguf" "$tmp/out-00002-of-00003.gguf"
if err=$("$TANDEM" generate --model "$tmp/out-00001-of-00003.gguf" --prompt hi -n 4 2>&1); then
    fail "a mixed set loaded"
fi
grep -q "out-00002-of-00003.gguf: this part belongs to another set" <<<"$err" || fail "mixed set: $err"
echo "mixed set refused: $(cut -c1-160 <<<"$err")"

# two converts of one output at once: both succeed and the file is one of theirs, whole
conv --to "$tmp/solo-q8.gguf" --type q8_0
conv --to "$tmp/solo-bf16.gguf" --type bf16
for round in 1 2 3 4 5; do
    conv --to "$tmp/both.gguf" --type q8_0 & a=$!
    conv --to "$tmp/both.gguf" --type bf16 & b=$!
    wait $a || fail "round $round: the q8_0 convert failed"
    wait $b || fail "round $round: the bf16 convert failed"
    cmp -s "$tmp/both.gguf" "$tmp/solo-q8.gguf" || cmp -s "$tmp/both.gguf" "$tmp/solo-bf16.gguf" ||
        fail "round $round: two converts at once wrote a file that is neither"
done
ls "$tmp" | grep -q '\.tmp\.' && fail "temporary files left behind: $(ls "$tmp")"
echo "two converts at once, 5 rounds: both succeed, the output is whole"

# the same convert writes the same bytes, split identity included
conv --to "$tmp/again.gguf" --type q4_k_m --split 3 --threads 1
for i in 1 2 3; do
    cmp -s "$tmp/again-0000$i-of-00003.gguf" "$tmp/bf16-0000$i-of-00003.gguf" && fail "q4_k_m equals bf16?"
done
conv --to "$tmp/again2.gguf" --type q4_k_m --split 3 --threads 3
for i in 1 2 3; do
    cmp -s "$tmp/again-0000$i-of-00003.gguf" "$tmp/again2-0000$i-of-00003.gguf" || fail "part $i differs between runs"
done

# a source without a tokenizer: refused, unless --no-tokenizer
F=${TANDEM_SHARED:-}/fixtures/safetensors/tiny-dsv3-bf16
if [ -d "$F" ]; then
    if err=$("$TANDEM" convert --from "$F" --to "$tmp/x.gguf" --type q4_k_m --quiet 2>&1); then
        fail "a source without a tokenizer converted"
    fi
    grep -q -- "--no-tokenizer" <<<"$err" && grep -q "tokenizer.ggml.model" <<<"$err" || fail "refusal: $err"
    grep -q "convert: convert:" <<<"$err" && fail "doubled prefix: $err"
    [ ! -e "$tmp/x.gguf" ] || fail "a refused convert left a file"
    "$TANDEM" convert --from "$F" --to "$tmp/x.gguf" --type q4_k_m --quiet --no-tokenizer || fail "--no-tokenizer"
    echo "no tokenizer: refused without --no-tokenizer ($(cut -c1-120 <<<"$err"))"
fi
# the bundled model carries a chat template and its file type, and is what convert writes from itself
conv --to "$tmp/bundled.gguf" --type q8_0
cmp -s "$M" "$tmp/bundled.gguf" || fail "converting the bundled model to q8_0 changed it"
grep -qa "tokenizer.chat_template" "$M" && grep -qa "general.file_type" "$M" || fail "the bundled model lacks its keys"
echo "bundled model: converting it to itself gives the same bytes"
echo PASS
