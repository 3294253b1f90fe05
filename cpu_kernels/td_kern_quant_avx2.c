/* AVX2 kernels for the block-quantized weights against Q8_K activations: the K-quants through one
 * integer loop (td_kq_unpack.h), Q8_0 and IQ4_XS with the sign trick. Integer sums stay exact inside
 * a block; the float scales are applied once per block (per 32 for Q8_0). */
#include "td_blocks.h"
#include "td_float.h"
#include "td_kern.h"
#include "td_kern_avx2.h"
#include "td_kq_unpack.h"

#include <immintrin.h>

#define TD_TOK_CHUNK 16 /* tokens whose float accumulators live on the stack at once */

/* T tokens (constant at each call) of one unpacked block: acc[t] += its 8-lane float partial sums. */
static inline __attribute__((always_inline)) void td_kq_dot_avx2(const td_kq *u, const td_block_q8_K *const *xb,
                                                                  int T, __m256 *acc)
{
    __m256i isum[4];
    for (int t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
    for (int c = 0; c < 8; c++) {
        __m256i qv = _mm256_load_si256((const __m256i *)(u->q + 32 * c));
        __m256i sv = _mm256_load_si256((const __m256i *)u->scv[c]);
        for (int t = 0; t < T; t++) {
            __m256i p = _mm256_maddubs_epi16(qv, _mm256_loadu_si256((const __m256i *)(xb[t]->qs + 32 * c)));
            isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, sv));
        }
    }
    __m256i mn = _mm256_load_si256((const __m256i *)u->mn);
    for (int t = 0; t < T; t++) {
        __m256i mins = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xb[t]->bsums), mn);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(u->d * xb[t]->d), acc[t]);
        acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(u->dmin * xb[t]->d), acc[t]);
    }
}

#define TD_KQ_GEMV(NAME, BLOCK, UNPACK)                                                                              \
    static void NAME(const td_kern_ctx *ctx, const td_matrix *w, int64_t r0, int64_t r1, const void *const *x,      \
                     int64_t n, float *y, int64_t ldy)                                                               \
    {                                                                                                                \
        (void)ctx;                                                                                                   \
        int64_t nb = w->cols / TD_QK_K;                                                                              \
        td_kq u;                                                                                                     \
        for (int64_t t0 = 0; t0 < n; t0 += TD_TOK_CHUNK) {                                                           \
            int nt = (int)(n - t0 < TD_TOK_CHUNK ? n - t0 : TD_TOK_CHUNK);                                           \
            const td_block_q8_K *xr[TD_TOK_CHUNK];                                                                   \
            for (int t = 0; t < nt; t++) xr[t] = x[t0 + t];                                                          \
            for (int64_t r = r0; r < r1; r++) {                                                                      \
                const BLOCK *row = (const BLOCK *)(w->data + (size_t)r * w->row_bytes);                             \
                __m256 acc[TD_TOK_CHUNK];                                                                            \
                for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();                                           \
                for (int64_t b = 0; b < nb; b++) {                                                                   \
                    UNPACK(row + b, &u);                                                                             \
                    const td_block_q8_K *xb[TD_TOK_CHUNK];                                                           \
                    for (int t = 0; t < nt; t++) xb[t] = xr[t] + b;                                                  \
                    int t = 0;                                                                                       \
                    for (; t + 4 <= nt; t += 4) td_kq_dot_avx2(&u, xb + t, 4, acc + t);                              \
                    switch (nt - t) {                                                                                \
                    case 3: td_kq_dot_avx2(&u, xb + t, 3, acc + t); break;                                           \
                    case 2: td_kq_dot_avx2(&u, xb + t, 2, acc + t); break;                                           \
                    case 1: td_kq_dot_avx2(&u, xb + t, 1, acc + t); break;                                           \
                    default: break;                                                                                  \
                    }                                                                                                \
                }                                                                                                    \
                for (int t = 0; t < nt; t++) y[(t0 + t) * ldy + (r - r0)] = td_hsum8(acc[t]);                        \
            }                                                                                                        \
        }                                                                                                            \
    }

TD_KQ_GEMV(td_gemv_q2_K_avx2, td_block_q2_K, td_kq_unpack_q2_K)
TD_KQ_GEMV(td_gemv_q3_K_avx2, td_block_q3_K, td_kq_unpack_q3_K)
TD_KQ_GEMV(td_gemv_q4_K_avx2, td_block_q4_K, td_kq_unpack_q4_K)
TD_KQ_GEMV(td_gemv_q5_K_avx2, td_block_q5_K, td_kq_unpack_q5_K)
TD_KQ_GEMV(td_gemv_q6_K_avx2, td_block_q6_K, td_kq_unpack_q6_K)

/* ------------------------------------------------------------------ Q8_0 */

/* Block b of 32 activations inside a Q8_K row: values and the scale of their super-block. */
static inline const int8_t *td_q8k_at(const td_block_q8_K *row, int64_t b, float *d)
{
    const td_block_q8_K *sb = row + b / 8;
    *d = sb->d;
    return sb->qs + 32 * (b % 8);
}

static inline __attribute__((always_inline)) void td_q8_0_row_avx2(const td_block_q8_0 *row, int64_t nb,
                                                                     const td_block_q8_K *const *xr, int T, float *out)
{
    __m256 acc[4];
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; b++) {
        __m256i wq = _mm256_loadu_si256((const __m256i *)row[b].qs);
        __m256i aw = _mm256_sign_epi8(wq, wq);
        float dw = td_f16_to_f32(row[b].d);
        for (int t = 0; t < T; t++) {
            float dx;
            const int8_t *xq = td_q8k_at(xr[t], b, &dx);
            __m256i sx = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xq), wq);
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * dx), acc[t]);
        }
    }
    for (int t = 0; t < T; t++) out[t] = td_hsum8(acc[t]);
}

static void td_gemv_q8_0_avx2(const td_kern_ctx *ctx, const td_matrix *w, int64_t r0, int64_t r1,
                              const void *const *x, int64_t n, float *y, int64_t ldy)
{
    (void)ctx;
    int64_t nb = w->cols / TD_QK8_0;
    for (int64_t r = r0; r < r1; r++) {
        const td_block_q8_0 *row = (const td_block_q8_0 *)(w->data + (size_t)r * w->row_bytes);
        int64_t t = 0;
        float out[4];
        const td_block_q8_K *xr[4];
        for (; t + 4 <= n; t += 4) {
            for (int j = 0; j < 4; j++) xr[j] = x[t + j];
            td_q8_0_row_avx2(row, nb, xr, 4, out);
            for (int j = 0; j < 4; j++) y[(t + j) * ldy + (r - r0)] = out[j];
        }
        for (; t < n; t++) {
            xr[0] = x[t];
            td_q8_0_row_avx2(row, nb, xr, 1, out);
            y[t * ldy + (r - r0)] = out[0];
        }
    }
}

/* ------------------------------------------------------------------ IQ4_XS */

/* The IQ4_NL/IQ4_XS value table (format data). */
static const int8_t td_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static inline __attribute__((always_inline)) void td_iq4_xs_block_avx2(const td_block_iq4_xs *blk,
                                                                         const td_block_q8_K *const *xb, int T,
                                                                         __m256 *acc)
{
    const __m128i tab128 = _mm_loadu_si128((const __m128i *)td_iq4nl_values);
    const __m256i tab = _mm256_set_m128i(tab128, tab128);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m256i isum[4];
    for (int t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) {
        __m128i q = _mm_loadu_si128((const __m128i *)(blk->qs + 16 * ib));
        __m256i idx = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
        __m256i wv = _mm256_shuffle_epi8(tab, idx);
        __m256i aw = _mm256_sign_epi8(wv, wv);
        int ls = ((blk->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((blk->scales_h >> (2 * ib)) & 3) << 4);
        __m256i sv = _mm256_set1_epi16((short)(ls - 32));
        for (int t = 0; t < T; t++) {
            __m256i sx = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(xb[t]->qs + 32 * ib)), wv);
            isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), sv));
        }
    }
    float d = td_f16_to_f32(blk->d);
    for (int t = 0; t < T; t++)
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * xb[t]->d), acc[t]);
}

static void td_gemv_iq4_xs_avx2(const td_kern_ctx *ctx, const td_matrix *w, int64_t r0, int64_t r1,
                                const void *const *x, int64_t n, float *y, int64_t ldy)
{
    (void)ctx;
    int64_t nb = w->cols / TD_QK_K;
    for (int64_t r = r0; r < r1; r++) {
        const td_block_iq4_xs *row = (const td_block_iq4_xs *)(w->data + (size_t)r * w->row_bytes);
        for (int64_t t = 0; t < n; t += 4) {
            int T = (int)(n - t < 4 ? n - t : 4);
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            for (int64_t b = 0; b < nb; b++) {
                const td_block_q8_K *xb[4];
                for (int j = 0; j < T; j++) xb[j] = (const td_block_q8_K *)x[t + j] + b;
                switch (T) {
                case 4: td_iq4_xs_block_avx2(row + b, xb, 4, acc); break;
                case 3: td_iq4_xs_block_avx2(row + b, xb, 3, acc); break;
                case 2: td_iq4_xs_block_avx2(row + b, xb, 2, acc); break;
                default: td_iq4_xs_block_avx2(row + b, xb, 1, acc); break;
                }
            }
            for (int j = 0; j < T; j++) y[(t + j) * ldy + (r - r0)] = td_hsum8(acc[j]);
        }
    }
}

const td_kernel td_kernels_avx2_quant[] = {
    {TD_TYPE_Q4_K, TD_ISA_AVX2, TD_ACT_Q8K, td_gemv_q4_K_avx2, TD_QK_K, 0, "q4_K/avx2"},
    {TD_TYPE_Q5_K, TD_ISA_AVX2, TD_ACT_Q8K, td_gemv_q5_K_avx2, TD_QK_K, 0, "q5_K/avx2"},
    {TD_TYPE_Q6_K, TD_ISA_AVX2, TD_ACT_Q8K, td_gemv_q6_K_avx2, TD_QK_K, 0, "q6_K/avx2"},
    {TD_TYPE_Q2_K, TD_ISA_AVX2, TD_ACT_Q8K, td_gemv_q2_K_avx2, TD_QK_K, 0, "q2_K/avx2"},
    {TD_TYPE_Q3_K, TD_ISA_AVX2, TD_ACT_Q8K, td_gemv_q3_K_avx2, TD_QK_K, 0, "q3_K/avx2"},
    {TD_TYPE_Q8_0, TD_ISA_AVX2, TD_ACT_Q8K, td_gemv_q8_0_avx2, TD_QK8_0, 0, "q8_0/avx2"},
    {TD_TYPE_IQ4_XS, TD_ISA_AVX2, TD_ACT_Q8K, td_gemv_iq4_xs_avx2, TD_QK_K, 0, "iq4_xs/avx2"},
    {0},
};
