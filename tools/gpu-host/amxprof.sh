#!/usr/bin/env bash
# Where the AMX prefill kernel's time goes, on the GPU host: builds copies of cpu_kernels/td_kern_amx.c with
# one piece removed at a time (sed edits of a temporary copy; results are wrong on purpose, only the time
# counts) and times each on DeepSeek-V3 shapes with 1 and 16 threads, in one command so the figures compare.
#   tools/gpu-host/amxprof.sh BUILD_DIR [VARIANT...]     (BUILD_DIR: a Release build, its libtandem_*.a)
# Variants (combine with +): base, nodeq (no dequantization), nodp (no tile products), nospill (C tiles not
# parked between chunks), noA / noB (no A / B tile loads), c256 (256-column chunks), nta (weights prefetched
# non-temporal), t1 (weights prefetched to L2 only). Default: base nodeq nodp nospill noA noB.
set -eu
B=$1; shift
D=$(cd "$(dirname "$0")" && pwd); S=$(cd "$D/../.." && pwd)
P="$(pkg-config --libs libcjson yaml-0.1 libpcre2-8 hwloc libedit) -lnuma -ldnnl -lpthread -lm"
I="-I$S/cpu_kernels -I$S/base"
F="-mamx-tile -mamx-int8 -mamx-bf16 -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vnni -mavx512bf16 -mfma -mf16c -mbmi2"
R="-Dtd_kernels_amx=td_kernels_amx_v -Dtd_amx_bf16_loop=td_amx_bf16_loop_v -Dtd_amx_pack_btiles=td_amx_pack_btiles_v"
T=$(mktemp -d)
for v in "${@:-base nodeq nodp nospill noA noB}"; do
  for one in $v; do
    cp "$S/cpu_kernels/td_kern_amx.c" "$T/k.c"
    case $one in *nodeq*) sed -i 's/if (i < nr) deq(/if (0) deq(/' "$T/k.c";; esac
    case $one in *nodp*) sed -i 's/_tile_dpbf16ps(\([0-9]\), \([0-9]\), \([0-9]\));/(void)0;/' "$T/k.c";; esac
    case $one in *nospill*) sed -i 's/td_amx_c_load(cslots + 4096 \* p);/(void)0;/; s/if (npair > 1) td_amx_c_save(cslots + 4096 \* p);/(void)0;/' "$T/k.c";; esac
    case $one in *noB*) sed -i '/_tile_loadd([67], b[01] + (size_t)kt \* 1024, 64);/d' "$T/k.c";; esac
    case $one in *noA*) sed -i '/_tile_loadd([45], a[01] + (size_t)kt \* 1024, 64);/d' "$T/k.c";; esac
    case $one in *c256*) sed -i 's/^#define TD_AMX_CHUNK 512$/#define TD_AMX_CHUNK 256/' "$T/k.c";; esac
    case $one in *nta*) sed -i 's/o, _MM_HINT_T0);/o, _MM_HINT_NTA);/' "$T/k.c";; esac
    case $one in *t1*) sed -i 's/o, _MM_HINT_T0);/o, _MM_HINT_T1);/' "$T/k.c";; esac
    echo "#include \"$T/k.c\"" >"$T/kv.c"
    gcc -O2 -w $F $R $I -c "$T/kv.c" -o "$T/kv.o"
    gcc -O2 -DVARIANT $I "$D/amxprof.c" "$T/kv.o" "$B/libtandem_cpu.a" "$B/libtandem_base.a" $P -o "$T/amxv"
    echo "== $one ($(diff "$S/cpu_kernels/td_kern_amx.c" "$T/k.c" | grep -c '^>') lines changed)"
    "$T/amxv" 1 1
    "$T/amxv" 16 1
  done
done
rm -rf "$T"
