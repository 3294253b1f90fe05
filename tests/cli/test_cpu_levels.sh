#!/usr/bin/env bash
# One binary for every x86-64: run under QEMU's user-mode CPU models, the build here (whose kernels include
# AVX-512 and AMX code) must pick what the emulated CPU has and never execute an instruction it lacks
# (QEMU raises SIGILL for AVX-512 on these models):
#   Haswell   AVX2/FMA/F16C, no AVX-512   -> the AVX2 kernels;
#   Westmere  SSE4.2, no AVX              -> the generic kernels.
# On each: the bandwidth probe reports the loads it used, `eval --kernels auto` passes on the bundled model
# and on the Q4_K GGUF fixture, and forcing a level the CPU lacks is a clear error, not a crash.
# Skipped without qemu-x86_64 (tools/install-deps.sh installs qemu-user) and in sanitizer builds.
set -uo pipefail
command -v qemu-x86_64 >/dev/null || { echo "no qemu-x86_64 (package qemu-user)"; exit 77; }
[ "${TANDEM_SANITIZED:-0}" = 1 ] && { echo "sanitizer build: not under QEMU"; exit 77; }
SRC=${TANDEM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL=$SRC/models/tandem-tiny-q8_0.gguf REF=$SRC/models/tandem-tiny.reference.safetensors
G=$TANDEM_SHARED/fixtures/gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf
fail=0
bad() { echo "FAIL: $*"; fail=1; }
on() { local cpu=$1; shift; qemu-x86_64 -cpu "$cpu" "$TANDEM" "$@" 2> >(grep -v "TCG doesn't support" >&2); }

for pair in Haswell:avx2 Westmere:sse2; do
    cpu=${pair%%:*} loads=${pair#*:}
    out=$(on "$cpu" bench membw --size 8MiB --passes 1 --threads 1 --json); rc=$?
    [ $rc -eq 0 ] || bad "$cpu: bench membw exited $rc"
    grep -q "\"loads\":\"$loads\"" <<<"$out" || bad "$cpu: the bandwidth probe should use $loads loads: $out"

    out=$(on "$cpu" eval --model "$MODEL" --reference "$REF" --kernels auto --kv-type f32 --max-kld 2e-3 --json 2>&1); rc=$?
    [ $rc -eq 0 ] && grep -q '"pass":true' <<<"$out" || bad "$cpu: eval of the bundled model (rc $rc): $(tail -n 3 <<<"$out")"

    if [ -f "$G" ]; then
        out=$(on "$cpu" eval --model "$G" --kernels auto --kv-type f32 --json 2>&1); rc=$?
        [ $rc -eq 0 ] && grep -q '"pass":true' <<<"$out" || bad "$cpu: eval of the Q4_K fixture (rc $rc): $(tail -n 3 <<<"$out")"
    fi

    out=$(on "$cpu" eval --model "$MODEL" --reference "$REF" --kernels avx512 2>&1); rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then bad "$cpu: --kernels avx512 should be refused, got rc $rc"
    elif ! grep -qi "avx-\?512" <<<"$out"; then bad "$cpu: the refusal should name AVX-512: $out"; fi
    echo "$cpu: $loads loads, eval passes, --kernels avx512 refused"
done
exit $fail
