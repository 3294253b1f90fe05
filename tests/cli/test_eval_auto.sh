#!/usr/bin/env bash
# tandem eval --kernels auto (the fast kernels on all threads) passes on every fixture: mean KL divergence
# <= 1e-3 and top-1 agreement >= 0.98 against the outside references (--kernels amx: 1e-2 and 0.95). Also with each forced ISA this CPU
# has, with 1 and 3 threads, and on a GGUF file once the GGUF reader can open it. The KV cache is f32 here: these
# checks hold the kernels to the exact tier. The bf16 cache (the default) is held to the bf16 tier here with
# each forced ISA; which tier applies to which fixture is tests/cli/test_eval_tier.sh.
set -u
fail=0
fx="$TANDEM_SHARED/fixtures"
models=("$fx"/safetensors/*/)
for g in "$fx"/gguf/*.gguf; do
  if "$TANDEM" inspect "$g" >/dev/null 2>&1; then models+=("$g"); else echo "skip: $(basename "$g") (this build cannot open GGUF yet)"; fi
done
check() { # model, extra args...
  local m=$1; shift
  local out rc last kld top maxkld=1e-3 mintop=0.98
  # --kernels amx rounds weights and activations to bf16 in its tiles (an opt-in for faster prefill; auto
  # does not use it): measured on the AMX host, KL 4.0e-3 and 4.8e-3 on two fixtures, 5e-5 on the others
  case " $* " in *" amx "*) maxkld=1e-2 mintop=0.95 ;; esac
  out=$("$TANDEM" eval --model "$m" --json --kv-type f32 --max-kld "$maxkld" "$@" 2>&1); rc=$?
  last=$(printf '%s\n' "$out" | tail -n 1)
  if printf '%s' "$out" | grep -q "does not offer"; then echo "skip: $* on this CPU"; return; fi
  kld=$(printf '%s' "$last" | sed -n 's/.*"kld_mean":\([^,}]*\).*/\1/p')
  top=$(printf '%s' "$last" | sed -n 's/.*"top1_agree":\([^,}]*\).*/\1/p')
  local passed=1 # eval's own verdict (its top-1 rule is 0.98); for amx this script's limits decide
  [ $rc -eq 0 ] && printf '%s' "$last" | grep -q '"pass":true' || passed=0
  [ "$maxkld" != 1e-3 ] && passed=1
  if [ $passed -ne 1 ] || [ -z "$kld" ] || [ -z "$top" ] ||
     ! awk -v k="$kld" -v t="$top" -v mk="$maxkld" -v mt="$mintop" 'BEGIN { exit !(k <= mk && t >= mt) }'; then
    echo "FAIL: eval $(basename "$m") $* (rc=$rc)"; printf '%s\n' "$out" | tail -n 5; fail=1
  else
    echo "ok: $(basename "$m") $*: kld_mean $kld, top1 $top"
  fi
}
check_bf16_tier() { # model, extra args...: the bf16 cache through the bf16 tier
  local m=$1; shift
  local out rc
  out=$("$TANDEM" eval --model "$m" --json --tier bf16 "$@" 2>&1); rc=$?
  if printf '%s' "$out" | grep -q "does not offer"; then echo "skip: $* on this CPU"; return; fi
  if [ $rc -ne 0 ]; then echo "FAIL: eval --tier bf16 $(basename "$m") $* (rc=$rc)"; printf '%s\n' "$out" | tail -n 3; fail=1; fi
}
for m in "${models[@]}"; do
  m=${m%/}
  check_bf16_tier "$m" --kernels avx2 --threads 2
  check_bf16_tier "$m" --kernels avx512 --threads 1
  check "$m" --kernels auto
  check "$m" --kernels auto --threads 1
  check "$m" --kernels auto --threads 3
  check "$m" --kernels avx2 --threads 2
  check "$m" --kernels avx512 --threads 2
  check "$m" --kernels amx --threads 2
done
# a forced ISA the CPU lacks is a clear error, not a crash
for k in avx2 avx512 amx; do
  out=$("$TANDEM" eval --model "$fx/safetensors/tiny-dsv3-bf16" --kernels $k --max-kld 1 2>&1); rc=$?
  if [ $rc -ne 0 ] && ! printf '%s' "$out" | grep -q "does not offer"; then
    echo "FAIL: --kernels $k failed without saying why (rc=$rc)"; printf '%s\n' "$out" | tail -n 3; fail=1
  fi
done
exit $fail
