/* td_cuda: the CUDA side, callable from C. Builds without nvcc link td_cuda_stub.c, whose functions
 * report that the GPU path is not compiled in. */
#ifndef TD_CUDA_H
#define TD_CUDA_H

#include "td_status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct td_cuda_device_info {
    int index;
    char name[256];
    int sm_major, sm_minor;
    uint64_t total_bytes, free_bytes;
    double mem_bandwidth_gbps; /* from the memory clock and bus width, 0 if unknown */
} td_cuda_device_info;

/* True when this build has CUDA kernels (it says nothing about whether a GPU is present). */
bool td_cuda_compiled(void);
/* Number of usable GPUs (0 when none, or when built without CUDA). */
int td_cuda_device_count(void);
td_status td_cuda_device_query(int index, td_cuda_device_info *out);

/* Dequantizes `n_rows` rows of `cols` elements of a weight type on the GPU and returns them as float32
 * in host memory; a round trip used to test the device kernels against the CPU reference. */
td_status td_cuda_dequant_rows(int type, const void *host_src, size_t src_bytes, int64_t n_rows, int64_t cols,
                               float *host_dst);
/* y[r] = sum_c W[r][c] x[c] for a BF16/F16/F32/Q8_0 matrix, on the GPU, host in and out (test entry). */
td_status td_cuda_gemv(int type, const void *host_w, size_t w_bytes, int64_t rows, int64_t cols, const float *host_x,
                       float *host_y);

#ifdef __cplusplus
}
#endif

#endif
