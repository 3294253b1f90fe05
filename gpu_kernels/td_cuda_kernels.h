/* td_cuda_kernels: the GPU's operations, callable from C. They know no model and no plan: pointers
 * (device memory unless noted), shapes and td_type codes. Every launcher queues its work on the stream of
 * a td_cuda context and returns at once; a launch error is returned at once, a fault while running at the
 * next td_cuda_sync. Weight layouts are td_blocks.h's, as on the CPU.
 *
 * Precision: the matrix-vector products (1-8 rows) dequantize in registers and accumulate in fp32, from
 * the exact weights (the CPU reference's class). td_cuda_gemm dequantizes slabs of rows to a scratch and
 * multiplies with cuBLAS: in fp32 (SGEMM, exact weights and activations) or in bf16 on tensor cores
 * (weights and activations rounded to bf16, fp32 accumulation). */
#ifndef TD_CUDA_KERNELS_H
#define TD_CUDA_KERNELS_H

#include "td_status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ the context: a device, a stream */

typedef struct td_cuda td_cuda;

/* Selects the device, makes one stream and one cuBLAS handle on it. budget: the most device memory that
 * td_cuda_alloc may hand out (0: no cap); a request beyond it fails with TD_E_NOMEM. */
td_status td_cuda_create(int device, uint64_t budget, td_cuda **out);
void td_cuda_free(td_cuda *c);
int td_cuda_index(const td_cuda *c);

/* Device memory; every allocation is counted against the budget. */
td_status td_cuda_alloc(td_cuda *c, size_t bytes, void **out);
void td_cuda_release(td_cuda *c, void *p);
uint64_t td_cuda_allocated(const td_cuda *c);
uint64_t td_cuda_budget(const td_cuda *c);
/* What the driver reports for the device (free and total bytes). */
td_status td_cuda_mem_info(td_cuda *c, uint64_t *free_bytes, uint64_t *total_bytes);

/* Page-locked host memory, for copies that overlap. */
td_status td_cuda_host_alloc(size_t bytes, void **out);
void td_cuda_host_release(void *p);

/* Copies queued on the stream; 2D forms copy `rows` rows of `row_bytes` between pitches. A pageable host
 * source may be reused as soon as the call returns; a host destination is valid after td_cuda_sync. */
td_status td_cuda_h2d(td_cuda *c, void *dst, size_t dpitch, const void *src, size_t spitch, size_t row_bytes, size_t rows);
td_status td_cuda_d2h(td_cuda *c, void *dst, size_t dpitch, const void *src, size_t spitch, size_t row_bytes, size_t rows);
td_status td_cuda_d2d(td_cuda *c, void *dst, size_t dpitch, const void *src, size_t spitch, size_t row_bytes, size_t rows);
td_status td_cuda_memset(td_cuda *c, void *dst, int value, size_t bytes);
/* Synchronous upload (load time). */
td_status td_cuda_upload(td_cuda *c, void *dst, const void *src, size_t bytes);

/* Waits for the stream; a fault of work queued earlier comes back here as TD_E_DEVICE. */
td_status td_cuda_sync(td_cuda *c);
/* The error state without waiting: TD_OK, or the launch or fault error seen so far. */
td_status td_cuda_check(td_cuda *c);
/* Seconds the stream has spent working, summed over the stretches from the first work queued after a
 * wait to that wait (td_cuda_sync), timed with events; launch gaps inside a stretch count as busy. */
double td_cuda_busy_seconds(const td_cuda *c);

/* Events on the stream, for host copies that must not be overwritten while in flight. */
typedef struct td_cuda_event td_cuda_event;
td_status td_cuda_event_create(td_cuda *c, td_cuda_event **out);
void td_cuda_event_free(td_cuda_event *e);
td_status td_cuda_event_record(td_cuda *c, td_cuda_event *e);
td_status td_cuda_event_wait_host(td_cuda_event *e);

/* A kernel that faults (tests of the error path). The context is unusable afterwards. */
td_status td_cuda_inject_fault(td_cuda *c);

/* ------------------------------------------------------------------ weight matrices */

typedef struct td_cuda_mat {
    int type;                 /* td_type */
    int64_t rows, cols;
    const void *data;         /* device: row r at data + r * row_bytes */
    size_t row_bytes;
    /* F8_E4M3: the source tensor's weight_scale_inv grid (device, float32), one value per block of
     * scale_block[0] x scale_block[1] weights; this matrix's row r is row scale_row0 + r of the source. */
    const float *scale;
    int64_t scale_cols, scale_row0;
    int scale_block[2];
} td_cuda_mat;

/* Whether the kernels read this type in place (else the caller converts it, e.g. to F16). */
bool td_cuda_type_supported(int type);
/* Whether a matrix of this type and width can be used (rows of whole blocks, whole 8-value chunks,
 * FP8 scale blocks of whole chunks); if not, why. */
bool td_cuda_mat_ok(const td_cuda_mat *m, char *why, size_t cap);

/* Matrix-vector products, batched. For batch b, query row t (< n) and output o (< out_rows):
 *   y[b*y_bstride + t*ldy + o] (+)= sum_c W_b[p(o)][c] * x[(b / x_div)*x_bstride + t*ldx + (o / grp)*x_gstride + c]
 * where p(o) = (o / grp) * grp_stride + grp_off + o % grp (rows of a head inside a stacked matrix) and W_b
 * is w, or with ids the matrix whose data is table[ids[b]] (scale_table[ids[b]] for FP8): the routed
 * experts. For a plain product: grp = out_rows, grp_stride = grp_off = 0, x_gstride = 0, batches 1. */
typedef struct td_cuda_gemv {
    td_cuda_mat w;
    int64_t out_rows;
    int64_t grp, grp_stride, grp_off;
    const float *x;
    int64_t ldx, x_gstride, x_bstride;
    int x_div;
    float *y;
    int64_t ldy, y_bstride;
    int n;                          /* query rows; more than 8 run in groups of 8 */
    int batches;
    const int32_t *ids;             /* device [batches], or NULL */
    const void *const *table;       /* device [E] matrix data, with ids */
    const float *const *scale_table; /* device [E] FP8 scale grids, with ids (or NULL) */
    bool accumulate;
} td_cuda_gemv;
td_status td_cuda_gemv_run(td_cuda *c, const td_cuda_gemv *a);

/* The transposed product per group (head): y[t*ldy + g*y_gstride + j] = sum_{i<k} W[g*grp_stride + i][j] *
 * x[t*ldx + g*x_gstride + i], j < w.cols, g < groups, t < n (<= 8). */
typedef struct td_cuda_gemv_t {
    td_cuda_mat w;
    int64_t groups, k, grp_stride;
    const float *x;
    int64_t ldx, x_gstride;
    float *y;
    int64_t ldy, y_gstride;
    int n;
} td_cuda_gemv_t;
td_status td_cuda_gemv_t_run(td_cuda *c, const td_cuda_gemv_t *a);

/* y[t*ldy + r] (+)= sum_c W[r][c] x[t*ldx + c] for n rows (any n): slabs of W dequantized to a scratch
 * of the product's type, then cuBLAS (bf16: tensor cores, x rounded to bf16 too; else fp32). */
td_status td_cuda_gemm(td_cuda *c, const td_cuda_mat *w, const float *x, int64_t ldx, float *y, int64_t ldy, int64_t n,
                       bool accumulate, bool bf16);
/* Scratch for td_cuda_gemm: products of up to max_rows rows of up to max_cols columns. */
td_status td_cuda_gemm_reserve(td_cuda *c, int64_t max_rows, int64_t max_cols);

/* out[t*ldo + j] = W[tokens[t]][j] (tokens in device memory), dequantized to float. */
td_status td_cuda_embed(td_cuda *c, const td_cuda_mat *w, const int32_t *tokens, int64_t n, float *out, int64_t ldo);
/* Rows [row0, row0 + nrows) of W as floats, [nrows][cols] (tests). */
td_status td_cuda_dequant(td_cuda *c, const td_cuda_mat *w, int64_t row0, int64_t nrows, float *out);

/* ------------------------------------------------------------------ elementwise and rows */

/* y[t] = x[t] / rms(x[t]) * w over width values (the sum of squares in double, as on the CPU); y may be x. */
td_status td_cuda_rmsnorm(td_cuda *c, const float *x, int64_t ldx, const float *w, float *y, int64_t ldy, int64_t n,
                          int64_t width, double eps);
/* g[i] = silu(g[i]) * u[i] over n rows of width values (ld between rows). */
td_status td_cuda_silu_mul(td_cuda *c, float *g, const float *u, int64_t ld, int64_t n, int64_t width);
/* dst[t] += src[t] */
td_status td_cuda_add(td_cuda *c, float *dst, int64_t ldd, const float *src, int64_t lds, int64_t n, int64_t width);
/* out[t] = sum_j w[t*ldw + j] * y[(t*k + j)*H ...]: the routed experts' outputs weighted and summed. */
td_status td_cuda_moe_combine(td_cuda *c, const float *y, const float *w, int64_t ldw, float *out, int64_t ldo, int64_t n,
                              int k, int64_t H);

/* ------------------------------------------------------------------ the router */

typedef struct td_cuda_router {
    int n_experts, k;
    int n_group, topk_group;
    int method;        /* 0 noaux_tc (group score: sum of the top two biased scores), 1 group max, 2 no groups */
    int scoring;       /* 0 sigmoid, 1 softmax */
    bool norm_topk;
    double scaling;
    const float *bias; /* device [E] or NULL */
} td_cuda_router;
/* From router logits [n][E] (ld): ids[t*ldi + j] (int32) and weights[t*ldw + j] of the chosen experts,
 * with td_router.c's rule exactly (ties to the lower index). logits are left as they were. */
td_status td_cuda_route(td_cuda *c, const td_cuda_router *r, const float *logits, int64_t ld, int64_t n, int32_t *ids,
                        int64_t ldi, float *weights, int64_t ldw);

/* ------------------------------------------------------------------ MLA attention */

/* The latent cache of one layer: c_kv [n_ctx][r] and the roped key [n_ctx][dr], in f32 or bf16. */
typedef struct td_cuda_kv {
    void *ckv, *krope;
    bool bf16;
    int64_t r, dr;
} td_cuda_kv;

/* For n rows at positions pos0..pos0+n-1: the cache row of each position (rmsnorm of kva[t][0..r) with
 * a_norm, and kva[t][r..r+dr) roped), and the roped tails q[t*ldq + h*q_hstride + q_rope_off ..] of the
 * queries' nh heads. cos/sin: [positions][dr/2] tables. */
td_status td_cuda_kv_store(td_cuda *c, const td_cuda_kv *kv, const float *kva, int64_t ldkva, const float *a_norm,
                           double eps, const float *cos_t, const float *sin_t, int64_t pos0, int64_t n, float *q,
                           int64_t ldq, int64_t nh, int64_t q_hstride, int64_t q_rope_off);

/* Attention in the absorbed form over the latent cache, split over the context (flash-decoding). Row t
 * (< n <= 8) sits at position pos0 + t and attends positions [0, pos0 + t]; for head h its query is
 * qlat[t*ldql + h*r ..] (W_UK folded in) and the roped tail q[t*ldq + h*q_hstride + q_rope_off ..]; the
 * output olat[t*ldol + h*r ..] is the softmax-weighted sum of c_kv (W_UV is applied after). part is
 * scratch of td_cuda_mla_part_floats floats. */
typedef struct td_cuda_mla {
    td_cuda_kv kv;
    int64_t nh;
    const float *qlat;
    int64_t ldql;
    const float *q;
    int64_t ldq, q_hstride, q_rope_off;
    float *olat;
    int64_t ldol;
    int n;
    int64_t pos0;
    float scale;
    float *part;
    bool tensor_cores; /* with a bf16 cache: scores and sums on bf16 tensor cores (queries and the softmax's
                        * weights rounded to bf16), fp32 accumulation; else fp32 throughout */
} td_cuda_mla;
td_status td_cuda_mla_attend(td_cuda *c, const td_cuda_mla *a);
/* Scratch floats td_cuda_mla_attend needs for up to n (<= 8) rows of nh heads of width r. */
int64_t td_cuda_mla_part_floats(int64_t n, int64_t nh, int64_t r);
/* ------------------------------------------------------------------ measurements */

/* The device's memory bandwidth as a device-to-device copy of `bytes` sees it (read plus write), GB/s. */
td_status td_cuda_copy_bandwidth(td_cuda *c, size_t bytes, double *gbps);
/* What handing `bytes` of results to the host costs after a small kernel, microseconds per round:
 * method 0 copy + stream sync, 1 copy + event sync, 2 a kernel writing mapped host memory and a flag the
 * host spins on, 3 copy + cudaLaunchHostFunc raising a flag the host spins on. */
td_status td_cuda_handoff_bench(td_cuda *c, int method, int iters, size_t bytes, double *us);

/* The largest latent and rope widths the attention kernel holds. */
#define TD_CUDA_MLA_MAX_R 512
#define TD_CUDA_MLA_MAX_DR 64

#ifdef __cplusplus
}
#endif

#endif
