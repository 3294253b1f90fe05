/* td_kern: the fast matrix kernels behind td_cpu, one table entry per (weight type, ISA level).
 *
 * A kernel computes y = W x for a range of weight rows and a small set of tokens:
 *     y[t * ldy + (r - r0)] = sum_c W[r][c] x_t[c]     for r0 <= r < r1, t < n
 * where x_t is token t's activation row, already prepared in the kernel's activation format (float32,
 * Q8_K blocks or bf16). Tokens are passed as row pointers, so the tokens routed to one expert need no
 * gathering copy. Kernels run on one thread; td_cpu splits rows (and experts) across the pool.
 *
 * Activation formats:
 *  - TD_ACT_F32:  the float32 row as is.
 *  - TD_ACT_Q8K:  two rows of nb = ceil(cols / 256) td_block_q8_K (the last block zero-padded): x quantized
 *                 (d = max|x| / 127 per block, symmetric, with the sums of each 16 for the K-quants' min and
 *                 offset terms), then its rounding residual x - d*q quantized the same way. 8 + 8 bits: one
 *                 scale per 256 at 8 bits alone crushes the small entries of heavy-tailed activations (mean
 *                 KL 1.3e-2 on the fixtures; with the residual 5e-8). Kernels treat the residual row as a
 *                 second token whose result is added to the first. Q8_0 weights use it too.
 *  - TD_ACT_BF16: the row rounded to bf16 (for the AMX tiles), padded with zeros to a multiple of 32. */
#ifndef TD_KERN_H
#define TD_KERN_H

#include "td_cpu_features.h"
#include "td_matrix.h"

#include <stddef.h>
#include <stdint.h>

typedef enum td_act {
    TD_ACT_F32 = 0,
    TD_ACT_Q8K = 1,
    TD_ACT_BF16 = 2,
    TD_ACT_COUNT
} td_act;

/* Bytes of one prepared activation row of `cols` inputs (a multiple of 64, so rows stay aligned). */
size_t td_act_row_bytes(td_act a, int64_t cols);
/* Columns [c0, c1) of a row of `cols` (x is the whole row): c0 a multiple of 256 (of 32 for bf16), c1 the
 * end of that block or cols. Lets a row be prepared piece by piece as its values appear. */
void td_act_prepare_range(td_act a, td_isa isa, const float *x, int64_t cols, int64_t c0, int64_t c1, void *dst);
/* Prepares one activation row with the best routine `isa` allows. */
void td_act_prepare(td_act a, td_isa isa, const float *x, int64_t cols, void *dst);
/* Scalar reference of the Q8_K activation quantization, blocks [b0, b1) of a row of `cols` (the SIMD
 * version must match it bit for bit). */
void td_act_q8k_ref(const float *x, int64_t cols, int64_t b0, int64_t b1, void *dst);

/* Per-thread memory a kernel may use (zeroed never; sized by td_kern_scratch_bytes). */
typedef struct td_kern_ctx {
    void *scratch;
    size_t scratch_bytes;
    /* set by a caller that passes the same activations (x, n) as its previous call on this scratch, so a
     * kernel may reuse what it prepared from them (the AMX kernel's B tiles) */
    bool same_acts;
    /* the AMX kernel's B tiles of these n tokens, already laid out by td_amx_pack_btiles (groups of 16
     * tokens, each ceil(cols / 32) KiB); NULL: the kernel lays them out itself */
    const uint8_t *btiles;
} td_kern_ctx;
size_t td_kern_scratch_bytes(int64_t max_cols);
/* Tokens the AMX kernel lays out and runs in one pass over the weights (larger calls take several);
 * callers batching an expert's tokens use the same count. A multiple of 32. */
#define TD_KERN_AMX_TOKENS 96

typedef void (*td_gemv_fn)(const td_kern_ctx *ctx, const td_matrix *w, int64_t r0, int64_t r1,
                           const void *const *x, int64_t n, float *y, int64_t ldy);

typedef struct td_kernel {
    td_type type;
    td_isa isa;
    td_act act;
    td_gemv_fn fn;
    int64_t col_multiple; /* cols must be a multiple of this */
    int64_t min_tokens;   /* used only for batches of at least this many tokens per row */
    const char *name;     /* "q4_K/avx2" */
} td_kernel;

/* The fastest kernel for (type, cols) at ISA level `isa` or below, for batches of `n_tok` tokens per
 * weight row (AMX pays from a few tokens on); NULL when none (the caller uses the generic kernel).
 * prefer_avx2: try the AVX2 vector kernels before the AVX-512 ones (what --kernels auto does). */
const td_kernel *td_kernel_find(td_type type, td_isa isa, bool prefer_avx2, int64_t cols, int64_t n_tok);
/* The generic kernel: rows dequantized by the reference converters, then a float32 dot at `isa`. */
const td_kernel *td_kernel_generic(td_isa isa);

/* Tables of the ISA files, each ended by an entry with fn == NULL. */
extern const td_kernel td_kernels_avx2_float[];
extern const td_kernel td_kernels_avx2_quant[];
extern const td_kernel td_kernels_avx512_float[];
extern const td_kernel td_kernels_avx512_quant[];
extern const td_kernel td_kernels_amx[];

/* B tiles kt0..kt1-1 (tile kt at dst + kt KiB) of up to 16 bf16 activation rows (TD_ACT_BF16, zeros past
 * cnt), in the AMX kernel's layout; callers that reuse the same activations across many calls (the MoE
 * down projection) lay them out once and pass them in td_kern_ctx.btiles. Needs TD_ISA_AMX. */
void td_amx_pack_btiles(const void *const *x, int cnt, int64_t kt0, int64_t kt1, uint8_t *dst);

/* ISA helpers used by the generic kernel and the MoE glue (implemented per ISA file). */
float td_dot_f32_avx2(const float *a, const float *b, int64_t n);
void td_act_q8k_avx2(const float *x, int64_t cols, int64_t b0, int64_t b1, void *dst);
void td_act_bf16_avx2(const float *x, int64_t cols, void *dst);
/* y += a * x */
void td_axpy_f32_avx2(float *y, float a, const float *x, int64_t n);
/* h = silu(g) * u, the SwiGLU product (a vector e^x, within a few ulp of expf) */
void td_silu_mul_avx2(float *h, const float *g, const float *u, int64_t n);

#endif
