#!/usr/bin/env bash
# tandem eval --kernels ref on both GGUF fixtures against their float64 references (computed from ggml's
# dequantized weights): the logits and the MTP logits within 1e-4, every greedy step followed; and the
# expert-group override really changes the routing.
set -euo pipefail
G=$TANDEM_SHARED/fixtures/gguf
[ -f "$G/tiny-dsv3-q8_0-legacy.gguf" ] || { echo "no GGUF fixtures in $G"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
json_num() { sed -n 's/.*"'"$1"'":\([^,}]*\).*/\1/p' <<<"$2"; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }

# MLA layout, Q4_K/Q6_K/Q5_0, MTP block blk.3.nextn.*
out=$("$TANDEM" eval --model "$G/tiny-dsv3-q4_k_m-mla-mtp.gguf" --kernels ref --json) || fail "MLA fixture: $out"
mtp=$(json_num mtp_max_rel_err "$out")
rel=$(json_num logits_max_rel_err "$out")
[ -n "$mtp" ] && [ "$mtp" != null ] || fail "MLA fixture: no MTP comparison: $out"
le "$mtp" 1e-4 || fail "MLA fixture: mtp_max_rel_err $mtp > 1e-4"
le "$rel" 1e-4 || fail "MLA fixture: logits_max_rel_err $rel > 1e-4"
grep -q '"greedy_match":"10/10"' <<<"$out" || fail "MLA fixture: greedy steps not all followed: $out"
echo "mla-mtp: logits $rel, mtp $mtp"

# legacy layout (attn_kv_b), Q8_0, no MTP
out=$("$TANDEM" eval --model "$G/tiny-dsv3-q8_0-legacy.gguf" --kernels ref --json) || fail "legacy fixture: $out"
rel=$(json_num logits_max_rel_err "$out")
le "$rel" 1e-4 || fail "legacy fixture: logits_max_rel_err $rel > 1e-4"
grep -q '"mtp_max_rel_err":null' <<<"$out" || fail "legacy fixture has no MTP block: $out"
echo "legacy: logits $rel"

# the file says 4 groups, keep 2; forcing 1 group changes which experts are chosen
if out=$("$TANDEM" eval --model "$G/tiny-dsv3-q8_0-legacy.gguf" --kernels ref --json --expert-groups 1/1); then
    fail "--expert-groups 1/1 had no effect: $out"
fi
"$TANDEM" eval --model "$G/tiny-dsv3-q8_0-legacy.gguf" --kernels ref --json --expert-groups 4/2 >/dev/null ||
    fail "--expert-groups 4/2 (the file's own) should pass"
"$TANDEM" eval --model "$G/tiny-dsv3-q8_0-legacy.gguf" --expert-groups 3/9 2>/dev/null && fail "3/9 accepted"
echo PASS
