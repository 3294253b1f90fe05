#!/usr/bin/env bash
# tandem convert on the BF16 safetensors fixture, then tandem eval of the GGUF against the fixture's own
# reference: exact for BF16 (logits and MTP within 1e-4, every greedy step), the MTP block reattached with
# --mtp-from after a conversion that dropped it, and Q8_0 within quantization error, judged against a
# yardstick measured here: the same weights in FP8 E4M3 (the fp8 fixture), a coarser format than Q8_0,
# must move the logits clearly more.
set -euo pipefail
F=$TANDEM_SHARED/fixtures/safetensors
[ -d "$F/tiny-dsv3-bf16" ] || { echo "no fixtures in $F"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
num() { grep -o '"'"$1"'":[^,}]*' <<<"$2" | head -n 1 | cut -d: -f2; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
REF=$F/tiny-dsv3-bf16/reference.safetensors

"$TANDEM" convert --from "$F/tiny-dsv3-bf16" --to "$tmp/bf16.gguf" --type bf16 --no-tokenizer --keep-mtp --quiet
out=$("$TANDEM" eval --model "$tmp/bf16.gguf" --reference "$REF" --kernels ref --json) || fail "bf16: $out"
mtp=$(num mtp_max_rel_err "$out")
le "$mtp" 1e-4 || fail "bf16: mtp_max_rel_err $mtp"
echo "bf16 GGUF: logits $(num logits_max_rel_err "$out"), mtp $mtp"
j=$("$TANDEM" inspect --json "$tmp/bf16.gguf")
grep -q '"attention_layout":"mla"' <<<"$j" && grep -q '"mtp":true' <<<"$j" || fail "inspect of the converted file: $j"

# published GGUFs drop the MTP block; --mtp-from attaches it from the official checkpoint
"$TANDEM" convert --from "$F/tiny-dsv3-bf16" --to "$tmp/nomtp.gguf" --type bf16 --no-tokenizer --quiet
if out=$("$TANDEM" eval --model "$tmp/nomtp.gguf" --reference "$REF" --kernels ref --json); then
    fail "a model without MTP passed a reference with MTP logits"
fi
out=$("$TANDEM" eval --model "$tmp/nomtp.gguf" --mtp-from "$F/tiny-dsv3-bf16" --reference "$REF" --kernels ref --json) ||
    fail "--mtp-from: $out"
mtp=$(num mtp_max_rel_err "$out")
le "$mtp" 1e-4 || fail "--mtp-from: mtp_max_rel_err $mtp"
echo "bf16 GGUF without MTP + --mtp-from: mtp $mtp"

# Q8_0 against the FP8 yardstick (eval's own pass rule wants 98% top-1 agreement, which near-ties in the
# routing of this tiny random model can miss; the KL divergence is the measure here)
"$TANDEM" convert --from "$F/tiny-dsv3-bf16" --to "$tmp/q8.gguf" --type q8_0 --no-tokenizer --keep-mtp --quiet
q8=$("$TANDEM" eval --model "$tmp/q8.gguf" --reference "$REF" --kernels ref --json --max-kld 1 || true)
fp8=$("$TANDEM" eval --model "$F/tiny-dsv3-fp8" --reference "$REF" --kernels ref --json --max-kld 1 || true)
kq=$(num kld_mean "$q8"); kf=$(num kld_mean "$fp8")
[ -n "$kq" ] && [ -n "$kf" ] || fail "no kld: $q8 / $fp8"
echo "q8_0 GGUF: kld_mean $kq, top-1 $(num top1_agree "$q8"), greedy $(num greedy_match "$q8"); FP8 weights: kld_mean $kf"
le "$kq" "$(awk -v f="$kf" 'BEGIN { print f / 4 }')" || fail "Q8_0 kld $kq is not well below FP8's $kf"
le 0.9 "$(num top1_agree "$q8")" || fail "Q8_0 top-1 agreement $(num top1_agree "$q8")"

# the converting threads split each chunk of rows: the file is the same bytes for any count
"$TANDEM" convert --from "$F/tiny-dsv3-bf16" --to "$tmp/t1.gguf" --type q4_k_m --no-tokenizer --keep-mtp --quiet --threads 1
"$TANDEM" convert --from "$F/tiny-dsv3-bf16" --to "$tmp/t3.gguf" --type q4_k_m --no-tokenizer --keep-mtp --quiet --threads 3
cmp -s "$tmp/t1.gguf" "$tmp/t3.gguf" || fail "--threads 3 wrote other bytes than --threads 1"
echo "q4_k_m with 1 and 3 threads: identical"

# a NaN in one expert's weights, met by a thread other than the first: named, and no file left behind
cp -r "$F/tiny-dsv3-bf16" "$tmp/nan"
st=$tmp/nan/model.safetensors
n=$(od -An -t u8 -N 8 "$st" | tr -d ' ')
off=$(dd if="$st" bs=1 skip=8 count="$n" 2>/dev/null | grep -o '"model.layers.2.mlp.experts.9.up_proj.weight":{[^}]*}' |
      sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
[ -n "$off" ] || fail "fixture layout changed: no layer-2 expert 9 up_proj"
printf '\xc0\x7f%.0s' $(seq 16) | dd of="$st" bs=1 seek=$((8 + n + off + 512)) conv=notrunc 2>/dev/null
if err=$("$TANDEM" convert --from "$tmp/nan" --to "$tmp/nan.gguf" --type q4_k --no-tokenizer --quiet --threads 4 2>&1); then
    fail "a source with NaN weights converted"
fi
grep -q "non-finite" <<<"$err" || fail "the NaN is not named: $err"
[ ! -e "$tmp/nan.gguf" ] || fail "a failed conversion left a file"
echo "NaN source refused: $(tail -n 1 <<<"$err" | cut -c1-150)"

# usage errors and bad sources
"$TANDEM" convert --from "$F/tiny-dsv3-bf16" --to "$tmp/x.gguf" 2>/dev/null && fail "no --type accepted"
"$TANDEM" convert --from "$F/tiny-dsv3-bf16" --to "$tmp/x.gguf" --type q3_k --no-tokenizer 2>/dev/null && fail "q3_k accepted"
if err=$("$TANDEM" convert --from "$tmp/none" --to "$tmp/x.gguf" --type q8_0 2>&1); then fail "missing source"; fi
grep -q "no such file" <<<"$err" || fail "missing source not named: $err"
[ ! -e "$tmp/x.gguf" ] || fail "a failed conversion left a file"
echo PASS
