// Internals shared by the CUDA sources: the context, the launch check, and small device helpers.
#ifndef TD_CUDA_IMPL_CUH
#define TD_CUDA_IMPL_CUH

#include "td_cuda_check.h"
#include "td_cuda_kernels.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

struct td_cuda {
    int device;
    int n_sm;           // multiprocessors, to size the grids of split work
    bool mla_smem_set;  // the tensor-core MLA kernel's shared memory limit was raised
    cudaStream_t stream;
    cublasHandle_t blas;
    uint64_t budget, allocated;
    // td_cuda_gemm's scratch: a slab of dequantized weights and the activations rounded to bf16
    void *w_slab;
    size_t w_slab_bytes;
    void *x_bf16;
    size_t x_bf16_bytes;
    // the stream's busy time: a segment opens with the first work queued after a wait and closes at it
    cudaEvent_t seg_start, seg_end;
    bool seg_open;
    double busy_s;
};

// Makes c's device the calling thread's current one (kernels and copies go to the current device's
// context); a no-op when it already is, as with one GPU.
void td_cuda_enter(const td_cuda *c);
// td_cuda_enter, and opens a busy segment if none is: called before queuing work.
void td_cuda_work(td_cuda *c);

// Checks a launch (or a fault already seen) right after queuing a kernel.
#define TD_CUDA_LAUNCHED(what) TD_CUDA_TRY(cudaPeekAtLastError())

static inline unsigned td_blocks_for(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

__device__ __forceinline__ float td_warp_sum(float v)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ __forceinline__ float td_warp_max(float v)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

__device__ __forceinline__ double td_warp_sum_d(double v)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

#endif
