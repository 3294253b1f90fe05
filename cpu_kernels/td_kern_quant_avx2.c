/* AVX2 kernels for the block-quantized weights against Q8_K activations.
 *
 * Every K-quant super-block is consumed as 8 chunks of 32 weights held as unsigned bytes (0..63) in a
 * register, with one int16 scale per maddubs lane (one or two groups of 16 per chunk):
 *     isum += madd(maddubs(q_c, x_c), scale_c)                 exact int32
 *     acc  += d*dx * isum  -  dmin*dx * sum_g mn_g * bsum_g     once per block, in float
 * where the second term carries the mins (Q2_K, Q4_K, Q5_K) or the offset of unsigned storage
 * (Q3_K: q - 4, Q6_K: q - 32). Weights are unpacked in registers, never stored. Q8_0 and IQ4_XS are
 * signed and use the sign trick (|w| times x with w's sign). T tokens (a constant at each call, up to 4)
 * share each unpacked chunk. */
#include "td_blocks.h"
#include "td_float.h"
#include "td_kern.h"
#include "td_kern_avx2.h"

#include <immintrin.h>
#include <stdalign.h>
#include <string.h>

#define TD_INLINE static inline __attribute__((always_inline))
/* Software prefetch this far ahead of the row being read: the hardware prefetchers alone leave one core
 * at 27 GB/s from memory, this lets it read at its in-cache speed (32 GB/s, Zen 5). */
#ifndef TD_PREFETCH_BYTES
#define TD_PREFETCH_BYTES 4096
#endif

/* f16 -> f32 with the F16C instruction (every CPU with these kernels has it) */
#define td_h2f(h) _cvtsh_ss(h)

/* Shuffle masks: td_bcast16[j] repeats int16 element j (of a 128-bit lane) over the lane. */
static const alignas(32) uint8_t td_bcast16[8][32] = {
#define TD_B(j) {2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, \
                 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, \
                 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1}
    TD_B(0), TD_B(1), TD_B(2), TD_B(3), TD_B(4), TD_B(5), TD_B(6), TD_B(7)
#undef TD_B
};
/* td_pair16[k]: low lane repeats element 2k, high lane element 2k+1 (two groups of 16 in one chunk). */
static const alignas(32) uint8_t td_pair16[4][32] = {
#define TD_P(a, b) {2 * a, 2 * a + 1, 2 * a, 2 * a + 1, 2 * a, 2 * a + 1, 2 * a, 2 * a + 1, 2 * a, 2 * a + 1, 2 * a, 2 * a + 1, \
                    2 * a, 2 * a + 1, 2 * a, 2 * a + 1, 2 * b, 2 * b + 1, 2 * b, 2 * b + 1, 2 * b, 2 * b + 1, 2 * b, 2 * b + 1, \
                    2 * b, 2 * b + 1, 2 * b, 2 * b + 1, 2 * b, 2 * b + 1, 2 * b, 2 * b + 1}
    TD_P(0, 1), TD_P(2, 3), TD_P(4, 5), TD_P(6, 7)
#undef TD_P
};

TD_INLINE __m256i td_mask(const uint8_t *m) { return _mm256_load_si256((const __m256i *)m); }

/* Per-chunk scale vectors from 16 per-group int16 scales (s16: groups 0..15). */
typedef struct td_scales16 {
    __m256i lo, hi; /* groups 0-7 and 8-15, each broadcast to both 128-bit lanes */
} td_scales16;

TD_INLINE td_scales16 td_scales16_make(__m256i s16)
{
    td_scales16 s = {_mm256_permute2x128_si256(s16, s16, 0x00), _mm256_permute2x128_si256(s16, s16, 0x11)};
    return s;
}

/* Chunk c (0..7) covers groups 2c and 2c+1. */
TD_INLINE __m256i td_scales16_chunk(const td_scales16 *s, int c)
{
    return _mm256_shuffle_epi8(c < 4 ? s->lo : s->hi, td_mask(td_pair16[c % 4]));
}

TD_INLINE void td_acc_block(__m256 *acc, __m256i isum, __m256i mins, float d, float dmin, float dx)
{
    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * dx), *acc);
    *acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(dmin * dx), *acc);
}

TD_INLINE __m256i td_ldx(const td_block_q8_K *x, int off) { return _mm256_loadu_si256((const __m256i *)(x->qs + off)); }
TD_INLINE __m256i td_bsums(const td_block_q8_K *x) { return _mm256_loadu_si256((const __m256i *)x->bsums); }

/* ------------------------------------------------------------------ Q4_K / Q5_K */


/* hbits: Q5_K's qh (NULL for Q4_K). */
TD_INLINE void td_k45_block(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, float d, float dmin,
                            const td_block_q8_K *const *xb, int T, __m256 *acc)
{
    uint64_t sc, mn;
    td_k4_scales(scales, &sc, &mn);
    __m256i S = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
    __m128i m8 = _mm_cvtsi64_si128((long long)mn);
    __m256i M = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256i hb = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    __m256i isum[4];
    TD_UNROLL
    for (int t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
    TD_UNROLL
    for (int j = 0; j < 4; j++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (qh) {
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * j), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * j + 1), one), 4));
        }
        __m256i slo = _mm256_shuffle_epi8(S, td_mask(td_bcast16[2 * j]));
        __m256i shi = _mm256_shuffle_epi8(S, td_mask(td_bcast16[2 * j + 1]));
        TD_UNROLL
        for (int t = 0; t < T; t++) {
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, td_ldx(xb[t], 64 * j)), slo);
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, td_ldx(xb[t], 64 * j + 32)), shi);
            isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(p0, p1));
        }
    }
    TD_UNROLL
    for (int t = 0; t < T; t++) td_acc_block(&acc[t], isum[t], _mm256_madd_epi16(td_bsums(xb[t]), M), d, dmin, xb[t]->d);
}

TD_INLINE void td_q4_K_block(const void *blk, const td_block_q8_K *const *xb, int T, __m256 *acc)
{
    const td_block_q4_K *b = blk;
    td_k45_block(b->scales, b->qs, NULL, td_h2f(b->d), td_h2f(b->dmin), xb, T, acc);
}

TD_INLINE void td_q5_K_block(const void *blk, const td_block_q8_K *const *xb, int T, __m256 *acc)
{
    const td_block_q5_K *b = blk;
    td_k45_block(b->scales, b->qs, b->qh, td_h2f(b->d), td_h2f(b->dmin), xb, T, acc);
}

/* ------------------------------------------------------------------ Q6_K */

TD_INLINE void td_q6_K_block(const void *blk, const td_block_q8_K *const *xb, int T, __m256 *acc)
{
    const td_block_q6_K *b = blk;
    __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    td_scales16 S = td_scales16_make(s16);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    __m256i isum[4];
    TD_UNROLL
    for (int t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
    TD_UNROLL
    for (int n = 0; n < 2; n++) {
        __m256i la = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * n));
        __m256i lb = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * n + 32));
        __m256i h = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * n));
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(la, m4), _mm256_slli_epi16(_mm256_and_si256(h, m2), 4));
        q[1] = _mm256_or_si256(_mm256_and_si256(lb, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m2), 4));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, 4), m4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m2), 4));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, 4), m4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m2), 4));
        TD_UNROLL
        for (int k = 0; k < 4; k++) {
            __m256i sv = td_scales16_chunk(&S, 4 * n + k);
            TD_UNROLL
            for (int t = 0; t < T; t++)
                isum[t] = _mm256_add_epi32(
                    isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], td_ldx(xb[t], 128 * n + 32 * k)), sv));
        }
    }
    float d = td_h2f(b->d);
    __m256i off = _mm256_slli_epi16(s16, 5); /* stored q = value + 32 */
    TD_UNROLL
    for (int t = 0; t < T; t++) td_acc_block(&acc[t], isum[t], _mm256_madd_epi16(td_bsums(xb[t]), off), d, d, xb[t]->d);
}

/* ------------------------------------------------------------------ Q2_K / Q3_K */

/* Chunk 4n+k of the 2-bit fields: bits 2k..2k+1 of qs[32n .. 32n+31]. */
TD_INLINE void td_2bit_chunks(const uint8_t *qs, int n, __m256i q[4])
{
    const __m256i m2 = _mm256_set1_epi8(3);
    __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * n));
    q[0] = _mm256_and_si256(v, m2);
    q[1] = _mm256_and_si256(_mm256_srli_epi16(v, 2), m2);
    q[2] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m2);
    q[3] = _mm256_and_si256(_mm256_srli_epi16(v, 6), m2);
}

TD_INLINE void td_q2_K_block(const void *blk, const td_block_q8_K *const *xb, int T, __m256 *acc)
{
    const td_block_q2_K *b = blk;
    __m128i s = _mm_loadu_si128((const __m128i *)b->scales);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    td_scales16 S = td_scales16_make(_mm256_cvtepu8_epi16(_mm_and_si128(s, m4)));
    __m256i M = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), m4));
    __m256i isum[4];
    TD_UNROLL
    for (int t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
    TD_UNROLL
    for (int n = 0; n < 2; n++) {
        __m256i q[4];
        td_2bit_chunks(b->qs, n, q);
        TD_UNROLL
        for (int k = 0; k < 4; k++) {
            __m256i sv = td_scales16_chunk(&S, 4 * n + k);
            TD_UNROLL
            for (int t = 0; t < T; t++)
                isum[t] = _mm256_add_epi32(
                    isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], td_ldx(xb[t], 128 * n + 32 * k)), sv));
        }
    }
    float d = td_h2f(b->d), dmin = td_h2f(b->dmin);
    TD_UNROLL
    for (int t = 0; t < T; t++) td_acc_block(&acc[t], isum[t], _mm256_madd_epi16(td_bsums(xb[t]), M), d, dmin, xb[t]->d);
}

/* Q3_K's 16 signed scales: low 4 bits in bytes 0-7 (groups 8-15 in the high nibbles), high 2 bits of
 * group 4q+r in bits 2q..2q+1 of byte 8+r; stored with +32. */
TD_INLINE __m256i td_q3_K_scales(const uint8_t *s)
{
    __m128i v = _mm_loadl_epi64((const __m128i *)s);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m128i lo = _mm_unpacklo_epi64(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
    uint32_t w;
    memcpy(&w, s + 8, 4);
    __m128i hi = _mm_setr_epi32((int)w, (int)(w >> 2), (int)(w >> 4), (int)(w >> 6));
    hi = _mm_slli_epi16(_mm_and_si128(hi, _mm_set1_epi8(3)), 4);
    return _mm256_cvtepi8_epi16(_mm_sub_epi8(_mm_or_si128(lo, hi), _mm_set1_epi8(32)));
}

TD_INLINE void td_q3_K_block(const void *blk, const td_block_q8_K *const *xb, int T, __m256 *acc)
{
    const td_block_q3_K *b = blk;
    __m256i s16 = td_q3_K_scales(b->scales);
    td_scales16 S = td_scales16_make(s16);
    const __m256i one = _mm256_set1_epi8(1);
    __m256i hm = _mm256_loadu_si256((const __m256i *)b->hmask);
    __m256i isum[4];
    TD_UNROLL
    for (int t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
    TD_UNROLL
    for (int n = 0; n < 2; n++) {
        __m256i q[4];
        td_2bit_chunks(b->qs, n, q);
        TD_UNROLL
        for (int k = 0; k < 4; k++) {
            int c = 4 * n + k; /* the third bit is bit c of hmask; set means +4 (stored as value + 4) */
            __m256i h = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, c), one), 2);
            __m256i qc = _mm256_or_si256(q[k], h);
            __m256i sv = td_scales16_chunk(&S, c);
            TD_UNROLL
            for (int t = 0; t < T; t++)
                isum[t] = _mm256_add_epi32(
                    isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(qc, td_ldx(xb[t], 32 * c)), sv));
        }
    }
    float d = td_h2f(b->d);
    __m256i off = _mm256_slli_epi16(s16, 2);
    TD_UNROLL
    for (int t = 0; t < T; t++) td_acc_block(&acc[t], isum[t], _mm256_madd_epi16(td_bsums(xb[t]), off), d, d, xb[t]->d);
}

/* ------------------------------------------------------------------ IQ4_XS */

/* The IQ4_NL/IQ4_XS value table (format data). */
static const alignas(16) int8_t td_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                       1,    13,   25,  38,  53,  69,  89,  113};

TD_INLINE void td_iq4_xs_block(const void *blk, const td_block_q8_K *const *xb, int T, __m256 *acc)
{
    const td_block_iq4_xs *b = blk;
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)td_iq4nl_values));
    const __m128i m4 = _mm_set1_epi8(0x0F);
    /* 6-bit scales of the 8 groups, minus 32 */
    uint32_t sl;
    memcpy(&sl, b->scales_l, 4);
    __m128i lo = _mm_cvtsi32_si128((int)sl);
    lo = _mm_and_si128(_mm_unpacklo_epi8(lo, _mm_srli_epi16(lo, 4)), m4); /* groups 0..7 low 4 bits */
    __m128i hi = _mm_setr_epi16((short)b->scales_h, (short)(b->scales_h >> 2), (short)(b->scales_h >> 4),
                                (short)(b->scales_h >> 6), (short)(b->scales_h >> 8), (short)(b->scales_h >> 10),
                                (short)(b->scales_h >> 12), (short)(b->scales_h >> 14));
    hi = _mm_slli_epi16(_mm_and_si128(hi, _mm_set1_epi16(3)), 4);
    __m256i S = _mm256_broadcastsi128_si256(_mm_sub_epi16(_mm_or_si128(_mm_cvtepu8_epi16(lo), hi), _mm_set1_epi16(32)));
    __m256i isum[4];
    TD_UNROLL
    for (int t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
    TD_UNROLL
    for (int ib = 0; ib < 8; ib++) {
        __m128i q = _mm_loadu_si128((const __m128i *)(b->qs + 16 * ib));
        __m256i idx = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
        __m256i wv = _mm256_shuffle_epi8(tab, idx);
        __m256i aw = _mm256_sign_epi8(wv, wv);
        __m256i sv = _mm256_shuffle_epi8(S, td_mask(td_bcast16[ib]));
        TD_UNROLL
        for (int t = 0; t < T; t++) {
            __m256i sx = _mm256_sign_epi8(td_ldx(xb[t], 32 * ib), wv);
            isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), sv));
        }
    }
    float d = td_h2f(b->d);
    TD_UNROLL
    for (int t = 0; t < T; t++)
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * xb[t]->d), acc[t]);
}

/* ------------------------------------------------------------------ the row loops */

/* One row against T tokens (1 or 2): blocks of `block_bytes`, each handled by BLOCK for 2T virtual tokens,
 * the T main activation rows and their T residual rows (nb blocks further), whose sums are added. */
#define TD_ROW_T(NAME, BLOCK, BLOCK_BYTES)                                                                           \
    TD_INLINE void NAME(const uint8_t *row, int64_t nb, const void *const *x, int T, float *out)                   \
    {                                                                                                                \
        __m256 acc[4];                                                                                               \
        const td_block_q8_K *xb[4];                                                                                  \
        TD_UNROLL                                                                                                    \
        for (int t = 0; t < T; t++) {                                                                                \
            acc[t] = acc[T + t] = _mm256_setzero_ps();                                                               \
            xb[t] = x[t];                                                                                            \
            xb[T + t] = xb[t] + nb;                                                                                  \
        }                                                                                                            \
        for (int64_t b = 0; b < nb; b++) {                                                                           \
            for (size_t o = 0; o < (BLOCK_BYTES); o += 64)                                                           \
                _mm_prefetch((const char *)row + (size_t)b * (BLOCK_BYTES) + TD_PREFETCH_BYTES + o, _MM_HINT_T0);    \
            BLOCK(row + (size_t)b * (BLOCK_BYTES), xb, 2 * T, acc);                                                  \
            TD_UNROLL                                                                                                \
            for (int t = 0; t < 2 * T; t++) xb[t]++;                                                                 \
        }                                                                                                            \
        TD_UNROLL                                                                                                    \
        for (int t = 0; t < T; t++) out[t] = td_hsum8(_mm256_add_ps(acc[t], acc[T + t]));                           \
    }

#define TD_GEMV(NAME, ROW)                                                                                           \
    static void NAME(const td_kern_ctx *ctx, const td_matrix *w, int64_t r0, int64_t r1, const void *const *x,      \
                     int64_t n, float *y, int64_t ldy)                                                               \
    {                                                                                                                \
        (void)ctx;                                                                                                   \
        int64_t nb = w->cols / TD_QK_K;                                                                              \
        float out[2] = {0, 0};                                                                                       \
        for (int64_t r = r0; r < r1; r++) {                                                                          \
            const uint8_t *row = w->data + (size_t)r * w->row_bytes;                                                 \
            for (int64_t t = 0; t < n; t += 2) {                                                                     \
                int T = (int)(n - t < 2 ? n - t : 2);                                                                \
                if (T == 2) ROW(row, nb, x + t, 2, out);                                                             \
                else ROW(row, nb, x + t, 1, out);                                                                    \
                for (int j = 0; j < T; j++) y[(t + j) * ldy + (r - r0)] = out[j];                                    \
            }                                                                                                        \
        }                                                                                                            \
    }

TD_ROW_T(td_row_q2_K, td_q2_K_block, sizeof(td_block_q2_K))
TD_ROW_T(td_row_q3_K, td_q3_K_block, sizeof(td_block_q3_K))
TD_ROW_T(td_row_q4_K, td_q4_K_block, sizeof(td_block_q4_K))
TD_ROW_T(td_row_q5_K, td_q5_K_block, sizeof(td_block_q5_K))
TD_ROW_T(td_row_q6_K, td_q6_K_block, sizeof(td_block_q6_K))
TD_ROW_T(td_row_iq4_xs, td_iq4_xs_block, sizeof(td_block_iq4_xs))
TD_GEMV(td_gemv_q2_K_avx2, td_row_q2_K)
TD_GEMV(td_gemv_q3_K_avx2, td_row_q3_K)
TD_GEMV(td_gemv_q4_K_avx2, td_row_q4_K)
TD_GEMV(td_gemv_q5_K_avx2, td_row_q5_K)
TD_GEMV(td_gemv_q6_K_avx2, td_row_q6_K)
TD_GEMV(td_gemv_iq4_xs_avx2, td_row_iq4_xs)

/* ------------------------------------------------------------------ Q8_0 */

/* Q8_0 blocks of 32 read 32-value pieces of the Q8_K activation rows (8 per block, partial last block);
 * 2T virtual tokens: the T main rows and their residual rows (nbk blocks further). */
TD_INLINE void td_row_q8_0(const uint8_t *rowp, int64_t nb, int64_t nbk, const void *const *x, int T, float *out)
{
    const td_block_q8_0 *row = (const td_block_q8_0 *)rowp;
    __m256 acc[4];
    const td_block_q8_K *xr[4];
    TD_UNROLL
    for (int t = 0; t < T; t++) {
        acc[t] = acc[T + t] = _mm256_setzero_ps();
        xr[t] = x[t];
        xr[T + t] = xr[t] + nbk;
    }
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; b++) {
        _mm_prefetch((const char *)(row + b) + TD_PREFETCH_BYTES, _MM_HINT_T0);
        __m256i wq = _mm256_loadu_si256((const __m256i *)row[b].qs);
        __m256i aw = _mm256_sign_epi8(wq, wq);
        float dw = td_h2f(row[b].d);
        TD_UNROLL
        for (int t = 0; t < 2 * T; t++) {
            const td_block_q8_K *sb = xr[t] + b / 8;
            __m256i sx = _mm256_sign_epi8(td_ldx(sb, 32 * (int)(b % 8)), wq);
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * sb->d), acc[t]);
        }
    }
    TD_UNROLL
    for (int t = 0; t < T; t++) out[t] = td_hsum8(_mm256_add_ps(acc[t], acc[T + t]));
}

static void td_gemv_q8_0_avx2(const td_kern_ctx *ctx, const td_matrix *w, int64_t r0, int64_t r1,
                              const void *const *x, int64_t n, float *y, int64_t ldy)
{
    (void)ctx;
    int64_t nb = w->cols / TD_QK8_0, nbk = (w->cols + TD_QK_K - 1) / TD_QK_K;
    float out[2] = {0, 0};
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + (size_t)r * w->row_bytes;
        for (int64_t t = 0; t < n; t += 2) {
            int T = (int)(n - t < 2 ? n - t : 2);
            if (T == 2) td_row_q8_0(row, nb, nbk, x + t, 2, out);
            else td_row_q8_0(row, nb, nbk, x + t, 1, out);
            for (int j = 0; j < T; j++) y[(t + j) * ldy + (r - r0)] = out[j];
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
