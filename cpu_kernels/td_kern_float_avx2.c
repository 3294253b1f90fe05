/* AVX2 kernels for float weights (f32, f16, bf16) against float32 activations, plus the AVX2 helpers
 * of the activation formats (Q8_K quantization, bf16 rounding), dot and axpy. */
#include "td_blocks.h"
#include "td_float.h"
#include "td_kern.h"
#include "td_kern_avx2.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

float td_dot_f32_avx2(const float *a, const float *b, int64_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = td_hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void td_axpy_f32_avx2(float *y, float a, const float *x, int64_t n)
{
    __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* e^x for x in [-87, 88] (clamped outside): x = n ln2 + r with |r| <= ln2/2, e^r by its degree-6 Taylor-like
 * minimax polynomial (Cephes' coefficients), 2^n added to the exponent. About 1 ulp. */
static inline __m256 td_exp_avx2(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
}

void td_silu_mul_avx2(float *h, const float *g, const float *u, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i);
        __m256 s = _mm256_div_ps(gv, _mm256_add_ps(one, td_exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
        _mm256_storeu_ps(h + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* One full Q8_K block, with the rounding of td_act_q8k_ref: lrintf(x * (127 / amax)), nearest even. */
static void td_q8k_block_avx2(const float *xb, td_block_q8_K *blk)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 mx = _mm256_setzero_ps();
    for (int i = 0; i < TD_QK_K; i += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(xb + i), absmask));
    float amax = td_hmax8(mx);
    float iscale = amax > 0.0f ? 127.0f / amax : 0.0f;
    blk->d = amax / 127.0f;
    __m256 is = _mm256_set1_ps(iscale);
    int32_t sums4[64];
    for (int i = 0; i < TD_QK_K; i += 32) {
        __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i), is));
        __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 8), is));
        __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 16), is));
        __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 24), is));
        /* packs interleave the 128-bit lanes; the permute restores element order */
        __m256i p16a = _mm256_packs_epi32(q0, q1), p16b = _mm256_packs_epi32(q2, q3);
        __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        p8 = _mm256_max_epi8(_mm256_min_epi8(p8, _mm256_set1_epi8(127)), _mm256_set1_epi8(-127));
        _mm256_storeu_si256((__m256i *)(blk->qs + i), p8);
        __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), p8);
        _mm256_storeu_si256((__m256i *)(sums4 + i / 4), _mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
    }
    for (int g = 0; g < TD_QK_K / 16; g++)
        blk->bsums[g] = (int16_t)(sums4[4 * g] + sums4[4 * g + 1] + sums4[4 * g + 2] + sums4[4 * g + 3]);
}

void td_act_q8k_avx2(const float *x, int64_t cols, int64_t b0, int64_t b1, void *dst)
{
    td_block_q8_K *row = dst;
    int64_t nb = (cols + TD_QK_K - 1) / TD_QK_K;
    float r[TD_QK_K], padded[TD_QK_K];
    for (int64_t b = b0; b < b1; b++) {
        int64_t c0 = b * TD_QK_K;
        const float *xb = x + c0;
        if (cols - c0 < TD_QK_K) {
            /* a short last block: zeros leave the scale, the levels and the sums as the reference has them */
            memset(padded, 0, sizeof padded);
            memcpy(padded, xb, (size_t)(cols - c0) * sizeof(float));
            xb = padded;
        }
        td_q8k_block_avx2(xb, &row[b]);
        /* the residual, as the reference computes it: x - d * q, a product then a difference */
        __m256 d = _mm256_set1_ps(row[b].d);
        for (int i = 0; i < TD_QK_K; i += 8) {
            __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row[b].qs + i))));
            _mm256_storeu_ps(r + i, _mm256_sub_ps(_mm256_loadu_ps(xb + i), _mm256_mul_ps(d, q)));
        }
        td_q8k_block_avx2(r, &row[nb + b]);
    }
}

/* Round to nearest even like td_f32_to_bf16 (NaN kept quiet). */
void td_act_bf16_avx2(const float *x, int64_t cols, void *dst)
{
    uint16_t *o = dst;
    int64_t i = 0;
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    for (; i + 8 <= cols; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256i u = _mm256_castps_si256(v);
        __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(u, 16), one)));
        __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        r = _mm256_blendv_epi8(r, _mm256_or_si256(u, _mm256_set1_epi32(0x400000)), nan);
        r = _mm256_srli_epi32(r, 16);
        __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storeu_si128((__m128i *)(o + i), packed);
    }
    for (; i < cols; i++) o[i] = td_f32_to_bf16(x[i]);
    int64_t padded = (cols + 31) / 32 * 32;
    for (; i < padded; i++) o[i] = 0;
}

/* ------------------------------------------------------------------ float weights */

static inline __m256 td_ld8_f32(const uint8_t *row, int64_t c) { return _mm256_loadu_ps((const float *)row + c); }
static inline __m256 td_ld8_f16(const uint8_t *row, int64_t c)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * c)));
}
static inline __m256 td_ld8_bf16(const uint8_t *row, int64_t c)
{
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * c)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
static inline float td_ld1_f32(const uint8_t *row, int64_t c) { return td_load_f32(row + 4 * c); }
static inline float td_ld1_f16(const uint8_t *row, int64_t c)
{
    uint16_t h;
    memcpy(&h, row + 2 * c, 2);
    return td_f16_to_f32(h);
}
static inline float td_ld1_bf16(const uint8_t *row, int64_t c)
{
    uint16_t h;
    memcpy(&h, row + 2 * c, 2);
    return td_bf16_to_f32(h);
}

/* R rows x T tokens, all columns; R and T are constants at each call so the accumulators stay in registers. */
#define TD_FLOAT_TILE(NAME, LD8, LD1)                                                                                \
    static inline __attribute__((always_inline)) void NAME(const td_matrix *w, int64_t r, int R, const void *const *x, \
                                                           int64_t t0, int T, float *y, int64_t ldy, int64_t r0)     \
    {                                                                                                                \
        __m256 acc[8][2];                                                                                            \
        const uint8_t *rows[8];                                                                                      \
        TD_UNROLL \
        for (int i = 0; i < R; i++) {                                                                                \
            rows[i] = w->data + (size_t)(r + i) * w->row_bytes;                                                      \
            TD_UNROLL \
            for (int j = 0; j < T; j++) acc[i][j] = _mm256_setzero_ps();                                             \
        }                                                                                                            \
        int64_t c = 0;                                                                                               \
        for (; c + 8 <= w->cols; c += 8) {                                                                           \
            __m256 xv[2];                                                                                            \
            TD_UNROLL \
            for (int j = 0; j < T; j++) xv[j] = _mm256_loadu_ps((const float *)x[t0 + j] + c);                     \
            TD_UNROLL \
            for (int i = 0; i < R; i++) {                                                                            \
                __m256 wv = LD8(rows[i], c);                                                                         \
                TD_UNROLL \
                for (int j = 0; j < T; j++) acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);                      \
            }                                                                                                        \
        }                                                                                                            \
        TD_UNROLL \
        for (int i = 0; i < R; i++)                                                                                  \
            TD_UNROLL \
            for (int j = 0; j < T; j++) {                                                                            \
                const float *xt = (const float *)x[t0 + j];                                                          \
                float s = td_hsum8(acc[i][j]);                                                                       \
                for (int64_t k = c; k < w->cols; k++) s += LD1(rows[i], k) * xt[k];                                 \
                y[(t0 + j) * ldy + (r + i - r0)] = s;                                                                \
            }                                                                                                        \
    }

#define TD_FLOAT_GEMV(NAME, TILE)                                                                                    \
    static void NAME(const td_kern_ctx *ctx, const td_matrix *w, int64_t r0, int64_t r1, const void *const *x,      \
                     int64_t n, float *y, int64_t ldy)                                                               \
    {                                                                                                                \
        (void)ctx;                                                                                                   \
        int64_t t = 0;                                                                                               \
        for (; t + 2 <= n; t += 2) {                                                                                 \
            int64_t r = r0;                                                                                          \
            for (; r + 4 <= r1; r += 4) TILE(w, r, 4, x, t, 2, y, ldy, r0);                                          \
            for (; r < r1; r++) TILE(w, r, 1, x, t, 2, y, ldy, r0);                                                  \
        }                                                                                                            \
        if (t < n) {                                                                                                 \
            int64_t r = r0;                                                                                          \
            for (; r + 8 <= r1; r += 8) TILE(w, r, 8, x, t, 1, y, ldy, r0);                                          \
            for (; r < r1; r++) TILE(w, r, 1, x, t, 1, y, ldy, r0);                                                  \
        }                                                                                                            \
    }

TD_FLOAT_TILE(td_tile_f32, td_ld8_f32, td_ld1_f32)
TD_FLOAT_TILE(td_tile_f16, td_ld8_f16, td_ld1_f16)
TD_FLOAT_TILE(td_tile_bf16, td_ld8_bf16, td_ld1_bf16)
TD_FLOAT_GEMV(td_gemv_f32_avx2, td_tile_f32)
TD_FLOAT_GEMV(td_gemv_f16_avx2, td_tile_f16)
TD_FLOAT_GEMV(td_gemv_bf16_avx2, td_tile_bf16)

const td_kernel td_kernels_avx2_float[] = {
    {TD_TYPE_F32, TD_ISA_AVX2, TD_ACT_F32, td_gemv_f32_avx2, 1, 0, "f32/avx2"},
    {TD_TYPE_F16, TD_ISA_AVX2, TD_ACT_F32, td_gemv_f16_avx2, 1, 0, "f16/avx2"},
    {TD_TYPE_BF16, TD_ISA_AVX2, TD_ACT_F32, td_gemv_bf16_avx2, 1, 0, "bf16/avx2"},
    {0},
};
