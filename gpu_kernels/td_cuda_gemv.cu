// Dequantization and matrix-vector kernels for the plain float types and Q8_0. One warp per row: lanes
// stride over the row, then a shuffle reduction. Layouts come from td_blocks.h, shared with the CPU.
#include "td_blocks.h"
#include "td_cuda.h"
#include "td_cuda_check.h"
#include "td_types.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace {

__device__ __forceinline__ float td_load_elem(int type, const uint8_t *row, int64_t c)
{
    switch (type) {
    case TD_TYPE_F32: {
        float f;
        memcpy(&f, row + 4 * c, 4);
        return f;
    }
    case TD_TYPE_F16: {
        uint16_t h;
        memcpy(&h, row + 2 * c, 2);
        return __half2float(__ushort_as_half(h));
    }
    case TD_TYPE_BF16: {
        uint16_t h;
        memcpy(&h, row + 2 * c, 2);
        return __uint_as_float(static_cast<uint32_t>(h) << 16);
    }
    case TD_TYPE_Q8_0: {
        const td_block_q8_0 *b = reinterpret_cast<const td_block_q8_0 *>(row) + c / TD_QK8_0;
        uint16_t d;
        memcpy(&d, &b->d, 2);
        return __half2float(__ushort_as_half(d)) * static_cast<float>(b->qs[c % TD_QK8_0]);
    }
    default: return 0.0f;
    }
}

__global__ void td_dequant_kernel(int type, const uint8_t *src, size_t row_bytes, int64_t rows, int64_t cols, float *dst)
{
    int64_t r = blockIdx.x;
    if (r >= rows) return;
    const uint8_t *row = src + r * row_bytes;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dst[r * cols + c] = td_load_elem(type, row, c);
}

__global__ void td_gemv_kernel(int type, const uint8_t *w, size_t row_bytes, int64_t rows, int64_t cols, const float *x,
                               float *y)
{
    int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (r >= rows) return;
    const uint8_t *row = w + r * row_bytes;
    float acc = 0.0f;
    for (int64_t c = lane; c < cols; c += 32) acc += td_load_elem(type, row, c) * x[c];
    for (int off = 16; off > 0; off /= 2) acc += __shfl_down_sync(0xffffffffu, acc, off);
    if (lane == 0) y[r] = acc;
}

bool td_gpu_type_ok(int type)
{
    return type == TD_TYPE_F32 || type == TD_TYPE_F16 || type == TD_TYPE_BF16 || type == TD_TYPE_Q8_0;
}

// Device buffers freed on every exit path.
struct td_dev_buf {
    void *p = nullptr;
    ~td_dev_buf() { if (p) cudaFree(p); }
};

} // namespace

extern "C" td_status td_cuda_dequant_rows(int type, const void *host_src, size_t src_bytes, int64_t n_rows,
                                          int64_t cols, float *host_dst)
{
    if (!td_gpu_type_ok(type))
        return td_fail(TD_E_UNSUPPORTED, "the GPU kernels do not handle %s yet", td_type_name((td_type)type));
    if (td_cuda_device_count() == 0) return td_fail(TD_E_DEVICE, "no CUDA device");
    size_t row_bytes = td_type_row_bytes((td_type)type, cols);
    if (row_bytes * (size_t)n_rows != src_bytes) return td_fail(TD_E_ARG, "source bytes do not match the shape");
    td_dev_buf src, dst;
    TD_CUDA_TRY(cudaMalloc(&src.p, src_bytes));
    TD_CUDA_TRY(cudaMalloc(&dst.p, (size_t)(n_rows * cols) * sizeof(float)));
    TD_CUDA_TRY(cudaMemcpy(src.p, host_src, src_bytes, cudaMemcpyHostToDevice));
    td_dequant_kernel<<<(unsigned)n_rows, 256>>>(type, static_cast<const uint8_t *>(src.p), row_bytes, n_rows, cols,
                                                 static_cast<float *>(dst.p));
    TD_CUDA_TRY(cudaGetLastError());
    TD_CUDA_TRY(cudaMemcpy(host_dst, dst.p, (size_t)(n_rows * cols) * sizeof(float), cudaMemcpyDeviceToHost));
    return TD_OK;
}

extern "C" td_status td_cuda_gemv(int type, const void *host_w, size_t w_bytes, int64_t rows, int64_t cols,
                                  const float *host_x, float *host_y)
{
    if (!td_gpu_type_ok(type))
        return td_fail(TD_E_UNSUPPORTED, "the GPU kernels do not handle %s yet", td_type_name((td_type)type));
    if (td_cuda_device_count() == 0) return td_fail(TD_E_DEVICE, "no CUDA device");
    size_t row_bytes = td_type_row_bytes((td_type)type, cols);
    if (row_bytes * (size_t)rows != w_bytes) return td_fail(TD_E_ARG, "weight bytes do not match the shape");
    td_dev_buf w, x, y;
    TD_CUDA_TRY(cudaMalloc(&w.p, w_bytes));
    TD_CUDA_TRY(cudaMalloc(&x.p, (size_t)cols * sizeof(float)));
    TD_CUDA_TRY(cudaMalloc(&y.p, (size_t)rows * sizeof(float)));
    TD_CUDA_TRY(cudaMemcpy(w.p, host_w, w_bytes, cudaMemcpyHostToDevice));
    TD_CUDA_TRY(cudaMemcpy(x.p, host_x, (size_t)cols * sizeof(float), cudaMemcpyHostToDevice));
    const int warps = 8;
    unsigned blocks = (unsigned)((rows + warps - 1) / warps);
    td_gemv_kernel<<<blocks, warps * 32>>>(type, static_cast<const uint8_t *>(w.p), row_bytes, rows, cols,
                                            static_cast<const float *>(x.p), static_cast<float *>(y.p));
    TD_CUDA_TRY(cudaGetLastError());
    TD_CUDA_TRY(cudaMemcpy(host_y, y.p, (size_t)rows * sizeof(float), cudaMemcpyDeviceToHost));
    return TD_OK;
}
