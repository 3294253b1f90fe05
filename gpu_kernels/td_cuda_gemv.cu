// Matrix-vector products for decode (1-8 rows at once), dequantizing in registers with fp32
// accumulation: one warp per output row, each lane taking 8-weight chunks of the row in turn, then a
// shuffle reduction. Also the per-head transposed product (W_UK folded into the query), the row gather of
// the embedding and plain dequantization. Weight layouts: td_cuda_quant.cuh.
#include "td_cuda_impl.cuh"
#include "td_cuda_quant.cuh"

#include <cuda_bf16.h>

#include <cstdio>

namespace {

constexpr int TD_GEMV_WARPS = 4; // output rows per block
constexpr int TD_MAX_Q = 8;      // query rows per launch

__device__ __forceinline__ const float *td_scale_row(const td_cuda_mat &w, const float *scale, int64_t prow)
{
    if (!scale) return nullptr;
    return scale + ((w.scale_row0 + prow) / w.scale_block[0]) * w.scale_cols;
}

template <int T> __global__ void __launch_bounds__(TD_GEMV_WARPS * 32) td_gemv_kernel(td_cuda_gemv a)
{
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t o = (int64_t)blockIdx.x * TD_GEMV_WARPS + warp;
    int b = blockIdx.y;
    if (o >= a.out_rows) return;
    const uint8_t *base = static_cast<const uint8_t *>(a.w.data);
    const float *scale = a.w.scale;
    if (a.ids) {
        int e = a.ids[b];
        base = static_cast<const uint8_t *>(a.table[e]);
        if (a.scale_table) scale = a.scale_table[e];
    }
    int64_t g = o / a.grp, prow = g * a.grp_stride + a.grp_off + (o - g * a.grp);
    const uint8_t *row = base + prow * a.w.row_bytes;
    const float *srow = T == TD_TYPE_F8_E4M3 ? td_scale_row(a.w, scale, prow) : nullptr;
    const float *x = a.x + (int64_t)(b / a.x_div) * a.x_bstride + g * a.x_gstride;
    float acc[TD_MAX_Q];
#pragma unroll
    for (int t = 0; t < TD_MAX_Q; t++) acc[t] = 0.0f;
    int64_t chunks = a.w.cols / 8;
    for (int64_t c = lane; c < chunks; c += 32) {
        float w[8];
        td_deq8<T>(row, c, w, srow, a.w.scale_block[1]);
#pragma unroll
        for (int t = 0; t < TD_MAX_Q; t++) {
            if (t < a.n) {
                const float *xr = x + t * a.ldx + c * 8;
                float s = acc[t];
#pragma unroll
                for (int i = 0; i < 8; i++) s = fmaf(w[i], __ldg(xr + i), s);
                acc[t] = s;
            }
        }
    }
#pragma unroll
    for (int t = 0; t < TD_MAX_Q; t++) {
        if (t < a.n) {
            float s = td_warp_sum(acc[t]);
            if (lane == 0) {
                float *y = a.y + (int64_t)b * a.y_bstride + t * a.ldy + o;
                *y = a.accumulate ? *y + s : s;
            }
        }
    }
}

// Thread per (group, 8-column chunk): y[t][g][j] = sum_i W[g*grp_stride + i][j] x[t][g][i].
template <int T> __global__ void td_gemv_t_kernel(td_cuda_gemv_t a)
{
    int64_t chunks = a.w.cols / 8;
    int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= a.groups * chunks) return;
    int64_t g = id / chunks, c = id - g * chunks;
    float acc[TD_MAX_Q][8];
#pragma unroll
    for (int t = 0; t < TD_MAX_Q; t++)
#pragma unroll
        for (int j = 0; j < 8; j++) acc[t][j] = 0.0f;
    const uint8_t *base = static_cast<const uint8_t *>(a.w.data);
    for (int64_t i = 0; i < a.k; i++) {
        int64_t prow = g * a.grp_stride + i;
        float w[8];
        td_deq8<T>(base + prow * a.w.row_bytes, c, w, T == TD_TYPE_F8_E4M3 ? td_scale_row(a.w, a.w.scale, prow) : nullptr,
                   a.w.scale_block[1]);
#pragma unroll
        for (int t = 0; t < TD_MAX_Q; t++) {
            if (t < a.n) {
                float xv = __ldg(a.x + t * a.ldx + g * a.x_gstride + i);
#pragma unroll
                for (int j = 0; j < 8; j++) acc[t][j] = fmaf(w[j], xv, acc[t][j]);
            }
        }
    }
#pragma unroll
    for (int t = 0; t < TD_MAX_Q; t++) {
        if (t < a.n) {
            float *y = a.y + t * a.ldy + g * a.y_gstride + c * 8;
#pragma unroll
            for (int j = 0; j < 8; j++) y[j] = acc[t][j];
        }
    }
}

// Thread per 8-weight chunk of the rows asked for: to floats (rows of a table by index, or a range).
template <int T, class Out>
__global__ void td_dequant_kernel(td_cuda_mat w, const int32_t *rows, int64_t row0, int64_t n, Out *out, int64_t ldo)
{
    int64_t chunks = w.cols / 8;
    int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= n * chunks) return;
    int64_t t = id / chunks, c = id - t * chunks;
    int64_t r = rows ? rows[t] : row0 + t;
    const uint8_t *row = static_cast<const uint8_t *>(w.data) + r * w.row_bytes;
    float v[8];
    td_deq8<T>(row, c, v, T == TD_TYPE_F8_E4M3 ? td_scale_row(w, w.scale, r) : nullptr, w.scale_block[1]);
    Out *o = out + t * ldo + c * 8;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        if constexpr (sizeof(Out) == 4) o[j] = v[j];
        else o[j] = __float2bfloat16_rn(v[j]);
    }
}

} // namespace

extern "C" bool td_cuda_type_supported(int type)
{
    bool ok;
    TD_TYPE_DISPATCH(type, ok, (void)T);
    return ok;
}

extern "C" bool td_cuda_mat_ok(const td_cuda_mat *m, char *why, size_t cap)
{
    if (!td_cuda_type_supported(m->type)) {
        std::snprintf(why, cap, "the GPU kernels do not read %s weights", td_type_name((td_type)m->type));
        return false;
    }
    if (m->cols % 8 || !td_type_row_ok((td_type)m->type, m->cols)) {
        std::snprintf(why, cap, "rows of %lld %s values are not whole blocks of 8 and of the type",
                      (long long)m->cols, td_type_name((td_type)m->type));
        return false;
    }
    if (m->type == TD_TYPE_F8_E4M3 && m->scale && (m->scale_block[0] < 1 || m->scale_block[1] < 8 || m->scale_block[1] % 8)) {
        std::snprintf(why, cap, "FP8 scale blocks of %dx%d: the GPU kernels need whole columns of 8", m->scale_block[0],
                      m->scale_block[1]);
        return false;
    }
    return true;
}

static td_status td_unsupported(int type)
{
    return td_fail(TD_E_UNSUPPORTED, "the GPU kernels do not read %s weights", td_type_name((td_type)type));
}

extern "C" td_status td_cuda_gemv_run(td_cuda *c, const td_cuda_gemv *args)
{
    td_cuda_work(c);
    td_cuda_gemv a = *args;
    if (a.x_div < 1) a.x_div = 1;
    if (a.grp < 1) a.grp = a.out_rows;
    if (a.batches < 1) a.batches = 1;
    if (a.out_rows < 1 || a.n < 1) return TD_OK;
    if (a.batches > 65535) return td_fail(TD_E_ARG, "td_cuda_gemv_run: %d batches (at most 65535)", a.batches);
    int n_all = a.n;
    for (int t0 = 0; t0 < n_all; t0 += TD_MAX_Q) {
        a.n = n_all - t0 < TD_MAX_Q ? n_all - t0 : TD_MAX_Q;
        dim3 grid(td_blocks_for(a.out_rows, TD_GEMV_WARPS), (unsigned)a.batches);
        bool ok;
        TD_TYPE_DISPATCH(a.w.type, ok, (td_gemv_kernel<T><<<grid, TD_GEMV_WARPS * 32, 0, c->stream>>>(a)));
        if (!ok) return td_unsupported(a.w.type);
        TD_CUDA_LAUNCHED("gemv");
        a.x += TD_MAX_Q * a.ldx;
        a.y += TD_MAX_Q * a.ldy;
    }
    return TD_OK;
}

extern "C" td_status td_cuda_gemv_t_run(td_cuda *c, const td_cuda_gemv_t *args)
{
    td_cuda_work(c);
    td_cuda_gemv_t a = *args;
    int n_all = a.n;
    int64_t threads = a.groups * (a.w.cols / 8);
    for (int t0 = 0; t0 < n_all; t0 += TD_MAX_Q) {
        a.n = n_all - t0 < TD_MAX_Q ? n_all - t0 : TD_MAX_Q;
        bool ok;
        TD_TYPE_DISPATCH(a.w.type, ok, (td_gemv_t_kernel<T><<<td_blocks_for(threads, 128), 128, 0, c->stream>>>(a)));
        if (!ok) return td_unsupported(a.w.type);
        TD_CUDA_LAUNCHED("gemv_t");
        a.x += TD_MAX_Q * a.ldx;
        a.y += TD_MAX_Q * a.ldy;
    }
    return TD_OK;
}

template <class Out>
static td_status td_dequant_rows(td_cuda *c, const td_cuda_mat *w, const int32_t *rows, int64_t row0, int64_t n, Out *out,
                                 int64_t ldo)
{
    int64_t threads = n * (w->cols / 8);
    if (threads == 0) return TD_OK;
    bool ok;
    TD_TYPE_DISPATCH(w->type, ok,
                     (td_dequant_kernel<T, Out><<<td_blocks_for(threads, 256), 256, 0, c->stream>>>(*w, rows, row0, n, out, ldo)));
    if (!ok) return td_unsupported(w->type);
    TD_CUDA_LAUNCHED("dequant");
    return TD_OK;
}

extern "C" td_status td_cuda_embed(td_cuda *c, const td_cuda_mat *w, const int32_t *tokens, int64_t n, float *out,
                                   int64_t ldo)
{
    td_cuda_work(c);
    return td_dequant_rows<float>(c, w, tokens, 0, n, out, ldo);
}

extern "C" td_status td_cuda_dequant(td_cuda *c, const td_cuda_mat *w, int64_t row0, int64_t nrows, float *out)
{
    td_cuda_work(c);
    return td_dequant_rows<float>(c, w, nullptr, row0, nrows, out, w->cols);
}

// ------------------------------------------------------------------ GEMM: dequantized slabs + cuBLAS

namespace {

__global__ void td_to_bf16_kernel(const float *x, int64_t ldx, __nv_bfloat16 *y, int64_t cols, int64_t n)
{
    int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= n * cols) return;
    int64_t t = id / cols, j = id - t * cols;
    y[id] = __float2bfloat16_rn(x[t * ldx + j]);
}

constexpr size_t TD_SLAB_ELEMS = (size_t)16 << 20; // weights dequantized per cuBLAS call

} // namespace

static td_status td_scratch(td_cuda *c, void **p, size_t *have, size_t want)
{
    if (*have >= want) return TD_OK;
    TD_TRY(td_cuda_sync(c)); // the old scratch may still be read by queued work
    td_cuda_release(c, *p);
    *p = nullptr;
    *have = 0;
    TD_TRY(td_cuda_alloc(c, want, p));
    *have = want;
    return TD_OK;
}

extern "C" td_status td_cuda_gemm_reserve(td_cuda *c, int64_t max_rows, int64_t max_cols)
{
    td_cuda_work(c);
    TD_TRY(td_scratch(c, &c->w_slab, &c->w_slab_bytes, TD_SLAB_ELEMS * sizeof(float)));
    return td_scratch(c, &c->x_bf16, &c->x_bf16_bytes, (size_t)(max_rows * max_cols) * sizeof(__nv_bfloat16));
}

static td_status td_blas(cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) return TD_OK;
    return td_fail(TD_E_DEVICE, "cuBLAS %s failed (status %d)", what, (int)s);
}

extern "C" td_status td_cuda_gemm(td_cuda *c, const td_cuda_mat *w, const float *x, int64_t ldx, float *y, int64_t ldy,
                                  int64_t n, bool accumulate, bool bf16)
{
    td_cuda_work(c);
    if (n <= 0) return TD_OK;
    int64_t cols = w->cols;
    size_t el = bf16 ? sizeof(__nv_bfloat16) : sizeof(float);
    if (!c->w_slab || (bf16 && c->x_bf16_bytes < (size_t)(n * cols) * el))
        return td_fail(TD_E_ARG, "td_cuda_gemm: scratch for %lld rows of %lld was not reserved", (long long)n,
                       (long long)cols);
    int64_t slab_rows = (int64_t)(c->w_slab_bytes / el) / cols;
    if (slab_rows < 1) return td_fail(TD_E_ARG, "td_cuda_gemm: rows of %lld values exceed the slab", (long long)cols);
    if (bf16) {
        td_to_bf16_kernel<<<td_blocks_for(n * cols, 256), 256, 0, c->stream>>>(x, ldx, static_cast<__nv_bfloat16 *>(c->x_bf16),
                                                                               cols, n);
        TD_CUDA_LAUNCHED("to_bf16");
    }
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    for (int64_t r0 = 0; r0 < w->rows; r0 += slab_rows) {
        int64_t nr = w->rows - r0 < slab_rows ? w->rows - r0 : slab_rows;
        // y^T (column-major rows x n) = W_slab (row-major [nr][cols], i.e. column-major cols x nr)^T . x^T
        if (bf16) {
            TD_TRY(td_dequant_rows(c, w, nullptr, r0, nr, static_cast<__nv_bfloat16 *>(c->w_slab), cols));
            TD_TRY(td_blas(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, (int)n, (int)cols, &one, c->w_slab,
                                        CUDA_R_16BF, (int)cols, c->x_bf16, CUDA_R_16BF, (int)cols, &beta, y + r0,
                                        CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                           "GemmEx (bf16)"));
        } else {
            TD_TRY(td_dequant_rows(c, w, nullptr, r0, nr, static_cast<float *>(c->w_slab), cols));
            TD_TRY(td_blas(cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, (int)n, (int)cols, &one,
                                       static_cast<const float *>(c->w_slab), (int)cols, x, (int)ldx, &beta, y + r0,
                                       (int)ldy),
                           "Sgemm"));
        }
    }
    return TD_OK;
}
