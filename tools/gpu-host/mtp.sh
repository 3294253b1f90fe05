#!/usr/bin/env bash
# Issue 8 on the GPU host (Xeon with AVX-512 and AMX, 16 cores; CPU only): build tandem (Release, CUDA
# off), check that greedy streams stay identical with MTP on the AVX-512/AMX kernels (test_mtp) and that
# speculative sampling keeps the distribution (test_mtp_dist), then measure `tandem bench mtp` on the
# bundled model and print a short table last. About 2 minutes.
#
#   tools/gpu-host/mtp.sh        # logs go to $OUT when set, else build-mtp-gpuhost/logs
#
# Knobs: THREADS (16), BUILD (build-mtp-gpuhost), TOKENS (256 per prompt and mode), MODEL (the bundled one).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
THREADS=${THREADS:-16}
BUILD=${BUILD:-$ROOT/build-mtp-gpuhost}
TOKENS=${TOKENS:-256}
MODEL=${MODEL:-$ROOT/models/tandem-tiny-q8_0.gguf}
LOGS=${OUT:-$BUILD/logs}
mkdir -p "$LOGS"
T0=$SECONDS
ROWS=()
row() { ROWS+=("$(printf '%-30s %s' "$1" "$2")"); }
note() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*"; }
jget() { tail -n 1 "$2" 2>/dev/null | sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p"; }
fmt() { [ -n "$1" ] && printf "%.${2:-2}f" "$1" 2>/dev/null || printf -- '-'; }

note "configure + build (Release, CUDA off) -> $LOGS/build.log"
GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
if cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DTANDEM_CUDA=OFF >"$LOGS/build.log" 2>&1 &&
    cmake --build "$BUILD" -j "$(nproc)" --target tandem_cli test_mtp test_mtp_dist >>"$LOGS/build.log" 2>&1; then
    row "build" "ok"
else
    row "build" "FAILED (see build.log)"
fi
CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
for f in avx512f avx512_vnni amx_bf16; do grep -qw "$f" /proc/cpuinfo && CPU="$CPU $f"; done
row "cpu" "$CPU"

export TANDEM_SHARED=${TANDEM_SHARED:-$ROOT/../shared} TANDEM_SOURCE_DIR=$ROOT
for t in test_mtp test_mtp_dist; do
    note "$t"
    timeout 600 "$BUILD/tests/$t" >"$LOGS/$t.log" 2>&1
    rc=$?
    last=$(grep -oE '[0-9]+ checks, [0-9]+ failed' "$LOGS/$t.log" | tail -n 1)
    case $rc in
        0) row "$t" "pass ($last)" ;;
        77) row "$t" "skipped: $(grep -i skip "$LOGS/$t.log" | head -n 1)" ;;
        *) row "$t" "FAIL rc=$rc ($last; see $t.log: $(grep -m1 FAIL "$LOGS/$t.log" | cut -c1-160))" ;;
    esac
done

for threads in 1 "$THREADS"; do
    for k in 1 2; do
        log="$LOGS/bench_mtp_t${threads}_k$k.log"
        note "bench mtp --threads $threads --k $k"
        timeout 300 "$BUILD/bin/tandem" bench mtp --model "$MODEL" --threads "$threads" --k "$k" --tokens "$TOKENS" >"$log" 2>&1
        if [ -z "$(jget speedup "$log")" ]; then
            row "bench t=$threads k=$k" "FAIL: $(tail -n 1 "$log" | cut -c1-120)"
            continue
        fi
        row "bench t=$threads k=$k" "acc $(fmt "$(jget acceptance "$log")" 3), $(fmt "$(jget tokens_per_step "$log")") tok/step, plain $(fmt "$(jget plain_tok_s "$log")" 0) / mtp $(fmt "$(jget mtp_tok_s "$log")" 0) tok/s = $(fmt "$(jget speedup "$log")")x; verify $(fmt "$(jget verify_ms "$log")" 3) ms vs decode $(fmt "$(jget decode_ms "$log")" 3) ms, identical $(jget identical "$log")"
        row "" "experts: $(grep -E '^  layer' "$log" | awk '{printf "%s/%s ", $3, $5}')"
    done
done

echo
echo "issue 8 MTP on $(hostname) at $(date -u +%Y-%m-%dT%H:%MZ), $((SECONDS - T0)) s; logs in $LOGS"
echo "targets: greedy streams identical; distribution tests p > 0.01; speedup >= 1.3x (bundled model, CPU)"
for r in "${ROWS[@]}"; do echo "$r"; done | tee "$LOGS/table.txt"
