#!/usr/bin/env bash
# tandem rules and tandem eval --rules, end to end: presets, refusals with advice, errors with line:column,
# KTransformers files, --auto, --override, and the CPU engine running a plan.
set -u
T=${TANDEM:?} S=${TANDEM_SHARED:?}/fixtures
CFG=$S/real/deepseek-v3-config.json TINY=$S/safetensors/tiny-dsv3-bf16
[ -f "$CFG" ] && [ -d "$TINY" ] || { echo "no fixtures"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; echo "$out" | head -20; fail=1; fi; }
V3=(--config "$CFG" --assume-type q4_k --ctx 32768 --host 2x384GiB)

# the 1-GPU preset fits a 24 GiB card at 32K context
out=$("$T" rules --rules deepseek-v3-1gpu-24gb "${V3[@]}" --gpus 1x24GiB --json); rc=$?
check "preset fits (exit $rc)" '[ $rc -eq 0 ]'
check "json: fits" 'grep -q "\"fits\":true" <<<"$out"'
check "json: kv bytes" 'grep -q "\"kv_bytes_per_token\":70272" <<<"$out"'
check "json: speed" 'grep -Eq "\"decode_tok_s_estimate\":[0-9.]+" <<<"$out"'
check "json: cpu numa" 'grep -q "\"cpu\":{\"bytes\":[0-9]*,\"budget\":[0-9]*.*\"numa\":\[{\"node\":0,\"bytes\":" <<<"$out"'
check "json: modules" 'grep -q "\"modules\":\[{\"name\":\"model.embed_tokens\",.*\"device\":\"cpu\"" <<<"$out"'
preset_gpu=$(grep -o '"cuda:0":{"bytes":[0-9]*' <<<"$out")

# the readable table
out=$("$T" rules --rules deepseek-v3-1gpu-24gb "${V3[@]}" --gpus 1x24GiB); rc=$?
check "table" '[ $rc -eq 0 ] && grep -q "^model.layers.N.mlp.experts" <<<"$out" && grep -q "^verdict     fits" <<<"$out"'
check "table: numa nodes" 'grep -q "^  node 1" <<<"$out"'

# a KTransformers file for one GPU lands the same bytes on the GPU
kt=${TANDEM_SOURCE_DIR:?}/tests/data/rules/kt-deepseek-v3-1gpu.yaml
out=$("$T" rules --rules "$kt" "${V3[@]}" --gpus 1x24GiB --json); rc=$?
check "KTransformers file (exit $rc)" '[ $rc -eq 0 ] && [ "$(grep -o "\"cuda:0\":{\"bytes\":[0-9]*" <<<"$out")" = "$preset_gpu" ]'

# too small a card: exit 1, by how much, which rule
out=$("$T" rules --rules deepseek-v3-1gpu-24gb "${V3[@]}" --gpus 1x8GiB 2>&1); rc=$?
check "refused (exit $rc)" '[ $rc -eq 1 ] && grep -q "DOES NOT FIT" <<<"$out" && grep -q "over by" <<<"$out"'
check "names the rule" 'grep -q "deepseek-v3-1gpu-24gb.yaml:[0-9]*:[0-9]*" <<<"$out"'

# --auto fills the card and prints what it chose
out=$("$T" rules --rules deepseek-v3-1gpu-24gb "${V3[@]}" --gpus 1x24GiB --auto); rc=$?
check "--auto" '[ $rc -eq 0 ] && grep -q "^--auto chose these rules" <<<"$out" && grep -q "^- match: {name: .*layers: 3" <<<"$out"'

# --override, llama.cpp style, before the file
out=$("$T" rules --rules deepseek-v3-1gpu-24gb "${V3[@]}" --gpus 1x24GiB --override 'blk\.3\.ffn_.*_exps=CUDA0' --json); rc=$?
check "--override" '[ $rc -eq 0 ] && grep -q "\"name\":\"model.layers.3.mlp.experts\",[^}]*\"device\":\"cuda:0\"" <<<"$out"'

# a broken rules file: file:line:column and what was expected
printf -- '- match: {name: "experts$"}\n  place: {devcie: cpu}\n' >"$tmp/bad.yaml"
col=$(awk 'NR==2 {print index($0, "devcie")}' "$tmp/bad.yaml")
out=$("$T" rules --rules "$tmp/bad.yaml" "${V3[@]}" 2>&1); rc=$?
check "bad rules (exit $rc)" '[ $rc -eq 1 ] && grep -q "bad.yaml:2:$col: unknown key .devcie. in place (expected device" <<<"$out"'

# rules that do nothing are named on stderr: an empty file, a rule no module matches, a rule earlier ones
# shadow, an override that matches nothing; the presets draw no warning
: >"$tmp/empty.yaml"
out=$("$T" rules --rules "$tmp/empty.yaml" "${V3[@]}" --gpus 1x24GiB 2>&1 >/dev/null)
check "empty rules file warns" 'grep -q "warning: .*empty.yaml has no rules" <<<"$out"'
cat >"$tmp/idle.yaml" <<'YAML'
- match: {name: 'mlp\.expertz$'}
  place: {device: cpu}
- match: {name: '.'}
  place: {device: cpu}
- match: {name: 'experts'}
  place: {device: cpu}
YAML
out=$("$T" rules --rules "$tmp/idle.yaml" "${V3[@]}" --override 'nothing_here=cpu' --json 2>&1 >/dev/null)
check "a rule that matches nothing is named" 'grep -q "warning: .*idle.yaml:1:3: the rule .mlp.*expertz.*. matches no module" <<<"$out"'
check "a shadowed rule is named" 'grep -q "warning: .*idle.yaml:5:3: the rule .experts. places no module: rules before it" <<<"$out"'
check "an idle override is named" 'grep -q "warning: --override #1, column 1: the rule .nothing_here. matches no module" <<<"$out"'
check "a rule that places modules is not named" '! grep -q "idle.yaml:3:3" <<<"$out"'
for p in deepseek-v3-1gpu-24gb deepseek-v3-2gpu cpu-only; do
  out=$("$T" rules --rules $p "${V3[@]}" --gpus 2x24GiB 2>&1 >/dev/null)
  check "preset $p draws no warning" '! grep -q "warning" <<<"$out"'
done
# a bad --override is bad usage: exit 2, with the column
out=$("$T" rules "${V3[@]}" --override 'blk\.(3=CUDA0' 2>&1); rc=$?
check "bad --override regex (exit $rc)" '[ $rc -eq 2 ] && grep -q -- "--override #1, column [0-9]*: bad regex" <<<"$out"'
out=$("$T" rules "${V3[@]}" --override 'exps' 2>&1); rc=$?
check "--override without a device (exit $rc)" '[ $rc -eq 2 ] && grep -q "has no .=." <<<"$out"'
# a model path that does not exist is named as given
out=$("$T" rules --model "$tmp/missing.gguf" 2>&1); rc=$?
check "missing --model (exit $rc)" '[ $rc -eq 1 ] && grep -qi "missing.gguf: no such file" <<<"$out"'

# a GPU this machine doesn't have: say how to describe one
out=$("$T" rules --rules deepseek-v3-1gpu-24gb "${V3[@]}" --gpu-mem 24GiB 2>&1); rc=$?
if ! grep -q "cuda:0" <<<"$("$T" rules --config "$CFG" --assume-type q4_k --json 2>/dev/null)"; then
    check "--gpu-mem without a GPU (exit $rc)" '[ $rc -eq 1 ] && grep -q -- "--gpus 1x24GiB" <<<"$out"'
fi

# sizes from a model's headers
out=$("$T" rules --rules cpu-only --model "$TINY" --json); rc=$?
check "--model (exit $rc)" '[ $rc -eq 0 ] && grep -q "\"types_from\":\"the model.s headers\"" <<<"$out"'
out=$("$T" rules --config "$CFG" 2>&1); rc=$?
check "--config needs --assume-type" '[ $rc -eq 2 ] && grep -q -- "--assume-type" <<<"$out"'
"$T" rules --help >/dev/null || { echo "FAIL: --help"; fail=1; }

# the roofline from this machine's measured bandwidth, and what cannot go with it
out=$("$T" rules --rules cpu-only --config "$CFG" --assume-type q4_k --measure-bw 2>&1); rc=$?
check "--measure-bw (exit $rc)" '[ $rc -le 1 ] && grep -q "GB/s (measured)" <<<"$out"'
out=$("$T" rules --rules cpu-only --config "$CFG" --assume-type q4_k --measure-bw --host 2x384GiB 2>&1); rc=$?
check "--measure-bw with --host (exit $rc)" '[ $rc -eq 1 ] && grep -q "cannot go with --host" <<<"$out"'
out=$("$T" rules --rules cpu-only --config "$CFG" --assume-type q4_k --measure-bw --cpu-bw 50 2>&1); rc=$?
check "--measure-bw with --cpu-bw (exit $rc)" '[ $rc -eq 1 ] && grep -q "give one" <<<"$out"'

# the engine runs CPU plans; a plan for GPUs this machine lacks is refused before any weight is read,
# pointing to the CPU (on a machine with a GPU, tests/cli/test_gpu_eval.sh runs the GPU plans)
out=$("$T" eval --model "$TINY" --rules cpu-only --kernels ref 2>&1); rc=$?
check "eval with a CPU plan (exit $rc)" '[ $rc -eq 0 ] && grep -q "\"pass\":true" <<<"$out"'
out=$("$T" eval --model "$TINY" --override 'mlp\.gate$=cpu' --rules "$TANDEM_SOURCE_DIR/placement_rules/cpu-only.yaml" --json 2>&1); rc=$?
check "eval with overrides (exit $rc)" '[ $rc -eq 0 ]'
out=$("$T" eval --model "$TINY" --rules deepseek-v3-2gpu 2>&1); rc=$?
check "eval refuses a plan for two GPUs (exit $rc)" '[ $rc -eq 1 ] && grep -q "on cuda:[01] (by deepseek-v3-2gpu.yaml:[0-9]*" <<<"$out" && grep -q -- "--rules cpu-only" <<<"$out"'
if ! grep -q "cuda:0" <<<"$("$T" rules --config "$CFG" --assume-type q4_k --json 2>/dev/null)"; then
    out=$("$T" eval --model "$TINY" --rules deepseek-v3-1gpu-24gb 2>&1); rc=$?
    check "eval without a GPU refuses the 1-GPU preset (exit $rc)" '[ $rc -eq 1 ] && grep -q "has no GPU" <<<"$out" && grep -q -- "--rules cpu-only" <<<"$out"'
    out=$("$T" eval --model "$TINY" --override 'exps=CUDA0' 2>&1); rc=$?
    check "eval without a GPU refuses GPU overrides (exit $rc)" '[ $rc -eq 1 ] && grep -q "by --override #1" <<<"$out"'
    out=$("$T" generate --prompt hi -n 2 --rules deepseek-v3-1gpu-24gb 2>&1); rc=$?
    check "generate without a GPU refuses the 1-GPU preset (exit $rc)" '[ $rc -eq 1 ] && grep -q -- "--rules cpu-only" <<<"$out"'
fi
out=$("$T" eval --model "$TINY" --override 'exps(=cpu' 2>&1); rc=$?
check "eval: a bad --override regex is bad usage (exit $rc)" '[ $rc -eq 2 ] && grep -q "bad regex" <<<"$out"'
exit $fail
