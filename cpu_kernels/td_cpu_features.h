/* td_cpu_features: what the CPU and the OS let tandem run, read once from cpuid and xgetbv.
 * A feature counts only when the OS saves its register state (XCR0), so a binary built with every ISA
 * file runs on an AVX2-only CPU and picks the AVX-512/AMX kernels only where they work. AMX tile data
 * also needs the kernel's per-process permission (arch_prctl ARCH_REQ_XCOMP_PERM), asked for here. */
#ifndef TD_CPU_FEATURES_H
#define TD_CPU_FEATURES_H

#include <stdbool.h>

typedef struct td_cpu_features {
    bool avx2, fma, f16c, bmi2;
    bool avx512f, avx512bw, avx512dq, avx512vl;
    bool avx512vnni, avx512bf16;
    bool amx_tile, amx_int8, amx_bf16; /* cpuid and XCR0 say the hardware has it */
    bool amx_permitted;                 /* the kernel granted this process the tile data state */
} td_cpu_features;

/* Read once (thread-safe), including the AMX permission request. */
const td_cpu_features *td_cpu_features_get(void);

/* The ISA levels the kernels are written for, each implying the ones before it. */
typedef enum td_isa {
    TD_ISA_SCALAR = 0,
    TD_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    TD_ISA_AVX512 = 2, /* F, BW, DQ, VL, VNNI (the kernels use no AVX512-BF16 instruction) */
    TD_ISA_AMX = 3,    /* AVX512 + AVX512-BF16 + AMX tile, int8, bf16, with the tile permission granted */
    TD_ISA_COUNT
} td_isa;

td_isa td_cpu_best_isa(void);
bool td_cpu_has_isa(td_isa isa);
const char *td_isa_name(td_isa isa);
/* "avx2 fma f16c avx512f ... amx-int8 (permitted)" into buf. */
const char *td_cpu_features_describe(char *buf, int cap);

#endif
