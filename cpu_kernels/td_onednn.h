/* td_onednn: oneDNN matmul on an expert's shape, for the benchmark's side-by-side comparison with the
 * tandem kernels (the library anchor). y[M][N] = x[M][K] . W[N][K]^T with W stored as tandem stores it
 * (rows of K), bf16 x bf16 -> f32 or u8 x s8 -> s32, cycling over enough distinct weight matrices that
 * they come from memory. oneDNN runs its own threads. */
#ifndef TD_ONEDNN_H
#define TD_ONEDNN_H

#include "td_status.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct td_onednn_result {
    double tflops;       /* TFLOP/s (bf16) or TOP/s (int8) */
    double ms_per_call;
    int weights;         /* distinct weight matrices cycled */
    char impl[64];       /* oneDNN's implementation name ("brg:avx512_core_amx", ...) */
    char version[32];
} td_onednn_result;

td_status td_onednn_matmul_bench(int64_t M, int64_t K, int64_t N, bool int8, uint64_t weight_bytes, double seconds,
                                 td_onednn_result *out);

#endif
