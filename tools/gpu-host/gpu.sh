#!/usr/bin/env bash
# Issue 15 on the GPU host (one H200): build tandem with CUDA (Release, sm_90), run the CUDA kernel tests,
# the per-backend op tests of cuda:0 against the CPU reference, tandem eval on every fixture under the GPU
# plans (tests/cli/test_gpu_eval.sh), decode speed of the bundled model per plan, and print a short table
# last.
#
#   . .gpu-host/install.sh       # dependencies (cJSON, libyaml, PCRE2, hwloc, oneDNN, libedit)
#   tools/gpu-host/gpu.sh        # logs go to $OUT when set, else build-gpu/logs
#
# Knobs: BUILD (build-gpu), STEPS (build,cuda,ops,eval,speed: the steps to run), JOBS (16).
# One failing step never stops the others: every result lands in the table, failures marked as such.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build-gpu}
LOGS=${OUT:-$BUILD/logs}
STEPS=${STEPS:-build,cuda,ops,eval,speed}
JOBS=${JOBS:-16}
export TANDEM_SHARED=${TANDEM_SHARED:-$ROOT/../shared}
mkdir -p "$LOGS"
T0=$SECONDS
ROWS=()
row() { ROWS+=("$(printf '%-30s %s' "$1" "$2")"); }
note() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*"; }
want() { [[ ",$STEPS," == *",$1,"* ]]; }
jget() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$2" | tail -n 1; }
T=$BUILD/bin/tandem

if want build; then
    note "configure + build (Release, CUDA sm_90) -> build.log"
    t=$SECONDS
    if cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
            >"$LOGS/build.log" 2>&1 &&
        cmake --build "$BUILD" -j "$JOBS" --target tandem_cli test_cuda test_backend_ops >>"$LOGS/build.log" 2>&1; then
        row "build" "ok ($((SECONDS - t)) s)"
    else
        row "build" "FAILED (build.log)"
        tail -n 30 "$LOGS/build.log"
    fi
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$LOGS/machine.txt" 2>&1
row "gpu" "$(head -n 1 "$LOGS/machine.txt")"

if want cuda; then
    note "test_cuda -> test_cuda.log"
    timeout 300 "$BUILD/tests/test_cuda" >"$LOGS/test_cuda.log" 2>&1
    rc=$?
    row "test_cuda" "exit $rc, $(grep -E 'checks, [0-9]+ failed' "$LOGS/test_cuda.log" | tail -n 1)"
    while read -r l; do row "  $(cut -c1-30 <<<"$l")" "$(cut -c31- <<<"$l")"; done < <(grep -E '^(mla|copy|handoff) ' "$LOGS/test_cuda.log")
    [ $rc -ne 0 ] && grep -E 'FAIL|fail' "$LOGS/test_cuda.log" | head -n 20
fi

if want ops; then
    note "test_backend_ops (cuda:0, cuda:0-exact) -> ops.log"
    TANDEM_TEST_BACKENDS=cuda:0,cuda:0-exact timeout 400 "$BUILD/tests/test_backend_ops" >"$LOGS/ops.log" 2>&1
    rc=$?
    row "test_backend_ops" "exit $rc, $(grep -E 'checks, [0-9]+ failed' "$LOGS/ops.log" | tail -n 1)"
    while read -r l; do row "  $l" ""; done < <(grep -E '^cuda:0.*cases' "$LOGS/ops.log")
    [ $rc -ne 0 ] && grep -E 'FAIL' "$LOGS/ops.log" | head -n 25
fi

if want eval; then
    note "test_gpu_eval.sh -> gpu_eval.log (per-run outputs in eval-logs.tgz)"
    elog=$(mktemp -d)
    TANDEM=$T TANDEM_SOURCE_DIR=$ROOT GPU_EVAL_LOG=$elog timeout 420 bash "$ROOT/tests/cli/test_gpu_eval.sh" >"$LOGS/gpu_eval.log" 2>&1
    rc=$?
    tar czf "$LOGS/eval-logs.tgz" -C "$elog" . 2>/dev/null
    row "test_gpu_eval.sh" "exit $rc, $(grep -c '^FAIL' "$LOGS/gpu_eval.log") failures"
    cat "$LOGS/gpu_eval.log" | grep -vE '^\s*$' | head -n 60
fi

if want speed; then
    note "decode speed of the bundled model per plan -> speed.log"
    cat >"$BUILD/all-gpu.yaml" <<'EOF'
- match: {name: '.'}
  place: {device: cuda:0}
EOF
    for plan in cpu deepseek-v3-1gpu-24gb all-gpu; do
        args=()
        [ $plan = deepseek-v3-1gpu-24gb ] && args=(--rules $plan --gpu-mem 24GiB)
        [ $plan = all-gpu ] && args=(--rules "$BUILD/all-gpu.yaml" --gpu-mem 24GiB)
        out=$(timeout 120 "$T" generate --prompt "Tell me a long story about a cat and a dog." -n 200 --ignore-eos --json "${args[@]}" 2>>"$LOGS/speed.log")
        echo "$plan $out" >>"$LOGS/speed.log"
        row "decode $plan" "prompt $(jget prompt_tok_s "$out") tok/s, decode $(jget decode_tok_s "$out") tok/s, $(jget token_ms "$out") ms/token"
        dev=$(grep -o '"devices":\[[^]]*\]' <<<"$out" | sed 's/"name"/\n  "name"/g' | tail -n +2)
        while read -r d; do [ -n "$d" ] && row "  $(sed -n 's/.*"name":"\([^"]*\)".*/\1/p' <<<"$d")" "busy $(jget busy_ms "$d") ms, experts $(jget experts_busy_ms "$d") ms, handoff $(jget handoff_ms "$d") ms, wait $(jget wait_ms "$d") ms per token"; done <<<"$dev"
        gm=$(grep -o '"gpus":\[[^]]*\]' <<<"$out")
        [ -n "$gm" ] && row "  gpu memory" "used $(jget mem_used "$gm") B, planned $(jget mem_planned "$gm") B, ok $(jget mem_ok "$gm")"
    done
    # what tandem rules predicts for the same plan (the bundled model's context: 512)
    pr=$("$T" rules --model "$ROOT/models/tandem-tiny-q8_0.gguf" --rules deepseek-v3-1gpu-24gb --gpu-mem 24GiB --ctx 512 2>&1 | grep '^cuda:0 ')
    echo "rules: $pr" >>"$LOGS/speed.log"
    row "  tandem rules, 1-GPU preset" "$(awk '{print "weights", $2, $3, "kv", $4, $5, "reserve", $6, $7, "total", $8, $9}' <<<"$pr")"
fi

row "total" "$((SECONDS - T0)) s"
echo
printf '%s\n' "${ROWS[@]}"
