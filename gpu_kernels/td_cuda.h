/* td_cuda: which GPUs there are, callable from C. Builds without nvcc link td_cuda_stub.c, whose functions
 * report that the GPU path is not compiled in. The operations themselves: td_cuda_kernels.h (CUDA builds). */
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

#ifdef __cplusplus
}
#endif

#endif
