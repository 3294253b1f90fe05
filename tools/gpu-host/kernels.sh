#!/usr/bin/env bash
# Issue 6 on the GPU host (Xeon with AVX-512 VNNI/BF16 and AMX, 16 cores): build tandem (Release, CUDA
# off), run the CPU kernel tests (the AVX-512 and AMX ones must RUN here, a skip counts as a failure),
# then the benchmarks the issue records, and print a short table last. About 4-6 minutes.
#
#   . .gpu-host/install.sh        # dependencies (cJSON, libyaml, PCRE2, oneDNN, libmicrohttpd, libedit)
#   tools/gpu-host/kernels.sh     # logs go to $OUT when set, else build-kernels-gpuhost/logs
#
# Knobs: THREADS (16), BUILD (build-kernels-gpuhost), TIME (seconds per benchmark, 3),
#        PREFILL_EXPERTS (distinct experts for the prefill runs; default: 128 if memory allows).
#        KERNELS_PREBUILT=dir: skip the build and use dir/tandem and dir/test_* (with KERNELS_RUN as a
#        command prefix, e.g. a dynamic loader); for trying the script on a machine without the toolchain.
# One failing step never stops the others: every result lands in the table, failures marked as such.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
THREADS=${THREADS:-16}
BUILD=${BUILD:-$ROOT/build-kernels-gpuhost}
TIME=${TIME:-3}
LOGS=${OUT:-$BUILD/logs}
read -r -a RUN <<<"${KERNELS_RUN:-}" # a command prefix (word-split on purpose)
mkdir -p "$LOGS"
T0=$SECONDS
ROWS=()
row() { ROWS+=("$(printf '%-34s %s' "$1" "$2")"); }
note() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*"; }
# the value of "key" in the JSON object on the last line of a file ("" when absent)
jget() { tail -n 1 "$2" 2>/dev/null | sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p"; }
fmt() { [ -n "$1" ] && printf "%.${2:-2}f" "$1" 2>/dev/null || printf -- '-'; }

# ------------------------------------------------------------------ build
if [ -n "${KERNELS_PREBUILT:-}" ]; then
    BIN=$KERNELS_PREBUILT
    TESTS=$KERNELS_PREBUILT
    row "build" "prebuilt ($BIN)"
else
    BIN=$BUILD/bin
    TESTS=$BUILD/tests
    GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
    note "configure + build (Release, CUDA off) -> $LOGS/build.log"
    if cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DTANDEM_CUDA=OFF >"$LOGS/build.log" 2>&1 &&
        cmake --build "$BUILD" -j "$(nproc)" --target tandem_cli test_kernels_avx2 test_kernels_avx512 test_kernels_amx \
            test_cpu test_pool test_numa >>"$LOGS/build.log" 2>&1; then
        row "build" "ok"
    else
        row "build" "FAILED (see build.log)"
    fi
fi
gcc --version 2>/dev/null | head -n 1 >"$LOGS/machine.txt"
{ lscpu; echo; free -g; echo; "${RUN[@]}" "$BIN/tandem" bench membw --help >/dev/null 2>&1 && echo "tandem runs"; } >>"$LOGS/machine.txt" 2>&1
CPU=$(sed -n 's/^Model name: *//p' "$LOGS/machine.txt" | head -n 1)
for f in avx512_vnni avx512_bf16 amx_bf16 amx_int8; do grep -qw "$f" /proc/cpuinfo && CPU="$CPU $f"; done
row "cpu" "$CPU"

# ------------------------------------------------------------------ tests
export TANDEM_SHARED=${TANDEM_SHARED:-$ROOT/../shared}
for t in test_kernels_avx2 test_kernels_avx512 test_kernels_amx test_cpu test_pool test_numa; do
    note "$t"
    timeout 300 "${RUN[@]}" "$TESTS/$t" >"$LOGS/$t.log" 2>&1
    rc=$?
    last=$(grep -E 'checks, [0-9]+ failed' "$LOGS/$t.log" | tail -n 1)
    case $rc in
        0) row "$t" "pass ($last)" ;;
        77) row "$t" "FAIL: skipped, but this host must run it ($(grep SKIP "$LOGS/$t.log" | head -n 1))" ;;
        124) row "$t" "FAIL: timed out" ;;
        *) row "$t" "FAIL rc=$rc ($last; see $t.log)" ;;
    esac
done

# ------------------------------------------------------------------ benchmarks
note "bench membw"
timeout 120 "${RUN[@]}" "$BIN/tandem" bench membw --threads "$THREADS" >"$LOGS/bench_membw.log" 2>&1
row "membw (GB/s, median)" "$(fmt "$(jget gbps "$LOGS/bench_membw.log")" 1)  best $(fmt "$(jget gbps_best "$LOGS/bench_membw.log")" 1)"

AVAIL_GB=$(awk '/MemAvailable/ {print int($2 / 1048576)}' /proc/meminfo 2>/dev/null || echo 0)
PE=${PREFILL_EXPERTS:-$([ "${AVAIL_GB:-0}" -ge 24 ] && echo 128 || echo 32)}

# name | arguments
BENCHES=(
    "decode q4_K 1 tok|--type q4_k --tokens 1"
    "decode q4_K 1 tok (avx2)|--type q4_k --tokens 1 --kernels avx2"
    "decode q4_K 1 tok (avx512)|--type q4_k --tokens 1 --kernels avx512"
    "decode q4_K 8 tok|--type q4_k --tokens 8"
    "decode q8_0 1 tok|--type q8_0 --tokens 1"
    "decode bf16 1 tok|--type bf16 --tokens 1"
    "prefill q4_K 512 tok (amx)|--type q4_k --tokens 512 --experts $PE --kernels amx --onednn"
    "prefill q4_K 2048 tok (amx)|--type q4_k --tokens 2048 --experts $PE --kernels amx --onednn"
    "prefill q4_K 512 tok (auto)|--type q4_k --tokens 512 --experts $PE"
    "prefill q4_K 2048 tok (auto)|--type q4_k --tokens 2048 --experts $PE"
    "prefill q8_0 512 tok (amx)|--type q8_0 --tokens 512 --experts $PE --kernels amx"
    "prefill bf16 512 tok (amx)|--type bf16 --tokens 512 --experts 32 --kernels amx --onednn"
)
i=0
for b in "${BENCHES[@]}"; do
    name=${b%%|*}
    args=${b#*|}
    i=$((i + 1))
    log="$LOGS/bench_experts_$i.log"
    note "bench experts $args"
    # shellcheck disable=SC2086
    timeout 150 "${RUN[@]}" "$BIN/tandem" bench experts $args --threads "$THREADS" --time "$TIME" >"$log" 2>&1
    rc=$?
    if [ $rc -ne 0 ] || [ -z "$(jget gbps "$log")" ]; then
        row "$name" "FAIL rc=$rc: $(grep -v '^{' "$log" | tail -n 1 | cut -c1-120)"
        continue
    fi
    line="$(jget kernel "$log"): $(fmt "$(jget gbps "$log")" 1) GB/s = $(fmt "$(jget ratio "$log")" 3) x membw, $(fmt "$(jget tflops "$log")" 3) TFLOP/s"
    case $name in prefill*)
        line="$line, roofline $(fmt "$(jget roofline_tflops "$log")" 2) -> $(fmt "$(jget roofline_ratio "$log")" 3)"
        pk=$(jget peak_tflops "$log") tf=$(jget tflops "$log")
        [ -n "$pk" ] && [ -n "$tf" ] && line="$line, peak $(fmt "$pk" 1) -> $(awk -v a="$tf" -v b="$pk" 'BEGIN { printf "%.3f", a / b }')"
        dn=$(jget onednn_bf16_tflops "$log")
        [ -n "$dn" ] && line="$line; onednn bf16 $(fmt "$dn" 2) / int8 $(fmt "$(jget onednn_int8_tops "$log")" 2)"
        ;;
    esac
    row "$name" "$line"
done

# ------------------------------------------------------------------ table
echo
echo "issue 6 kernels on $(hostname) at $(date -u +%Y-%m-%dT%H:%MZ), $THREADS threads, $((SECONDS - T0)) s; logs in $LOGS"
echo "targets: decode q4_K >= 0.90 x membw; prefill 2048 >= 8 TFLOP/s; prefill 512 >= 0.8 x roofline"
for r in "${ROWS[@]}"; do echo "$r"; done | tee "$LOGS/table.txt"
