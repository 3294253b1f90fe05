#!/usr/bin/env bash
# tandem eval --kernels ref passes on every safetensors fixture, and fails (exit 1, pass:false) when the
# model and reference do not belong together.
set -u
fail=0
fx="$TANDEM_SHARED/fixtures/safetensors"
for d in "$fx"/*/; do
  d=${d%/}
  out=$("$TANDEM" eval --model "$d" --kernels ref 2>&1); rc=$?
  last=$(printf '%s\n' "$out" | tail -n 1)
  if [ $rc -ne 0 ] || ! printf '%s' "$last" | grep -q '"pass":true'; then
    echo "FAIL: eval on $(basename "$d") (rc=$rc)"; printf '%s\n' "$out"; fail=1
  else
    echo "ok: $(basename "$d"): $last"
  fi
done
# the FP8 model against the BF16 model's reference: same shapes, different weights -> must fail
out=$("$TANDEM" eval --model "$fx/tiny-dsv3-fp8" --reference "$fx/tiny-dsv3-bf16/reference.safetensors" --kernels ref 2>&1); rc=$?
if [ $rc -ne 1 ] || ! printf '%s' "$out" | tail -n 1 | grep -q '"pass":false'; then
  echo "FAIL: mismatched reference was not caught (rc=$rc)"; printf '%s\n' "$out"; fail=1
fi
# a reference of another shape is an error naming it
out=$("$TANDEM" eval --model "$fx/tiny-dsv3-bf16" --reference "$fx/tiny-dsv3-qdirect-bf16/reference.safetensors" --kernels ref 2>&1); rc=$?
if [ $rc -ne 1 ] || ! printf '%s' "$out" | grep -q "logits"; then
  echo "FAIL: shape mismatch not reported (rc=$rc): $out"; fail=1
fi
# bad command lines exit 2 with a message
for args in "--threads -3" "--kernels fast" "--max-kld abc" "--bogus"; do
  # shellcheck disable=SC2086
  out=$("$TANDEM" eval --model "$fx/tiny-dsv3-bf16" $args 2>&1); rc=$?
  if [ $rc -ne 2 ] || [ -z "$out" ]; then echo "FAIL: 'eval $args' gave rc=$rc: $out"; fail=1; fi
done
out=$("$TANDEM" eval --model /nonexistent/model 2>&1); rc=$?
if [ $rc -ne 1 ] || ! printf '%s' "$out" | grep -q "/nonexistent/model"; then echo "FAIL: missing model: $out"; fail=1; fi
exit $fail
