/* The kernel table lookup, activation preparation and the generic kernel (any computable type). */
#include "td_kern.h"

#include "td_blocks.h"
#include "td_dequant.h"
#include "td_float.h"
#include "td_ops.h"

#include <math.h>
#include <string.h>

static int64_t td_round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

size_t td_act_row_bytes(td_act a, int64_t cols)
{
    size_t b = 0;
    switch (a) {
    case TD_ACT_F32: b = (size_t)cols * sizeof(float); break;
    case TD_ACT_Q8K: b = 2 * (size_t)((cols + TD_QK_K - 1) / TD_QK_K) * sizeof(td_block_q8_K); break;
    case TD_ACT_BF16: b = (size_t)td_round_up(cols, 32) * 2; break;
    default: return 0;
    }
    return (size_t)td_round_up((int64_t)b, 64);
}

/* One Q8_K block from m <= 256 values, zero-padded. */
static void td_q8k_block_ref(const float *x, int64_t m, td_block_q8_K *blk)
{
    float amax = 0.0f;
    for (int64_t i = 0; i < m; i++) amax = fmaxf(amax, fabsf(x[i]));
    float iscale = amax > 0.0f ? 127.0f / amax : 0.0f;
    blk->d = amax / 127.0f;
    for (int64_t i = 0; i < TD_QK_K; i++) {
        int v = 0;
        if (i < m) {
            long q = lrintf(x[i] * iscale);
            v = q > 127 ? 127 : q < -127 ? -127 : (int)q;
        }
        blk->qs[i] = (int8_t)v;
    }
    for (int g = 0; g < TD_QK_K / 16; g++) {
        int sum = 0;
        for (int i = 0; i < 16; i++) sum += blk->qs[g * 16 + i];
        blk->bsums[g] = (int16_t)sum;
    }
}

void td_act_q8k_ref(const float *x, int64_t cols, int64_t b0, int64_t b1, void *dst)
{
    td_block_q8_K *row = dst;
    int64_t nb = (cols + TD_QK_K - 1) / TD_QK_K;
    float r[TD_QK_K];
    for (int64_t b = b0; b < b1; b++) {
        int64_t c0 = b * TD_QK_K, m = cols - c0 < TD_QK_K ? cols - c0 : TD_QK_K;
        td_q8k_block_ref(x + c0, m, &row[b]);
        for (int64_t i = 0; i < m; i++) r[i] = x[c0 + i] - row[b].d * (float)row[b].qs[i];
        td_q8k_block_ref(r, m, &row[nb + b]);
    }
}

static void td_act_bf16_ref(const float *x, int64_t cols, void *dst)
{
    uint16_t *o = dst;
    int64_t padded = td_round_up(cols, 32);
    for (int64_t i = 0; i < cols; i++) o[i] = td_f32_to_bf16(x[i]);
    for (int64_t i = cols; i < padded; i++) o[i] = 0;
}

void td_act_prepare_range(td_act a, td_isa isa, const float *x, int64_t cols, int64_t c0, int64_t c1, void *dst)
{
    switch (a) {
    case TD_ACT_F32: memcpy((float *)dst + c0, x + c0, (size_t)(c1 - c0) * sizeof(float)); break;
    case TD_ACT_Q8K: {
        int64_t b0 = c0 / TD_QK_K, b1 = (c1 + TD_QK_K - 1) / TD_QK_K;
        (isa >= TD_ISA_AVX2 ? td_act_q8k_avx2 : td_act_q8k_ref)(x, cols, b0, b1, dst);
        break;
    }
    case TD_ACT_BF16:
        (isa >= TD_ISA_AVX2 ? td_act_bf16_avx2 : td_act_bf16_ref)(x + c0, c1 - c0, (uint16_t *)dst + c0);
        break;
    default: break;
    }
}

void td_act_prepare(td_act a, td_isa isa, const float *x, int64_t cols, void *dst)
{
    td_act_prepare_range(a, isa, x, cols, 0, cols, dst);
}

size_t td_kern_scratch_bytes(int64_t max_cols)
{
    /* the generic kernel's dequantized row, or the AMX kernel's B tiles of TD_KERN_AMX_TOKENS tokens (2 bytes
     * a column each), its weight panel of 32 bf16 rows (whole chunks of up to 1024 columns), a 4 KiB C slot
     * per 32 tokens, a C tile and a float row */
    size_t generic = (size_t)max_cols * sizeof(float);
    size_t amx = (size_t)td_round_up(max_cols, 1024) * (2 * TD_KERN_AMX_TOKENS + 64 + 4) +
                 (TD_KERN_AMX_TOKENS / 32) * 4096 + 1024 + 4096;
    return (generic > amx ? generic : amx) + 4096;
}

/* ------------------------------------------------------------------ the generic kernel */

static void td_gemv_generic(const td_kern_ctx *ctx, const td_matrix *w, int64_t r0, int64_t r1, const void *const *x,
                            int64_t n, float *y, int64_t ldy, float (*dot)(const float *, const float *, int64_t))
{
    float *row = ctx->scratch;
    for (int64_t r = r0; r < r1; r++) {
        td_matrix_dequant_row(w, r, row);
        for (int64_t t = 0; t < n; t++) y[t * ldy + (r - r0)] = dot(row, (const float *)x[t], w->cols);
    }
}

static void td_gemv_generic_scalar(const td_kern_ctx *ctx, const td_matrix *w, int64_t r0, int64_t r1,
                                   const void *const *x, int64_t n, float *y, int64_t ldy)
{
    td_gemv_generic(ctx, w, r0, r1, x, n, y, ldy, td_dot_f32);
}

static void td_gemv_generic_avx2(const td_kern_ctx *ctx, const td_matrix *w, int64_t r0, int64_t r1,
                                 const void *const *x, int64_t n, float *y, int64_t ldy)
{
    td_gemv_generic(ctx, w, r0, r1, x, n, y, ldy, td_dot_f32_avx2);
}

static const td_kernel td_generic_scalar = {TD_TYPE_COUNT, TD_ISA_SCALAR, TD_ACT_F32, td_gemv_generic_scalar, 1, 0,
                                            "generic/scalar"};
static const td_kernel td_generic_avx2 = {TD_TYPE_COUNT, TD_ISA_AVX2, TD_ACT_F32, td_gemv_generic_avx2, 1, 0,
                                          "generic/avx2"};

const td_kernel *td_kernel_generic(td_isa isa) { return isa >= TD_ISA_AVX2 ? &td_generic_avx2 : &td_generic_scalar; }

static const td_kernel *td_table_find(const td_kernel *table, td_type type, int64_t cols, int64_t n_tok)
{
    for (const td_kernel *k = table; k->fn; k++)
        if (k->type == type && cols % k->col_multiple == 0 && n_tok >= k->min_tokens) return k;
    return NULL;
}

typedef struct td_kernel_table {
    td_isa isa;
    const td_kernel *table;
} td_kernel_table;

static const td_kernel *td_tables_find(const td_kernel_table *tables, size_t n, td_type type, td_isa isa,
                                       int64_t cols, int64_t n_tok)
{
    for (size_t i = 0; i < n; i++) {
        if (isa < tables[i].isa) continue;
        const td_kernel *k = td_table_find(tables[i].table, type, cols, n_tok);
        if (k) return k;
    }
    return NULL;
}

const td_kernel *td_kernel_find(td_type type, td_isa isa, bool prefer_avx2, int64_t cols, int64_t n_tok)
{
    static const td_kernel_table widest_first[] = {{TD_ISA_AMX, td_kernels_amx},
                                                   {TD_ISA_AVX512, td_kernels_avx512_quant},
                                                   {TD_ISA_AVX512, td_kernels_avx512_float},
                                                   {TD_ISA_AVX2, td_kernels_avx2_quant},
                                                   {TD_ISA_AVX2, td_kernels_avx2_float}};
    /* Measured in the same runs (bench/RESULTS.md): one-token decode streams faster through the AVX2
     * kernels than through the AVX-512 ones, on the GPU host's Xeon (Q4_K 83.6 vs 71.0 GB/s) and on the
     * AVX-512 Zen dev machine (Q4_K, Q5_K, Q6_K, Q8_0, BF16). AMX keeps the batches it pays for. */
    static const td_kernel_table avx2_first[] = {{TD_ISA_AMX, td_kernels_amx},
                                                 {TD_ISA_AVX2, td_kernels_avx2_quant},
                                                 {TD_ISA_AVX2, td_kernels_avx2_float},
                                                 {TD_ISA_AVX512, td_kernels_avx512_quant},
                                                 {TD_ISA_AVX512, td_kernels_avx512_float}};
    if (prefer_avx2) return td_tables_find(avx2_first, sizeof avx2_first / sizeof avx2_first[0], type, isa, cols, n_tok);
    return td_tables_find(widest_first, sizeof widest_first / sizeof widest_first[0], type, isa, cols, n_tok);
}
