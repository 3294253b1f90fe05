#!/usr/bin/env bash
# What a new user hit with broken files, from the command line: damaged weights (a tensor of 0xff bytes)
# stop generate and eval with exit 1 and a "non-finite (NaN/Inf)" message naming the tensor or the module;
# a file that is no model (empty, a bad GGUF magic, JSON) is described by its content, not its name, by
# every command that opens models; and eval finds the bundled model's reference without --reference.
set -u
fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bad() { echo "FAIL: $*"; fail=1; }
fixture="$TANDEM_SHARED/fixtures/gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf"
bundled="$TANDEM_SOURCE_DIR/models/tandem-tiny-q8_0.gguf"

# damage SRC DST TENSOR: a copy of the GGUF with the tensor's data bytes set to 0xff
damage() {
  python3 - "$@" <<'EOF'
import struct, sys
src, dst, name = sys.argv[1:4]
b = bytearray(open(src, 'rb').read())
o = 8
n_tensors, n_kv = struct.unpack_from('<QQ', b, o); o += 16
def string(o):
    n, = struct.unpack_from('<Q', b, o); return b[o + 8:o + 8 + n].decode(), o + 8 + n
fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def skip(t, o):
    if t == 8: return string(o)[1]
    if t == 9:
        at, n = struct.unpack_from('<IQ', b, o); o += 12
        for _ in range(n): o = skip(at, o)
        return o
    return o + fixed[t]
align = 32
for _ in range(n_kv):
    k, o = string(o); t, = struct.unpack_from('<I', b, o); o += 4
    if k == 'general.alignment': align, = struct.unpack_from('<I', b, o)
    o = skip(t, o)
offsets = {}
for _ in range(n_tensors):
    n, o = string(o); nd, = struct.unpack_from('<I', b, o); o += 4 + 8 * nd
    offsets[n] = struct.unpack_from('<IQ', b, o)[1]; o += 12
data = (o + align - 1) // align * align
start = offsets[name]
end = min([x for x in offsets.values() if x > start] + [len(b) - data])
b[data + start:data + end] = b'\xff' * (end - start)
open(dst, 'wb').write(b)
EOF
}

# expect WANT_RC NEEDLE... -- CMD...: runs CMD, checks its exit code and that stderr holds every needle
expect() {
  local want=$1; shift
  local needles=()
  while [ "$1" != -- ]; do needles+=("$1"); shift; done; shift
  local out rc
  out=$("$@" 2>&1 >/dev/null); rc=$?
  [ $rc -eq "$want" ] || bad "$* exited $rc (want $want): $out"
  for n in "${needles[@]}"; do printf '%s' "$out" | grep -qF -- "$n" || bad "$*: no '$n' in: $out"; done
}

# the issue's case: output_norm.weight of 0xff bytes once printed "text":"" and exited 0
damage "$fixture" "$tmp/norm.gguf" output_norm.weight
expect 1 "non-finite (NaN/Inf)" output_norm.weight -- "$TANDEM" generate --model "$tmp/norm.gguf" --prompt hi -n 5 --json
damage "$fixture" "$tmp/experts.gguf" blk.2.ffn_down_exps.weight
expect 1 "non-finite (NaN/Inf)" "layer 2 mlp.experts" -- "$TANDEM" generate --model "$tmp/experts.gguf" --prompt hi -n 5
expect 1 "non-finite (NaN/Inf)" "layer 2 mlp.experts" -- "$TANDEM" eval --model "$tmp/experts.gguf" \
  --reference "${fixture%.gguf}.reference.safetensors"
damage "$fixture" "$tmp/head.gguf" output.weight
expect 1 "non-finite (NaN/Inf)" "output head" -- "$TANDEM" generate --model "$tmp/head.gguf" --prompt hi -n 5 --mtp on

# files that are no model: what they look like, for every command that opens one
: > "$tmp/empty.gguf"
{ printf 'GGUX'; tail -c +5 "$fixture"; } > "$tmp/magic.gguf"
printf '{"architectures": ["DeepseekV3ForCausalLM"]}\n' > "$tmp/model.safetensors"
for cmd in "generate --prompt hi --model" "inspect" "eval --model" "rules --rules cpu-only --model"; do
  # shellcheck disable=SC2086
  expect 1 "empty file" -- "$TANDEM" $cmd "$tmp/empty.gguf"
  # shellcheck disable=SC2086
  expect 1 "not a GGUF (it starts with 47 47 55 58" "not safetensors" -- "$TANDEM" $cmd "$tmp/magic.gguf"
  # shellcheck disable=SC2086
  expect 1 "a JSON file, not model weights" -- "$TANDEM" $cmd "$tmp/model.safetensors"
done

# eval finds the reference of the bundled model, named for the model rather than its quantization
out=$("$TANDEM" eval --model "$bundled" --kv-type f32 --max-kld 2e-3 2>&1); rc=$?
[ $rc -eq 0 ] || bad "eval of the bundled model without --reference exited $rc: $out"
printf '%s' "$out" | grep -q "^reference .*tandem-tiny.reference.safetensors" || bad "eval chose another reference: $out"
cp "$bundled" "$tmp/lonely-q8_0.gguf"
expect 1 "lonely-q8_0.reference.safetensors" "lonely.reference.safetensors" "--reference" -- \
  "$TANDEM" eval --model "$tmp/lonely-q8_0.gguf"

[ $fail -eq 0 ] && echo "ok: broken files"
exit $fail
