/* td_kernels: which kernels compute, a backend-neutral choice. The CPU context honours it (td_cpu.h) and
 * placement rules name it per module (`kernel:`), so it lives below both. */
#ifndef TD_KERNELS_H
#define TD_KERNELS_H

#include <stdbool.h>

typedef enum td_kernels {
    TD_KERNELS_AUTO = 0,   /* the fastest kernels that hold eval's KL <= 1e-3, on all threads: AVX2 or
                            * AVX-512, not the AMX bf16 tiles (types without a SIMD kernel use the
                            * reference dequantizer row by row with a vector dot) */
    TD_KERNELS_REF = 1,    /* scalar reference: float32 accumulation, weights dequantized on the fly */
    TD_KERNELS_AVX2 = 2,
    TD_KERNELS_AVX512 = 3,
    TD_KERNELS_AMX = 4,    /* AVX-512 plus AMX bf16 tiles for batches: fast prefill, bf16 rounding */
    TD_KERNELS_COUNT
} td_kernels;

const char *td_kernels_name(td_kernels k);
bool td_kernels_from_name(const char *name, td_kernels *out);

#endif
