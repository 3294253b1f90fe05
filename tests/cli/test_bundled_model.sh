#!/usr/bin/env bash
# The bundled model: under 14 MiB, within Q8_0 error of its training reference (float64 logits of the
# exported BF16 weights, computed by the fixtures' independent implementation), and a dictionary
# question gets a short, definition-like English answer.
set -u
fail=0
m="$TANDEM_SOURCE_DIR/models/tandem-tiny-q8_0.gguf"
ref="$TANDEM_SOURCE_DIR/models/tandem-tiny.reference.safetensors"
[ -f "$m" ] || { echo "FAIL: $m is missing"; exit 1; }
size=$(stat -c %s "$m")
[ "$size" -lt $((14 * 1024 * 1024)) ] || { echo "FAIL: $m is $size bytes (limit 14 MiB)"; fail=1; }

# Q8_0 against the BF16 weights' reference: judged by KL divergence and top-1 agreement. Q8_0's
# rounding (half a step of max|w|/127 per block of 32) gives KL of order 1e-4 on this model.
out=$("$TANDEM" eval --model "$m" --reference "$ref" --kernels ref --max-kld 2e-3 2>&1); rc=$?
printf '%s\n' "$out" | tail -n 1
[ $rc -eq 0 ] || { echo "FAIL: eval of the bundled model (rc=$rc)"; printf '%s\n' "$out"; fail=1; }

# generate uses the bundled model when --model is not given
ans=$(TANDEM_MODEL= "$TANDEM" generate --prompt 'What does "harbor" mean?' -n 48 2>/dev/null); rc=$?
echo "answer: $ans"
[ $rc -eq 0 ] || { echo "FAIL: generate rc=$rc"; fail=1; }
words=$(printf '%s' "$ans" | wc -w)
# one short sentence of English words: a capital first, a period last, letters and punctuation only
if ! printf '%s' "$ans" | grep -Eq "^[A-Z][A-Za-z ,;:'()-]*\.$" || [ "$words" -lt 2 ] || [ "$words" -gt 30 ]; then
  echo "FAIL: not a short definition-like sentence: '$ans'"; fail=1
fi
exit $fail
