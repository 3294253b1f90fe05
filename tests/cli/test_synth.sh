#!/usr/bin/env bash
# tandem synth end to end, on small configs of both architectures (the tiny DeepSeek-V3 fixture config with
# its MTP block, and DeepSeek-V2-Lite's structure at small widths): the same seed gives the same bytes for
# 1 and 2 threads and from a second run, another seed other bytes; the file loads, greedy-decodes, and
# passes `tandem eval` with the fast kernels against a reference it wrote with the exact ones; the routers
# touch at least 95% of the experts over 1,000 tokens; the hidden state stays finite through 61 layers;
# the benchmarks built on --synth end with their JSON fields; bad input is refused with a message.
set -euo pipefail
D=$TANDEM_SOURCE_DIR/tests/data
V3=$TANDEM_SHARED/fixtures/safetensors/tiny-dsv3-bf16/config.json
[ -f "$V3" ] || { echo "no fixtures at $TANDEM_SHARED"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
num() { grep -o '"'"$1"'":[^,}]*' <<<"$2" | head -n 1 | cut -d: -f2; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# DeepSeek-V2-Lite's structure (direct q, softmax greedy routing, 2 shared experts, 64 experts top-6, YaRN
# with mscale 0.707) at small widths, with the fixtures' 4096-token vocabulary
sed -e 's/"hidden_size": 2048/"hidden_size": 256/' -e 's/"intermediate_size": 10944/"intermediate_size": 512/' \
    -e 's/"moe_intermediate_size": 1408/"moe_intermediate_size": 128/' -e 's/"vocab_size": 102400/"vocab_size": 4096/' \
    -e 's/"num_attention_heads": 16/"num_attention_heads": 4/' -e 's/"kv_lora_rank": 512/"kv_lora_rank": 64/' \
    -e 's/"qk_nope_head_dim": 128/"qk_nope_head_dim": 32/' -e 's/"qk_rope_head_dim": 64/"qk_rope_head_dim": 16/' \
    -e 's/"v_head_dim": 128/"v_head_dim": 32/' -e 's/"bos_token_id": 100000/"bos_token_id": 0/' \
    -e 's/"eos_token_id": 100001/"eos_token_id": 1/' "$D/deepseek-v2-lite-config.json" >"$tmp/v2.json"

# the same bytes for any thread count and run; another seed, other bytes
"$TANDEM" synth --config "$V3" --to "$tmp/a.gguf" --keep-mtp --threads 1 --check-tokens 0 --quiet >/dev/null
"$TANDEM" synth --config "$V3" --to "$tmp/b.gguf" --keep-mtp --threads 2 --check-tokens 0 --quiet >/dev/null
cmp -s "$tmp/a.gguf" "$tmp/b.gguf" || fail "--threads 2 wrote other bytes than --threads 1"
"$TANDEM" synth --config "$V3" --to "$tmp/b.gguf" --keep-mtp --threads 2 --check-tokens 0 --quiet >/dev/null
cmp -s "$tmp/a.gguf" "$tmp/b.gguf" || fail "a second run wrote other bytes"
"$TANDEM" synth --config "$V3" --to "$tmp/c.gguf" --keep-mtp --seed 2 --check-tokens 0 --quiet >/dev/null
cmp -s "$tmp/a.gguf" "$tmp/c.gguf" && fail "--seed 2 wrote the same bytes as seed 1"
echo "same seed: same bytes for 1 and 2 threads and across runs; seed 2 differs"

j=$("$TANDEM" inspect --json "$tmp/a.gguf")
grep -q '"attention_layout":"mla"' <<<"$j" && grep -q '"mtp":true' <<<"$j" || fail "inspect: $j"

for cfg in v3 v2; do
  c=$V3; extra=(--keep-mtp --type q4_k_m)
  [ $cfg = v2 ] && c=$tmp/v2.json && extra=(--layers 2 --type q5_k --tokenizer "$TANDEM_SHARED/fixtures/tokenizer/tokenizer.json")
  out=$("$TANDEM" synth --config "$c" --to "$tmp/$cfg.gguf" "${extra[@]}" --json) || fail "$cfg synth: $out"
  [ "$(num finite "$out")" = true ] || fail "$cfg: hidden state not finite: $out"
  le 0.95 "$(num min_touched_fraction "$out")" || fail "$cfg: routing touched too few experts: $out"
  echo "$cfg: routers touched $(num min_touched_fraction "$out") of the experts at least"
  # loads and greedy-decodes
  g=$("$TANDEM" generate --model "$tmp/$cfg.gguf" --prompt "hello world" -n 8 --ignore-eos --json | tail -n 1)
  [ "$(num generated_tokens "$g")" = 8 ] || fail "$cfg generate: $g"
  # a reference with the exact kernels, then the fast kernels against it
  "$TANDEM" eval --model "$tmp/$cfg.gguf" --write-reference "$tmp/$cfg.ref.safetensors" --kernels ref --kv-type f32 \
      --json >/dev/null || fail "$cfg: --write-reference"
  out=$("$TANDEM" eval --model "$tmp/$cfg.gguf" --reference "$tmp/$cfg.ref.safetensors" --kernels ref --kv-type f32 --json) ||
      fail "$cfg: exact eval against its own reference: $out"
  [ "$(num logits_max_rel_err "$out")" = 0 ] || fail "$cfg: the same kernels are not bit-exact: $out"
  out=$("$TANDEM" eval --model "$tmp/$cfg.gguf" --reference "$tmp/$cfg.ref.safetensors" --json) ||
      fail "$cfg: fast kernels against the reference: $out"
  echo "$cfg: eval with the fast kernels: kld_mean $(num kld_mean "$out"), top-1 $(num top1_agree "$out")"
done
out=$("$TANDEM" eval --model "$tmp/v3.gguf" --reference "$tmp/v3.ref.safetensors" --json)
[ "$(num mtp_max_rel_err "$out")" != null ] || fail "the reference of a model with MTP has no MTP logits: $out"
# the given tokenizer is the one embedded
a=$(echo "hello there" | "$TANDEM" tokenize --tokenizer "$tmp/v2.gguf")
b=$(echo "hello there" | "$TANDEM" tokenize --tokenizer "$TANDEM_SHARED/fixtures/tokenizer/tokenizer.json")
[ "$a" = "$b" ] || fail "--tokenizer: the GGUF encodes '$a', the tokenizer.json '$b'"

# 61 layers (the tiny fixture's widths): the hidden state stays finite all the way
sed 's/"num_hidden_layers": 3/"num_hidden_layers": 61/' "$V3" >"$tmp/deep.json"
out=$("$TANDEM" synth --config "$tmp/deep.json" --to "$tmp/deep.gguf" --check-tokens 100 --json) || fail "61 layers: $out"
[ "$(num finite "$out")" = true ] || fail "61 layers: $out"
echo "61 layers: hidden rms $(grep -o '"hidden_rms":\[[^]]*' <<<"$out" | tr ',' '\n' | tail -n 1) after the last"

# the benchmarks on a model built in memory
out=$("$TANDEM" bench decode --synth "$V3" --layers 3 --tokens 4 --prompt 8 --ctx 64 --extrapolate-layers 61 \
      --moe-async on --membw-size 64MiB --json) || fail "bench decode: $out"
for f in tok_s tok_s_extrapolated bytes_per_token membw_gbps roofline_ratio moe_handoff_us; do
  v=$(num $f "$out"); [ -n "$v" ] && [ "$v" != null ] || fail "bench decode: no $f in $out"
done
grep -q '"memory_warm":{' <<<"$out" && grep -q '"layer_ms":{"dense"' <<<"$out" || fail "bench decode: $out"
out=$("$TANDEM" bench prefill --synth "$tmp/v2.json" --layers 2 --tokens 32 --ctx 64 --extrapolate-layers 27 --membw-size 64MiB --json) ||
    fail "bench prefill: $out"
[ -n "$(num tok_s_extrapolated "$out")" ] || fail "bench prefill: $out"
out=$("$TANDEM" bench mtp --synth "$V3" --simulate-acceptance 0.85 --tokens 16 --prompt 8 --ctx 64 --json) ||
    fail "bench mtp: $out"
[ "$(num identical "$out")" = true ] || fail "bench mtp: the forced drafts changed the greedy stream: $out"
for f in verify_ratio experts_verify speedup_implied speedup_projected; do
  [ -n "$(num $f "$out")" ] || fail "bench mtp: no $f in $out"
done
echo "bench decode, prefill and mtp --simulate-acceptance on --synth: JSON complete"

# refusals
expect() { # expect <exit code> <message part> <command...>
  local code=$1 msg=$2; shift 2
  set +e; err=$("$@" 2>&1); rc=$?; set -e
  [ $rc = "$code" ] || fail "exit $rc (expected $code): $* -> $err"
  grep -q -- "$msg" <<<"$err" || fail "no '$msg' in: $err"
}
expect 1 "no MTP block" "$TANDEM" synth --config "$tmp/v2.json" --to "$tmp/x.gguf" --keep-mtp
expect 1 "out of range" "$TANDEM" synth --config "$V3" --to "$tmp/x.gguf" --layers 4
expect 2 "not one of" "$TANDEM" synth --config "$V3" --to "$tmp/x.gguf" --type q3_k
expect 2 "required" "$TANDEM" synth --to "$tmp/x.gguf"
expect 1 "not a regular file" "$TANDEM" synth --config "$V3" --to "$tmp"
sed 's/"vocab_size": 512/"vocab_size": 200/' "$V3" >"$tmp/small.json"
expect 1 "too small for a byte-level BPE" "$TANDEM" synth --config "$tmp/small.json" --to "$tmp/x.gguf"
expect 2 "one model" "$TANDEM" bench decode --synth "$V3" --model "$tmp/a.gguf"
expect 2 "simulate-acceptance" "$TANDEM" bench mtp --synth "$V3"
[ ! -e "$tmp/x.gguf" ] || fail "a refused synth left a file"
echo PASS
