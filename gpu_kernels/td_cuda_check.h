// TD_CUDA_TRY: one check macro that names the failing statement in the td_status message.
#ifndef TD_CUDA_CHECK_H
#define TD_CUDA_CHECK_H

#include "td_status.h"

#include <cuda_runtime.h>

#define TD_CUDA_TRY(stmt)                                                                              \
    do {                                                                                               \
        cudaError_t td_cuda_err_ = (stmt);                                                             \
        if (td_cuda_err_ != cudaSuccess)                                                               \
            return td_fail(TD_E_DEVICE, "CUDA error %s at %s:%d in `%s`", cudaGetErrorString(td_cuda_err_), \
                           __FILE__, __LINE__, #stmt);                                                 \
    } while (0)

#endif
