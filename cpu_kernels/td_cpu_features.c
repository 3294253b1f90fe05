#include "td_cpu_features.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define TD_X86 1
#endif

#define TD_ARCH_REQ_XCOMP_PERM 0x1023
#define TD_XFEATURE_XTILEDATA 18

static td_cpu_features td_features;
static pthread_once_t td_features_once = PTHREAD_ONCE_INIT;

#ifdef TD_X86
static unsigned long long td_xgetbv0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

/* Linux keeps AMX tile data off until a process asks; without it the first tile instruction faults. */
static bool td_amx_request_permission(void)
{
#ifdef SYS_arch_prctl
    return syscall(SYS_arch_prctl, TD_ARCH_REQ_XCOMP_PERM, TD_XFEATURE_XTILEDATA) == 0;
#else
    return false;
#endif
}

static void td_features_detect(void)
{
    td_cpu_features *f = &td_features;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool osxsave = c & (1u << 27);
    bool avx = c & (1u << 28);
    f->fma = c & (1u << 12);
    f->f16c = c & (1u << 29);
    unsigned long long xcr0 = osxsave ? td_xgetbv0() : 0;
    bool os_ymm = (xcr0 & 0x6) == 0x6;
    bool os_zmm = (xcr0 & 0xe6) == 0xe6;
    bool os_tile = (xcr0 & 0x60000) == 0x60000;
    if (__get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    f->avx2 = avx && os_ymm && (b & (1u << 5)) && f->fma && f->f16c;
    f->fma = f->fma && os_ymm;
    f->f16c = f->f16c && os_ymm;
    f->bmi2 = b & (1u << 8);
    f->avx512f = os_zmm && (b & (1u << 16));
    f->avx512dq = f->avx512f && (b & (1u << 17));
    f->avx512bw = f->avx512f && (b & (1u << 30));
    f->avx512vl = f->avx512f && (b & (1u << 31));
    f->avx512vnni = f->avx512f && (c & (1u << 11));
    f->amx_bf16 = os_tile && (d & (1u << 22));
    f->amx_tile = os_tile && (d & (1u << 24));
    f->amx_int8 = os_tile && (d & (1u << 25));
    unsigned a1, b1, c1, d1;
    __cpuid_count(7, 1, a1, b1, c1, d1);
    f->avx512bf16 = f->avx512f && (a1 & (1u << 5));
    if (f->amx_tile) f->amx_permitted = td_amx_request_permission();
}
#else
static void td_features_detect(void) {}
#endif

const td_cpu_features *td_cpu_features_get(void)
{
    pthread_once(&td_features_once, td_features_detect);
    return &td_features;
}

bool td_cpu_has_isa(td_isa isa)
{
    const td_cpu_features *f = td_cpu_features_get();
    bool avx2 = f->avx2 && f->fma && f->f16c;
    bool avx512 = avx2 && f->avx512f && f->avx512bw && f->avx512dq && f->avx512vl && f->avx512vnni;
    switch (isa) {
    case TD_ISA_SCALAR: return true;
    case TD_ISA_AVX2: return avx2;
    case TD_ISA_AVX512: return avx512;
    case TD_ISA_AMX: return avx512 && f->avx512bf16 && f->amx_tile && f->amx_int8 && f->amx_bf16 && f->amx_permitted;
    default: return false;
    }
}

td_isa td_cpu_best_isa(void)
{
    for (int i = TD_ISA_COUNT - 1; i > 0; i--)
        if (td_cpu_has_isa((td_isa)i)) return (td_isa)i;
    return TD_ISA_SCALAR;
}

const char *td_isa_name(td_isa isa)
{
    static const char *const names[TD_ISA_COUNT] = {"scalar", "avx2", "avx512", "amx"};
    return (isa >= 0 && isa < TD_ISA_COUNT) ? names[isa] : "?";
}

const char *td_cpu_features_describe(char *buf, int cap)
{
    const td_cpu_features *f = td_cpu_features_get();
    struct {
        bool on;
        const char *name;
    } list[] = {{f->avx2, "avx2"},         {f->fma, "fma"},           {f->f16c, "f16c"},
                {f->avx512f, "avx512f"},   {f->avx512bw, "avx512bw"}, {f->avx512vnni, "avx512vnni"},
                {f->avx512bf16, "avx512bf16"}, {f->amx_int8, "amx-int8"}, {f->amx_bf16, "amx-bf16"}};
    int len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
        if (!list[i].on || len >= cap) continue;
        len += snprintf(buf + len, (size_t)(cap - len), "%s%s", len ? " " : "", list[i].name);
    }
    if (f->amx_tile && len < cap)
        snprintf(buf + len, (size_t)(cap - len), " (amx tiles %s)", f->amx_permitted ? "permitted" : "refused by the kernel");
    if (!len && cap > 0) snprintf(buf, (size_t)cap, "none beyond scalar");
    return buf;
}
