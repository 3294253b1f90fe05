#!/usr/bin/env bash
# Issue 14 on the GPU host, CPU only: whole-model benchmarks at DeepSeek-V3's real shapes on synthetic
# weights, and llama.cpp beside tandem on the same file. Two ways to run it:
#
# quick (one short device call): `synth-bench.sh quick` writes one synthetic GGUF to disk (3 dense + 2 MoE
#   layers and the MTP block, FILE_LAYERS to change; about 24 GB at Q4_K_M), then on that file:
#   decode   bench decode: tok/s, extrapolated to 61 layers, roofline_ratio, the moe_submit handoff
#            (--handoff), resident set vs plan after the warm-up (and after MEM_CTX positions, default 0)
#   compare  tools/compare/side-by-side.sh: tandem and llama.cpp (node-llama-cpp's prebuilt libllama,
#            carried with td_llama_run), prompt of 2,048 tokens then 32 decoded, at THREADS
#   mtp      bench mtp --simulate-acceptance 0.85: verify cost, experts per pair, speedup measured and
#            projected with R1's 13.8 experts per pair
#   The binaries may be prebuilt elsewhere and carried: BIN (tandem) and LLAMA_RUN (td_llama_run, with
#   LD_LIBRARY_PATH naming the libllama folder); `build` is then skipped.
#
# full (in memory, as many MoE layers as RAM allows; 8-12 minutes, so one step per command):
#   tools/gpu-host/synth-bench.sh build
#   tools/gpu-host/synth-bench.sh decode      # then prefill, mtp; `table` prints the table of the logs
#   decode   bench decode --synth with as many MoE layers as RAM allows (at least 8), --mem-ctx 4096
#   prefill  bench prefill of 2,048 tokens (3 dense + PREFILL_MOE MoE layers), extrapolated to 61 layers
#   mtp      bench mtp --synth --simulate-acceptance 0.85 (3 dense + MTP_MOE MoE layers + MTP)
#
# Start with `. .gpu-host/install.sh` (dependencies, as for kernels.sh).
# Knobs: THREADS (16), BUILD (build-synth-gpuhost), CONFIG (the shared DeepSeek-V3 config.json), TYPE
# (q4_k_m), MOE_LAYERS (decode's MoE layers; default: what 85% of MemAvailable holds, at least 8),
# PREFILL_MOE (8), MTP_MOE (8), KERNELS (auto), PREFILL_KERNELS (auto; amx for the bf16 tiles), FILE
# (quick's GGUF, /tmp/synth-bench/v3.gguf), FILE_LAYERS (5), MEM_CTX (quick: 0), COMPARE_PROMPT (2048),
# STEP_TIMEOUT (seconds per quick step, 150), SYNTH_TIMEOUT (quick's synth step, STEP_TIMEOUT).
# Logs go to $OUT when set, else $BUILD/logs. One failing step never stops the others.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
THREADS=${THREADS:-16}
BUILD=${BUILD:-$ROOT/build-synth-gpuhost}
CONFIG=${CONFIG:-$ROOT/../shared/fixtures/real/deepseek-v3-config.json}
TYPE=${TYPE:-q4_k_m}
KERNELS=${KERNELS:-auto}
PREFILL_KERNELS=${PREFILL_KERNELS:-auto}
PREFILL_MOE=${PREFILL_MOE:-8}
MTP_MOE=${MTP_MOE:-8}
LOGS=${OUT:-$BUILD/logs}
BIN=${BIN:-$BUILD/bin/tandem}
LLAMA_RUN=${LLAMA_RUN:-$BUILD/bin/td_llama_run}
FILE=${FILE:-/tmp/synth-bench/v3.gguf}
FILE_LAYERS=${FILE_LAYERS:-5}
MEM_CTX=${MEM_CTX:-0}
COMPARE_PROMPT=${COMPARE_PROMPT:-2048}
STEP_TIMEOUT=${STEP_TIMEOUT:-150}
SYNTH_TIMEOUT=${SYNTH_TIMEOUT:-$STEP_TIMEOUT}
mkdir -p "$LOGS"
T0=$SECONDS
note() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*"; }
# the value of "key" in the JSON line of a log ("" when absent); nested keys as "outer.inner"
jget() {
    local line
    line=$(grep '^{' "$2" 2>/dev/null | tail -n 1)
    case $1 in
    *.*) line=$(sed -n "s/.*\"${1%%.*}\":{\([^}]*\)}.*/\1/p" <<<"$line"); set -- "${1#*.}" "$2" ;;
    esac
    { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" <<<"$line"; sed -n "s/.*\"$1\":\([^,\"}]*\).*/\1/p" <<<"$line"; } | head -n 1
}
fmt() { [ -n "$1" ] && [ "$1" != null ] && printf "%.${2:-2}f" "$1" 2>/dev/null || printf -- '-'; }

step_build() {
    note "configure + build (Release, CUDA off) -> $LOGS/build.log"
    local gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
    cmake -S "$ROOT" -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DTANDEM_CUDA=OFF >"$LOGS/build.log" 2>&1 &&
        cmake --build "$BUILD" -j "$(nproc)" --target tandem_cli >>"$LOGS/build.log" 2>&1 && note "build ok" ||
        note "build FAILED (see build.log)"
    { lscpu; echo; free -g; } >"$LOGS/machine.txt" 2>&1
}

# MoE layers that fit in 85% of the available memory next to the dense layers, embedding and head
moe_layers() {
    local avail three four
    avail=$(awk '/MemAvailable/ {print $2 * 1024}' /proc/meminfo)
    three=$(jget bytes <("$BIN" synth --config "$CONFIG" --layers 3 --type "$TYPE" --dry-run --json))
    four=$(jget bytes <("$BIN" synth --config "$CONFIG" --layers 4 --type "$TYPE" --dry-run --json))
    awk -v a="$avail" -v t="$three" -v f="$four" 'BEGIN { n = int((0.85 * a - t) / (f - t)); if (n < 8) n = 8; if (n > 58) n = 58; print n }'
}

step_decode() {
    local moe=${MOE_LAYERS:-$(moe_layers)}
    note "bench decode: 3 dense + $moe MoE layers in memory -> $LOGS/decode.log"
    timeout 900 "$BIN" bench decode --synth "$CONFIG" --layers $((3 + moe)) --type "$TYPE" --threads "$THREADS" \
        --kernels "$KERNELS" --extrapolate-layers 61 --tokens 32 --prompt 64 --handoff --mem-ctx 4096 --ctx 4096 \
        >"$LOGS/decode.log" 2>&1 || note "decode FAILED rc=$? (see decode.log)"
}

step_prefill() {
    note "bench prefill: 2048 tokens, 3 dense + $PREFILL_MOE MoE layers -> $LOGS/prefill.log"
    timeout 900 "$BIN" bench prefill --synth "$CONFIG" --layers $((3 + PREFILL_MOE)) --type "$TYPE" --threads "$THREADS" \
        --kernels "$PREFILL_KERNELS" --tokens 2048 --ctx 4096 --extrapolate-layers 61 >"$LOGS/prefill.log" 2>&1 ||
        note "prefill FAILED rc=$? (see prefill.log)"
}

step_mtp() {
    note "bench mtp --simulate-acceptance 0.85: 3 dense + $MTP_MOE MoE layers + MTP -> $LOGS/mtp.log"
    timeout 900 "$BIN" bench mtp --synth "$CONFIG" --layers $((3 + MTP_MOE)) --type "$TYPE" --threads "$THREADS" \
        --kernels "$KERNELS" --simulate-acceptance 0.85 --tokens 64 --prompt 64 --extrapolate-layers 61 \
        >"$LOGS/mtp.log" 2>&1 || note "mtp FAILED rc=$? (see mtp.log)"
}

machine() { { lscpu; echo; free -g; df -h /tmp; } >"$LOGS/machine.txt" 2>&1; }

step_file() {
    machine
    note "synth: $FILE_LAYERS layers + MTP, $TYPE, to $FILE -> $LOGS/file.log"
    mkdir -p "$(dirname "$FILE")"
    timeout "$SYNTH_TIMEOUT" "$BIN" synth --config "$CONFIG" --layers "$FILE_LAYERS" --type "$TYPE" --keep-mtp \
        --threads "$THREADS" --check-tokens 0 --quiet --to "$FILE" --json >"$LOGS/file.log" 2>&1 ||
        note "synth FAILED rc=$? (see file.log)"
    ls -l "$FILE" >>"$LOGS/file.log" 2>&1
}

step_decode_file() {
    note "bench decode on $FILE -> $LOGS/decode.log"
    timeout "$STEP_TIMEOUT" "$BIN" bench decode --model "$FILE" --threads "$THREADS" --kernels "$KERNELS" \
        --extrapolate-layers 61 --tokens 32 --prompt 64 --handoff --mem-ctx "$MEM_CTX" --ctx 4096 \
        >"$LOGS/decode.log" 2>&1 || note "decode FAILED rc=$? (see decode.log)"
}

step_compare() {
    note "side by side with llama.cpp on $FILE: prompt $COMPARE_PROMPT, 32 decoded, $THREADS threads -> $LOGS/compare.log"
    timeout "$STEP_TIMEOUT" "$ROOT/tools/compare/side-by-side.sh" --model "$FILE" --bin "$(dirname "$LLAMA_RUN")" \
        --threads "$THREADS" --rounds 1 --prompt-tokens "$COMPARE_PROMPT" -n 32 --log "$LOGS/compare-runs.log" \
        >"$LOGS/compare.log" 2>&1 || note "compare FAILED rc=$? (see compare.log, compare-runs.log)"
}

step_mtp_file() {
    note "bench mtp --simulate-acceptance 0.85 on $FILE -> $LOGS/mtp.log"
    timeout "$STEP_TIMEOUT" "$BIN" bench mtp --model "$FILE" --threads "$THREADS" --kernels "$KERNELS" \
        --simulate-acceptance 0.85 --tokens 64 --prompt 64 --extrapolate-layers 61 \
        >"$LOGS/mtp.log" 2>&1 || note "mtp FAILED rc=$? (see mtp.log)"
}

step_table() {
    local d=$LOGS/decode.log p=$LOGS/prefill.log m=$LOGS/mtp.log
    echo
    echo "== issue 14 on $(sed -n 's/^Model name: *//p' "$LOGS/machine.txt" 2>/dev/null | head -n 1), $THREADS threads, $TYPE, CPU only"
    printf '%-36s %s\n' "decode model" "$(jget model "$d") ($(jget kernels "$d") kernels)"
    printf '%-36s %s\n' "decode tok/s (as built)" "$(fmt "$(jget tok_s "$d")") ($(jget layers "$d") layers)"
    printf '%-36s %s\n' "decode tok/s, 61 layers (extrap.)" "$(fmt "$(jget tok_s_extrapolated "$d")")"
    printf '%-36s %s\n' "roofline_ratio (61 layers)" "$(fmt "$(jget roofline_ratio "$d")" 3)  (goal >= 0.85)"
    printf '%-36s %s\n' "membw GB/s (same process)" "$(fmt "$(jget membw_gbps "$d")" 1)"
    printf '%-36s %s\n' "moe_submit handoff" "$(fmt "$(jget moe_handoff_us "$d")" 1) us = $(fmt "$(awk -v s="$(jget moe_handoff_share "$d")" 'BEGIN { if (s != "") print 100 * s }')" 2)% of a MoE layer (goal < 2%)"
    printf '%-36s %s\n' "resident vs plan, after warm-up" "$(fmt "$(awk -v r="$(jget memory_warm.rss_bytes "$d")" 'BEGIN { print r / 2^30 }')" 2) GiB vs $(fmt "$(awk -v r="$(jget memory_warm.predicted_bytes "$d")" 'BEGIN { print r / 2^30 }')" 2) GiB, within: $(jget memory_warm.within "$d")"
    printf '%-36s %s\n' "resident vs plan, after 4K context" "$(fmt "$(awk -v r="$(jget memory_ctx.rss_bytes "$d")" 'BEGIN { print r / 2^30 }')" 2) GiB, within: $(jget memory_ctx.within "$d")"
    printf '%-36s %s\n' "prefill 2048 tok/s (as built)" "$(fmt "$(jget tok_s "$p")" 1) ($(jget layers "$p") layers, $(jget kernels "$p") kernels)"
    printf '%-36s %s\n' "prefill 2048 tok/s, 61 layers" "$(fmt "$(jget tok_s_extrapolated "$p")" 1)"
    printf '%-36s %s\n' "mtp verify 2 tok / 1 tok (61 l.)" "$(fmt "$(jget verify_ratio_extrapolated "$m")") (as built $(fmt "$(jget verify_ratio "$m")"))"
    printf '%-36s %s\n' "mtp experts per verify pair" "$(fmt "$(jget experts_verify "$m")") (1 token: $(fmt "$(jget experts_single "$m")"))"
    printf '%-36s %s\n' "mtp speedup at 0.85, as run" "$(fmt "$(jget speedup "$m")") (acceptance $(fmt "$(jget acceptance "$m")" 3), identical $(jget identical "$m"))"
    printf '%-36s %s\n' "mtp speedup implied / projected" "$(fmt "$(jget speedup_implied "$m")") / $(fmt "$(jget speedup_projected "$m")") (13.8 experts per pair)"
    if [ -f "$LOGS/compare.log" ]; then
        local c=$LOGS/compare.log
        printf '%-36s %s\n' "llama.cpp decode tok/s (same file)" "$(fmt "$(jget llama_decode_tok_s "$c")") (tandem $(fmt "$(jget tandem_decode_tok_s "$c")"), ratio $(fmt "$(awk -v a="$(jget tandem_decode_tok_s "$c")" -v b="$(jget llama_decode_tok_s "$c")" 'BEGIN { if (b > 0) print a / b }')"))"
        printf '%-36s %s\n' "llama.cpp prompt $COMPARE_PROMPT tok/s" "$(fmt "$(jget llama_prompt_tok_s "$c")" 1) (tandem $(fmt "$(jget tandem_prompt_tok_s "$c")" 1))"
    fi
    echo "(logs in $LOGS)"
}

[ $# -eq 0 ] && set -- build decode prefill mtp table
for s in "$@"; do
    case $s in
    build | decode | prefill | mtp | table | file | compare) "step_$s" ;;
    decode-file | mtp-file) "step_${s/-/_}" ;;
    quick) step_file; step_decode_file; step_compare; step_mtp_file; step_table ;;
    *) echo "synth-bench.sh: unknown step '$s' (build, decode, prefill, mtp, table; quick, or file, decode-file, compare, mtp-file)" >&2; exit 2 ;;
    esac
done
