#!/usr/bin/env bash
# tandem bench membw and bench experts: tiny runs whose last line is JSON with the promised fields and
# sane values (speed is printed, never asserted), and bad command lines that exit 2 with a message.
set -u
fail=0
need() { # file-less check: the JSON line has every key with a positive number
  local line=$1; shift
  for k in "$@"; do
    v=$(printf '%s' "$line" | sed -n "s/.*\"$k\":\([0-9.eE+-]*\).*/\1/p")
    if [ -z "$v" ] || ! awk -v v="$v" 'BEGIN { exit !(v > 0) }'; then echo "FAIL: '$k' missing or not positive in: $line"; fail=1; fi
  done
}
out=$("$TANDEM" bench membw --threads 2 --size 64MiB --passes 3 2>&1); rc=$?
[ $rc -eq 0 ] || { echo "FAIL: bench membw rc=$rc: $out"; fail=1; }
need "$(printf '%s\n' "$out" | tail -n 1)" gbps gbps_best threads bytes passes seconds
# the default buffer within --time: sized by the cache, the memory and how fast this machine fills it
out=$("$TANDEM" bench membw --threads 2 --time 0.3 2>&1); rc=$?
[ $rc -eq 0 ] || { echo "FAIL: bench membw --time 0.3 rc=$rc: $out"; fail=1; }
need "$(printf '%s\n' "$out" | tail -n 1)" gbps bytes passes seconds
printf '%s' "$out" | grep -q "^buffer .* s in all" || { echo "FAIL: bench membw prints no buffer line: $out"; fail=1; }
for t in q4_k q8_0 bf16 q6_k; do
  out=$("$TANDEM" bench experts --type $t --tokens 3 --experts 8 --threads 2 --time 0.05 --iters 2 --membw-size 64MiB 2>&1); rc=$?
  [ $rc -eq 0 ] || { echo "FAIL: bench experts --type $t rc=$rc: $out"; fail=1; continue; }
  last=$(printf '%s\n' "$out" | tail -n 1)
  need "$last" gbps membw_gbps ratio tflops roofline_tflops
  printf '%s' "$out" | grep -q "membw" || { echo "FAIL: no membw line for $t"; fail=1; }
  echo "ok: $t: $last"
done
out=$("$TANDEM" bench experts --type q4_k --tokens 2 --experts 8 --threads 1 --kernels ref --time 0.01 --iters 1 --membw-size 16MiB 2>&1); rc=$?
[ $rc -eq 0 ] || { echo "FAIL: bench experts --kernels ref rc=$rc: $out"; fail=1; }
for args in "--type q9_9" "--type i32" "--tokens 0" "--experts 3" "--experts 300" "--threads -1" "--kernels fast" \
            "--time 0" "--membw-size 1" "--bogus"; do
  # shellcheck disable=SC2086
  out=$("$TANDEM" bench experts $args 2>&1); rc=$?
  if [ $rc -ne 2 ] || [ -z "$out" ]; then echo "FAIL: 'bench experts $args' gave rc=$rc: $out"; fail=1; fi
done
for args in "--size 10" "--passes 0" "--time 0" "--time x" "--bogus"; do
  # shellcheck disable=SC2086
  out=$("$TANDEM" bench membw $args 2>&1); rc=$?
  if [ $rc -ne 2 ] || [ -z "$out" ]; then echo "FAIL: 'bench membw $args' gave rc=$rc: $out"; fail=1; fi
done
"$TANDEM" bench --help | grep -q experts || { echo "FAIL: bench --help does not list experts"; fail=1; }
exit $fail
