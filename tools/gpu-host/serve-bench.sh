#!/usr/bin/env bash
# Issue 16 on the GPU host: what batching the slots of `tandem serve` buys on a model whose weights do not
# fit in cache. Builds tandem (Release), then runs `tandem bench serve` (the server's scheduler without
# HTTP) at 1, 4 and 16 slots: aggregate decode tok/s, step time, the distinct routed experts one step
# reads, the bytes a step reads (every weight once, the union of the experts, every slot's KV cache) and
# the step time against those bytes / the read bandwidth measured in the same process (goal: <= 1.15).
# Then the prefix reuse of a 2,000-token chat. A table is printed last.
#
#   tools/gpu-host/serve-bench.sh MODEL        # a real-shape synthetic model (bench ... --synth) or any GGUF
#
# Knobs: THREADS (16), BUILD (build-serve-gpuhost), SLOTS (1,4,16), TOKENS (64), PROMPT_LEN (32),
#        RULES (placement rules for the engine; default: CPU), OUT (logs; default $BUILD/logs).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODEL=${1:?usage: tools/gpu-host/serve-bench.sh MODEL}
THREADS=${THREADS:-16}
BUILD=${BUILD:-$ROOT/build-serve-gpuhost}
SLOTS=${SLOTS:-1,4,16}
TOKENS=${TOKENS:-64}
PROMPT_LEN=${PROMPT_LEN:-32}
LOGS=${OUT:-$BUILD/logs}
mkdir -p "$LOGS"
T0=$SECONDS
note() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*"; }

note "configure + build (Release, CUDA AUTO) -> $LOGS/build.log"
if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTANDEM_CUDA=AUTO &&
       cmake --build "$BUILD" -j "$(nproc)" --target tandem_cli; } >"$LOGS/build.log" 2>&1; then
    tail -n 30 "$LOGS/build.log"
    exit 1
fi
T=$BUILD/bin/tandem

note "read bandwidth (tandem bench membw) -> $LOGS/membw.log"
"$T" bench membw --threads "$THREADS" --json >"$LOGS/membw.log" 2>&1 || note "membw failed (see the log)"

note "batching at $SLOTS slots, $TOKENS tokens each -> $LOGS/serve.log"
args=(bench serve --model "$MODEL" --threads "$THREADS" --slots "$SLOTS" --tokens "$TOKENS" --prompt-len "$PROMPT_LEN")
[ -n "${RULES:-}" ] && args+=(--rules "$RULES")
if ! "$T" "${args[@]}" >"$LOGS/serve.log" 2>&1; then
    tail -n 20 "$LOGS/serve.log"
    exit 1
fi
cat "$LOGS/serve.log"

# the table: one row per slot count, from the JSON line
tail -n 1 "$LOGS/serve.log" | node -e '
let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
  const j = JSON.parse(s);
  console.log(`\nmodel ${j.model}, ${j.threads} threads, read bandwidth ${j.read_gbps.toFixed(1)} GB/s (same process)`);
  console.log("slots   tok/s   step ms   experts/step   MB/step   step / (bytes / bw)   goal <= 1.15");
  for (const r of j.batching)
    console.log(`${String(r.slots).padEnd(6)}${r.tok_s.toFixed(1).padStart(8)}${r.step_ms.toFixed(2).padStart(10)}` +
                `${(r.distinct_experts_per_layer_step ?? NaN).toFixed(1).padStart(15)}${((r.step_bytes ?? NaN) / 1e6).toFixed(0).padStart(10)}` +
                `${(r.step_over_bound ?? NaN).toFixed(2).padStart(22)}   ${r.step_over_bound <= 1.15 ? "met" : "not met"}`);
  if (j.prefix) console.log(`prefix reuse: turn 2 prefilled ${j.prefix.turn2_prefilled} of ${j.prefix.turn2_prompt_tokens} tokens, ` +
                            `time to first token ${(100 * j.prefix.ttft_ratio).toFixed(1)}% of turn 1 (goal <= 20%)`);
});' || note "node missing: the JSON line above has the numbers"
note "done"
