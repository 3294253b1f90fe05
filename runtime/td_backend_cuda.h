/* The CUDA backend: the forward pass's operations on one GPU (gpu_kernels/), behind td_backend_i.
 * Weights are uploaded once by `prepare`, in their stored type (types the kernels cannot read in place
 * are dequantized to F16 on the way); activations, scratch and the latent caches live in device memory;
 * every operation is queued on the backend's one stream, and only copies to the host wait for it. */
#ifndef TD_BACKEND_CUDA_H
#define TD_BACKEND_CUDA_H

#include "td_backend.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct td_backend_cuda_params {
    int device;        /* cuda:N */
    bool bf16_gemm;    /* products of more than 8 rows on tensor cores in bf16 (else fp32, exact weights) */
    uint64_t budget;   /* device memory the plan gives this GPU, bytes (0: no cap) */
} td_backend_cuda_params;

/* Fails with TD_E_DEVICE when this build has no CUDA or the device does not exist. */
td_status td_backend_cuda_create(const td_model *model, const td_backend_cuda_params *p, int64_t max_rows,
                                 td_backend **out);
/* What a GPU holds besides the weights and the KV cache when the engine runs a model there with batches of
 * up to max_rows rows over contexts of up to max_ctx positions: the CUDA context and cuBLAS (measured on
 * the H200 with CUDA 13; smaller on consumer cards), the backend's scratch and the forward pass's
 * activations. The planner's reserve for a GPU. */
uint64_t td_backend_cuda_reserve_bytes(const td_hparams *hp, int64_t max_rows, int64_t max_ctx);
/* Device memory the backend holds now (weights, caches, scratch), bytes. */
uint64_t td_backend_cuda_allocated(const td_backend *b);
/* Queues a kernel that faults, as if the last operation issued had failed (tests of the error path);
 * the backend is unusable afterwards. */
td_status td_backend_cuda_inject_fault(td_backend *b);

#endif
