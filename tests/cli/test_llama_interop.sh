#!/usr/bin/env bash
# The GGUFs tandem writes, read by llama.cpp: the prebuilt libllama that the npm package node-llama-cpp
# 3.21.1 ships (tools/setup-llama.sh puts it in .deps/; tools/compare/td_llama_run runs it beside tandem).
# For each file `tandem convert` writes here (q8_0, q4_k_m, bf16, --keep-mtp, --split) and the bundled model:
#  - llama.cpp loads it and runs a token (llama.cpp loads the MTP block of --keep-mtp files too);
#  - its tokenizer gives the ids tandem's does on every text of the fixtures' tokenizer vectors;
#  - both engines decode 8 prompts greedily in step, 32 tokens each, and agree on every token where
#    llama.cpp's top-2 logit gap is at least 1.0. Why 1.0: on these files the engines' logits differ by
#    llama.cpp's own rounding (it quantizes activations to 8 bits; on the fixtures' GGUFs, which tandem did
#    not write, it sits at KL 1e-3 to 7e-3 from the float64 references where tandem sits at 1e-8), and by
#    MoE routing flips that rounding causes; where they parted, the gap was at most 0.34 when measured.
#    A smaller gap is a near-tie: either token is right, and the comparison of that prompt ends there;
#  - where the file is BF16, llama.cpp's logits on a reference prompt equal tandem's (KL <= 1e-4;
#    measured 2-3e-5), and on a Q8_0 file converted from the legacy fixture llama.cpp is as close to the
#    float64 reference as on the fixture itself (within 25%): it reads tandem's file as it reads ggml's;
#  - the chat templates tandem writes (v3, r1, v3.1) render a multi-turn conversation with system prompts
#    in llama.cpp's Jinja engine exactly as tandem's own template does.
# Files written with --no-tokenizer are exempt: llama.cpp refuses a GGUF without a tokenizer.
set -euo pipefail
RUN=$TANDEM_BUILD_DIR/bin/td_llama_run
if [ ! -x "$RUN" ]; then
    why="no $RUN: run tools/setup-llama.sh (npm), then cmake again; make test does both"
    if [ "${CI:-}" = true ]; then echo "FAIL: $why (CI must run this check)"; exit 1; fi
    echo "SKIP: $why"; exit 77
fi
S=$TANDEM_SHARED/fixtures
M=$TANDEM_SOURCE_DIR/models/tandem-tiny-q8_0.gguf
[ -d "$S/gguf" ] || { echo "SKIP: no fixtures in $S"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
num() { grep -o '"'"$1"'":[^,}]*' <<<"$2" | head -n 1 | cut -d: -f2; }
obj() { grep -o '"'"$1"'":{[^}]*}' <<<"$2"; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# llama.cpp's allocations are its own business; LeakSanitizer checks tandem's elsewhere
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
run() { "$RUN" "$@" 2>"$tmp/err" || { cat "$tmp/err"; return 1; }; }
conv() { "$TANDEM" convert --quiet "$@"; }

cat >"$tmp/prompts" <<'EOF'
What does "harbor" mean?
<｜User｜>What does "harbor" mean?<｜Assistant｜>
The quick brown fox
<｜User｜>Define "ocean".<｜Assistant｜>
<｜User｜>What does "lantern" mean?<｜Assistant｜>
A computer is a machine that
<｜User｜>What is a "compiler"?<｜Assistant｜>
Once upon a time
EOF

# the files: the bundled model and what convert writes from it and from the GGUF fixtures
conv --from "$M" --to "$tmp/tiny-q8_0.gguf" --type q8_0 --keep-mtp
conv --from "$M" --to "$tmp/tiny-q4_k_m.gguf" --type q4_k_m --keep-mtp
conv --from "$M" --to "$tmp/tiny-bf16.gguf" --type bf16 --keep-mtp
conv --from "$M" --to "$tmp/tiny-split.gguf" --type q4_k_m --split 3
conv --from "$S/gguf/tiny-dsv3-q8_0-legacy.gguf" --to "$tmp/legacy-q8_0.gguf" --type q8_0
conv --from "$S/gguf/tiny-dsv3-q8_0-legacy.gguf" --to "$tmp/legacy-bf16.gguf" --type bf16
conv --from "$S/gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf" --to "$tmp/mla-q4_k_m.gguf" --type q4_k_m --keep-mtp
files=("$M" "$tmp"/tiny-q8_0.gguf "$tmp"/tiny-q4_k_m.gguf "$tmp"/tiny-bf16.gguf "$tmp"/tiny-split-00001-of-00003.gguf
       "$tmp"/legacy-q8_0.gguf "$tmp"/legacy-bf16.gguf "$tmp"/mla-q4_k_m.gguf)

for f in "${files[@]}"; do
    name=$(basename "$f")
    out=$(run load --model "$f") || fail "$name: llama.cpp does not load it"
    grep -q '"ran":true' <<<"$out" || fail "$name: $out"
    case $name in tiny-q*|tiny-bf16*|mla-*|tandem-tiny*) [ "$(num n_layer_nextn "$out")" = 1 ] ||
        fail "$name: llama.cpp saw no MTP block: $out";; esac
    out=$(run tokenize --model "$f" --texts "$S/tokenizer/tokenizer_vectors.json") || fail "$name: tokenization: $out"
    texts=$(num texts "$out")
    out=$(run greedy --model "$f" --prompts "$tmp/prompts" -n 32 --margin 1.0) || fail "$name: greedy: $out"
    agreed=$(num agreed "$out")
    [ "$agreed" -ge 64 ] || fail "$name: only $agreed tokens compared: $out"
    echo "$name: loads; $texts of $texts texts tokenize alike; $agreed of $(num steps "$out") greedy steps agree" \
         "(near-tie stops $(num near_tie_stops "$out"), max |logit diff| $(num max_logit_diff "$out"), KL $(num kl_mean "$out"))"
done

# logits on reference prompts: BF16 files give both engines the same weights
ref_tiny=$TANDEM_SOURCE_DIR/models/tandem-tiny.reference.safetensors
ref_legacy=$S/gguf/tiny-dsv3-q8_0-legacy.reference.safetensors
for pair in "$tmp/tiny-bf16.gguf:$ref_tiny" "$tmp/legacy-bf16.gguf:$ref_legacy"; do
    out=$(run reference --model "${pair%%:*}" --reference "${pair#*:}") || fail "reference: $out"
    kl=$(num kl_mean "$(obj tandem_vs_llama "$out")")
    le "$kl" 1e-4 || fail "$(basename "${pair%%:*}"): llama.cpp's logits are KL $kl from tandem's: $out"
    echo "$(basename "${pair%%:*}"): logits of llama.cpp and tandem within KL $kl on the reference prompt"
done
ours=$(run reference --model "$tmp/legacy-q8_0.gguf" --reference "$ref_legacy") || fail "reference: $ours"
theirs=$(run reference --model "$S/gguf/tiny-dsv3-q8_0-legacy.gguf" --reference "$ref_legacy") || fail "reference: $theirs"
kl_ours=$(num kl_mean "$(obj llama "$ours")"); kl_theirs=$(num kl_mean "$(obj llama "$theirs")")
le "$kl_ours" "$(awk -v k="$kl_theirs" 'BEGIN { print 1.25 * k + 1e-6 }')" ||
    fail "llama.cpp on tandem's Q8_0 file: KL $kl_ours from the reference; on the fixture: $kl_theirs"
echo "legacy fixture in Q8_0: llama.cpp at KL $kl_ours from the float64 reference on tandem's file, $kl_theirs on ggml's"

# tandem synth's files (issue 14): DeepSeek-V3's structure at the tiny fixture's widths, Q4_K_M; llama.cpp
# loads them and both engines decode greedily alike (the same margin as above)
"$TANDEM" synth --config "$S/safetensors/tiny-dsv3-bf16/config.json" --to "$tmp/synth-v3.gguf" --type q4_k_m \
    --keep-mtp --check-tokens 0 --quiet >/dev/null
out=$(run load --model "$tmp/synth-v3.gguf") || fail "synth: llama.cpp does not load it"
grep -q '"ran":true' <<<"$out" || fail "synth: $out"
out=$(run greedy --model "$tmp/synth-v3.gguf" --prompts "$tmp/prompts" -n 16 --margin 1.0) || fail "synth: greedy: $out"
[ "$(num agreed "$out")" -ge 32 ] || fail "synth: only $(num agreed "$out") tokens compared: $out"
echo "synth V3 (tiny widths) q4_k_m: llama.cpp loads it; $(num agreed "$out") of $(num steps "$out") greedy steps agree"
# the side-by-side table on it: one round, one thread, both engines, the same first token
out=$("$TANDEM_SOURCE_DIR/tools/compare/side-by-side.sh" --model "$tmp/synth-v3.gguf" --bin "$TANDEM_BUILD_DIR/bin" \
      --rounds 1 --threads 1 --prompt-tokens 16 -n 4 2>"$tmp/err") || { cat "$tmp/err"; fail "side-by-side: $out"; }
j=$(tail -n 1 <<<"$out")
for f in tandem_prompt_tok_s llama_prompt_tok_s tandem_decode_tok_s llama_decode_tok_s; do
    le 0.000001 "$(num $f "$j")" || fail "side-by-side: no $f in $j"
done
[ "$(num first_token_tandem "$j")" = "$(num first_token_llama "$j")" ] || fail "side-by-side: first tokens differ: $j"
echo "side-by-side: one table, both engines timed on the same prompt"

# the chat templates tandem writes, rendered by llama.cpp's Jinja engine
cat >"$tmp/conv.json" <<'EOF'
[{"role": "system", "content": "You answer in one line."},
 {"role": "user", "content": "What does \"harbor\" mean?"},
 {"role": "assistant", "content": "<think>\nA place for ships.\n</think>\n\nA sheltered port where ships stay."},
 {"role": "system", "content": "Be brief."},
 {"role": "user", "content": "And \"anchor\"?\nTwo lines."},
 {"role": "assistant", "content": "A weight that holds a ship in place."},
 {"role": "user", "content": "Thanks."}]
EOF
for t in v3 r1 v3.1; do
    conv --from "$M" --to "$tmp/t-$t.gguf" --type q8_0 --template "$t"
    variants=("" "--no-generation-prompt")
    [ "$t" = v3.1 ] && variants+=("--thinking 1" "--thinking 0")
    for extra in "${variants[@]}"; do
        # shellcheck disable=SC2086
        out=$(run template --model "$tmp/t-$t.gguf" --conv "$tmp/conv.json" $extra) ||
            fail "template $t $extra: llama.cpp renders it otherwise: $(cat "$tmp/err")"
        grep -q '"same":true' <<<"$out" || fail "template $t: $out"
    done
    echo "template $t: llama.cpp's Jinja engine renders the conversation as tandem does"
done
echo PASS
