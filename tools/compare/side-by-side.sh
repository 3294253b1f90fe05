#!/usr/bin/env bash
# tandem and llama.cpp on the same GGUF, in turn, and one table: prompt tok/s and decode tok/s at each
# thread count, the same prompt and token count for both (td_llama_run speed: random ids from a fixed
# seed, processed in one call, then greedy decoding one token at a time). Each run is its own process;
# the engines alternate (tandem first on odd rounds, llama.cpp first on even ones) so that a noisy machine
# spreads its noise over both, and the table holds the medians over the rounds.
#
#   tools/compare/side-by-side.sh --model M [--prompt-tokens P] [-n N] [--rounds R] [--threads "1 16"]
#                                 [--bin DIR] [--log FILE]
#
# Needs td_llama_run (tools/setup-llama.sh, then cmake). Fetches nothing. The last line is JSON.
set -euo pipefail
MODEL= P=64 N=32 ROUNDS=3 THREADS="1 $(nproc)" LOG=
BIN=$(cd "$(dirname "$0")/../.." && pwd)/build/bin
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --model) MODEL=$2; shift 2;;
        --prompt-tokens) P=$2; shift 2;;
        -n) N=$2; shift 2;;
        --rounds) ROUNDS=$2; shift 2;;
        --threads) THREADS=$2; shift 2;;
        --bin) BIN=$2; shift 2;;
        --log) LOG=$2; shift 2;;
        -h|--help) usage;;
        *) echo "side-by-side: unknown option '$1'" >&2; usage;;
    esac
done
[ -n "$MODEL" ] || { echo "side-by-side: --model is required" >&2; exit 2; }
[ -f "$MODEL" ] || { echo "side-by-side: $MODEL: no such file" >&2; exit 1; }
RUN=$BIN/td_llama_run
[ -x "$RUN" ] || { echo "side-by-side: no $RUN: run tools/setup-llama.sh, then cmake and build td_llama_run" >&2; exit 1; }
for v in "$P" "$N" "$ROUNDS"; do [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "side-by-side: '$v' is not a count" >&2; exit 2; }; done
[ "$N" -ge 2 ] || { echo "side-by-side: -n must be at least 2 (the first token comes from the prompt)" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
LOG=${LOG:-$tmp/log}
: >"$LOG"

num() { grep -o '"'"$1"'":[^,}]*' <<<"$2" | head -n 1 | cut -d: -f2; }
for r in $(seq 1 "$ROUNDS"); do
    order="tandem llama"; [ $((r % 2)) = 0 ] && order="llama tandem"
    for t in $THREADS; do
        for e in $order; do
            out=$("$RUN" speed --engine "$e" --model "$MODEL" --threads "$t" --prompt-tokens "$P" -n "$N" 2>>"$LOG") ||
                { echo "side-by-side: $e at $t threads failed (log: $LOG)" >&2; tail -n 5 "$LOG" >&2; exit 1; }
            line=$(tail -n 1 <<<"$out")
            echo "$line" >>"$LOG"
            echo "$e $t $(num prompt_tok_s "$line") $(num decode_tok_s "$line") $(num first_token "$line")" >>"$tmp/runs"
            echo "round $r: $e, $t threads: prompt $(num prompt_tok_s "$line") tok/s, decode $(num decode_tok_s "$line") tok/s" >&2
        done
    done
done

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
med() { awk -v e="$1" -v t="$2" -v c="$3" '$1 == e && $2 == t { print $c }' "$tmp/runs" | median; }
printf '%s\n' "model $MODEL: prompt $P tokens, then $N decoded; median of $ROUNDS alternating rounds"
printf '%-8s %14s %14s %14s %14s   (tok/s)\n' threads "prompt tandem" "prompt llama" "decode tandem" "decode llama"
json="{\"model\":\"$MODEL\",\"prompt_tokens\":$P,\"decode_tokens\":$N,\"rounds\":$ROUNDS,\"rows\":["
sep=
for t in $THREADS; do
    tp=$(med tandem "$t" 3) lp=$(med llama "$t" 3) td=$(med tandem "$t" 4) ld=$(med llama "$t" 4)
    printf '%-8s %14.2f %14.2f %14.2f %14.2f\n' "$t" "$tp" "$lp" "$td" "$ld"
    echo "         tandem/llama.cpp: prompt $(awk -v a="$tp" -v b="$lp" 'BEGIN { printf "%.2f", a / b }')x," \
         "decode $(awk -v a="$td" -v b="$ld" 'BEGIN { printf "%.2f", a / b }')x"
    json+="$sep{\"threads\":$t,\"tandem_prompt_tok_s\":$tp,\"llama_prompt_tok_s\":$lp,\"tandem_decode_tok_s\":$td,\"llama_decode_tok_s\":$ld}"
    sep=,
done
first_t=$(awk '$1 == "tandem" { print $5; exit }' "$tmp/runs") first_l=$(awk '$1 == "llama" { print $5; exit }' "$tmp/runs")
echo "first decoded token: tandem $first_t, llama.cpp $first_l (the same prompt's argmax)"
echo "$json],\"first_token_tandem\":$first_t,\"first_token_llama\":$first_l}"
