#!/usr/bin/env bash
# tandem inspect on every fixture (GGUF and safetensors): it succeeds from headers alone and reports the
# facts the fixtures README states (layout, MTP presence, direct q, FP8), names every module class, and
# refuses a truncated file with a message.
set -euo pipefail
F=$TANDEM_SHARED/fixtures
[ -d "$F/gguf" ] || { echo "no fixtures in $F"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
field() { grep -o '"'"$1"'":\("[^"]*"\|[^,}]*\)' <<<"$2" | head -n 1 | cut -d: -f2-; }
expect() { # key expected json what
    local got; got=$(field "$1" "$3")
    [ "$got" = "$2" ] || fail "$4: $1 is $got, expected $2"
}

j=$("$TANDEM" inspect --json "$F/gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf")
expect attention_layout '"mla"' "$j" mla-mtp
expect mtp true "$j" mla-mtp
expect format '"gguf"' "$j" mla-mtp
expect unsupported_tensors 0 "$j" mla-mtp
j=$("$TANDEM" inspect --json "$F/gguf/tiny-dsv3-q8_0-legacy.gguf")
expect attention_layout '"kv_b"' "$j" legacy
expect mtp false "$j" legacy
j=$("$TANDEM" inspect --json "$F/safetensors/tiny-dsv3-bf16")
expect attention_layout '"kv_b"' "$j" bf16
expect mtp true "$j" bf16
expect format '"safetensors"' "$j" bf16
j=$("$TANDEM" inspect --json "$F/safetensors/tiny-dsv3-qdirect-bf16/model.safetensors")
expect q_lora_rank 0 "$j" qdirect
j=$("$TANDEM" inspect --json "$F/safetensors/tiny-dsv3-fp8")
grep -q '"f8_e4m3":' <<<"$j" || fail "fp8: no f8_e4m3 tensors counted: $j"

# the text form names every module class present
t=$("$TANDEM" inspect "$F/gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf")
for cls in embedding attention dense router "routed experts" "shared experts" head mtp; do
    grep -q "^  $cls " <<<"$t" || fail "text output lacks class '$cls'"
done

# the override reaches the hyperparameters
j=$("$TANDEM" inspect --json --expert-groups 2/1 "$F/gguf/tiny-dsv3-q8_0-legacy.gguf")
expect expert_groups 2 "$j" override
expect expert_groups_used 1 "$j" override

# bad input is a clear error, not a crash
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
head -c 1000 "$F/gguf/tiny-dsv3-q8_0-legacy.gguf" > "$tmp/cut.gguf"
if err=$("$TANDEM" inspect "$tmp/cut.gguf" 2>&1); then fail "truncated file accepted"; fi
grep -q "truncated" <<<"$err" || fail "truncation not reported: $err"
echo PASS
