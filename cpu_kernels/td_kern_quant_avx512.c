/* AVX-512 (BW + VNNI) kernels for the block-quantized weights against Q8_K activations.
 *
 * Two weight rows share each zmm register: row A in the low 256 bits, row B in the high 256 bits, so
 * every 32-byte chunk of a token's activations is loaded once, broadcast to both halves, and the
 * per-chunk work is that of the AVX2 kernels at twice the width:
 *     p = maddubs(q_c, x_c);  isum = dpwssd(isum, p, scale_c)      (VNNI: multiply-add into int32)
 * The block math is the same as td_kern_quant_avx2.c (see there); accumulators of a token hold row A in
 * lanes 0-7 and row B in lanes 8-15. An odd last row is paired with itself. */
#include "td_blocks.h"
#include "td_float.h"
#include "td_kern.h"
#include "td_kern_avx2.h"

#include <immintrin.h>
#include <stdalign.h>
#include <string.h>

#define TD_INLINE static inline __attribute__((always_inline))

/* f16 -> f32 with the F16C instruction (every CPU with these kernels has it) */
#define td_h2f(h) _cvtsh_ss(h)
#define TD_T_MAX 8 /* virtual tokens per pass: up to 4 tokens, each with its residual activation row */
/* Software prefetch this far ahead of each row being read. On the AMX host 4 KiB measured 15% faster
 * decode than 4 blocks (576 bytes for Q4_K), which itself was 20% faster than no prefetch. */
#ifndef TD_PREFETCH_BYTES
#define TD_PREFETCH_BYTES 4096
#endif

/* 512-bit shuffle masks (the 256-bit pattern twice): td_bc[j] repeats int16 element j of each 128-bit
 * lane; td_pr[k] repeats element 2k in the low lane of each 256-bit half and 2k+1 in the high lane. */
static const alignas(64) uint8_t td_bc[8][64] = {
#define TD_B16(j) 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, \
                  2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1
#define TD_B(j) {TD_B16(j), TD_B16(j), TD_B16(j), TD_B16(j)}
    TD_B(0), TD_B(1), TD_B(2), TD_B(3), TD_B(4), TD_B(5), TD_B(6), TD_B(7)
#undef TD_B
};
static const alignas(64) uint8_t td_pr[4][64] = {
#define TD_P(a, b) {TD_B16(a), TD_B16(b), TD_B16(a), TD_B16(b)}
    TD_P(0, 1), TD_P(2, 3), TD_P(4, 5), TD_P(6, 7)
#undef TD_P
#undef TD_B16
};

TD_INLINE __m512i td_mask(const uint8_t *m) { return _mm512_load_si512((const void *)m); }

/* [a | b] from two 256-bit pieces. */
TD_INLINE __m512i td_join(__m256i a, __m256i b) { return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1); }
TD_INLINE __m512i td_load2(const uint8_t *a, const uint8_t *b)
{
    return td_join(_mm256_loadu_si256((const __m256i *)a), _mm256_loadu_si256((const __m256i *)b));
}
/* 128-bit pieces: lanes [a, a, b, b]. */
TD_INLINE __m512i td_join4(__m128i a, __m128i b)
{
    return td_join(_mm256_broadcastsi128_si256(a), _mm256_broadcastsi128_si256(b));
}
/* A token's 32 activations at `off`, in both halves. */
TD_INLINE __m512i td_ldx(const td_block_q8_K *x, int off)
{
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qs + off)));
}
TD_INLINE __m512i td_bsums(const td_block_q8_K *x)
{
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)x->bsums));
}

/* acc += [dA | dB] * dx * isum - [mA | mB] * dx * mins */
TD_INLINE void td_acc2(__m512 *acc, __m512i isum, __m512i mins, __m512 d2, __m512 m2, float dx)
{
    __m512 vx = _mm512_set1_ps(dx);
    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d2, vx), *acc);
    *acc = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mins), _mm512_mul_ps(m2, vx), *acc);
}

TD_INLINE __m512 td_pair_ps(float a, float b)
{
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(a)), _mm256_set1_ps(b), 1);
}

/* Scale vectors of chunk c for 16 per-group scales of two rows (s16a, s16b: int16 x 16). */
typedef struct td_sc2 {
    __m512i lo, hi; /* groups 0-7 / 8-15: [A, A, B, B] 128-bit lanes */
} td_sc2;

TD_INLINE td_sc2 td_sc2_make(__m256i a, __m256i b)
{
    td_sc2 s = {td_join4(_mm256_castsi256_si128(a), _mm256_castsi256_si128(b)),
                td_join4(_mm256_extracti128_si256(a, 1), _mm256_extracti128_si256(b, 1))};
    return s;
}
TD_INLINE __m512i td_sc2_chunk(const td_sc2 *s, int c) { return _mm512_shuffle_epi8(c < 4 ? s->lo : s->hi, td_mask(td_pr[c % 4])); }

/* ------------------------------------------------------------------ Q4_K / Q5_K */


TD_INLINE __m128i td_u64_to_i16(uint64_t v) { return _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)v)); }
TD_INLINE __m256i td_u64_dup_i16(uint64_t v)
{
    __m128i m = _mm_cvtsi64_si128((long long)v);
    return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m));
}

TD_INLINE void td_k45_pair(const uint8_t *scA, const uint8_t *scB, const uint8_t *qsA, const uint8_t *qsB,
                           const uint8_t *qhA, const uint8_t *qhB, __m512 d2, __m512 m2,
                           const td_block_q8_K *const *xb, int T, __m512 *acc)
{
    uint64_t sa, ma, sb, mb;
    td_k4_scales(scA, &sa, &ma);
    td_k4_scales(scB, &sb, &mb);
    __m512i S = td_join4(td_u64_to_i16(sa), td_u64_to_i16(sb));
    __m512i M = td_join(td_u64_dup_i16(ma), td_u64_dup_i16(mb));
    const __m512i m4 = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1);
    __m512i hb = qhA ? td_load2(qhA, qhB) : _mm512_setzero_si512();
    __m512i isum[TD_T_MAX];
    TD_UNROLL
    for (int t = 0; t < T; t++) isum[t] = _mm512_setzero_si512();
    TD_UNROLL
    for (int j = 0; j < 4; j++) {
        __m512i v = td_load2(qsA + 32 * j, qsB + 32 * j);
        __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        if (qhA) {
            lo = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hb, 2 * j), one), 4));
            hi = _mm512_or_si512(hi, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hb, 2 * j + 1), one), 4));
        }
        __m512i slo = _mm512_shuffle_epi8(S, td_mask(td_bc[2 * j])), shi = _mm512_shuffle_epi8(S, td_mask(td_bc[2 * j + 1]));
        TD_UNROLL
        for (int t = 0; t < T; t++) {
            isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(lo, td_ldx(xb[t], 64 * j)), slo);
            isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(hi, td_ldx(xb[t], 64 * j + 32)), shi);
        }
    }
    TD_UNROLL
    for (int t = 0; t < T; t++) td_acc2(&acc[t], isum[t], _mm512_madd_epi16(td_bsums(xb[t]), M), d2, m2, xb[t]->d);
}

TD_INLINE void td_q4_K_pair(const uint8_t *a, const uint8_t *b, const td_block_q8_K *const *xb, int T, __m512 *acc)
{
    const td_block_q4_K *A = (const void *)a, *B = (const void *)b;
    td_k45_pair(A->scales, B->scales, A->qs, B->qs, NULL, NULL, td_pair_ps(td_h2f(A->d), td_h2f(B->d)),
                td_pair_ps(td_h2f(A->dmin), td_h2f(B->dmin)), xb, T, acc);
}

TD_INLINE void td_q5_K_pair(const uint8_t *a, const uint8_t *b, const td_block_q8_K *const *xb, int T, __m512 *acc)
{
    const td_block_q5_K *A = (const void *)a, *B = (const void *)b;
    td_k45_pair(A->scales, B->scales, A->qs, B->qs, A->qh, B->qh, td_pair_ps(td_h2f(A->d), td_h2f(B->d)),
                td_pair_ps(td_h2f(A->dmin), td_h2f(B->dmin)), xb, T, acc);
}

/* ------------------------------------------------------------------ Q6_K */

TD_INLINE void td_q6_K_pair(const uint8_t *a, const uint8_t *b, const td_block_q8_K *const *xb, int T, __m512 *acc)
{
    const td_block_q6_K *A = (const void *)a, *B = (const void *)b;
    __m256i sa = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)A->scales));
    __m256i sb = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)B->scales));
    td_sc2 S = td_sc2_make(sa, sb);
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    __m512i isum[TD_T_MAX];
    TD_UNROLL
    for (int t = 0; t < T; t++) isum[t] = _mm512_setzero_si512();
    TD_UNROLL
    for (int n = 0; n < 2; n++) {
        __m512i la = td_load2(A->ql + 64 * n, B->ql + 64 * n), lb = td_load2(A->ql + 64 * n + 32, B->ql + 64 * n + 32);
        __m512i h = td_load2(A->qh + 32 * n, B->qh + 32 * n);
        __m512i q[4];
        q[0] = _mm512_or_si512(_mm512_and_si512(la, m4), _mm512_slli_epi16(_mm512_and_si512(h, m2), 4));
        q[1] = _mm512_or_si512(_mm512_and_si512(lb, m4), _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h, 2), m2), 4));
        q[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(la, 4), m4),
                               _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h, 4), m2), 4));
        q[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(lb, 4), m4),
                               _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h, 6), m2), 4));
        TD_UNROLL
        for (int k = 0; k < 4; k++) {
            __m512i sv = td_sc2_chunk(&S, 4 * n + k);
            TD_UNROLL
            for (int t = 0; t < T; t++)
                isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(q[k], td_ldx(xb[t], 128 * n + 32 * k)), sv);
        }
    }
    __m512 d2 = td_pair_ps(td_h2f(A->d), td_h2f(B->d));
    __m512i off = td_join(_mm256_slli_epi16(sa, 5), _mm256_slli_epi16(sb, 5));
    TD_UNROLL
    for (int t = 0; t < T; t++) td_acc2(&acc[t], isum[t], _mm512_madd_epi16(td_bsums(xb[t]), off), d2, d2, xb[t]->d);
}

/* ------------------------------------------------------------------ Q2_K / Q3_K */

TD_INLINE void td_2bit_pair(const uint8_t *qa, const uint8_t *qb, int n, __m512i q[4])
{
    const __m512i m2 = _mm512_set1_epi8(3);
    __m512i v = td_load2(qa + 32 * n, qb + 32 * n);
    q[0] = _mm512_and_si512(v, m2);
    q[1] = _mm512_and_si512(_mm512_srli_epi16(v, 2), m2);
    q[2] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m2);
    q[3] = _mm512_and_si512(_mm512_srli_epi16(v, 6), m2);
}

TD_INLINE void td_q2_K_pair(const uint8_t *a, const uint8_t *b, const td_block_q8_K *const *xb, int T, __m512 *acc)
{
    const td_block_q2_K *A = (const void *)a, *B = (const void *)b;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m128i ra = _mm_loadu_si128((const __m128i *)A->scales), rb = _mm_loadu_si128((const __m128i *)B->scales);
    td_sc2 S = td_sc2_make(_mm256_cvtepu8_epi16(_mm_and_si128(ra, m4)), _mm256_cvtepu8_epi16(_mm_and_si128(rb, m4)));
    __m512i M = td_join(_mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(ra, 4), m4)),
                        _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(rb, 4), m4)));
    __m512i isum[TD_T_MAX];
    TD_UNROLL
    for (int t = 0; t < T; t++) isum[t] = _mm512_setzero_si512();
    TD_UNROLL
    for (int n = 0; n < 2; n++) {
        __m512i q[4];
        td_2bit_pair(A->qs, B->qs, n, q);
        TD_UNROLL
        for (int k = 0; k < 4; k++) {
            __m512i sv = td_sc2_chunk(&S, 4 * n + k);
            TD_UNROLL
            for (int t = 0; t < T; t++)
                isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(q[k], td_ldx(xb[t], 128 * n + 32 * k)), sv);
        }
    }
    __m512 d2 = td_pair_ps(td_h2f(A->d), td_h2f(B->d));
    __m512 m2 = td_pair_ps(td_h2f(A->dmin), td_h2f(B->dmin));
    TD_UNROLL
    for (int t = 0; t < T; t++) td_acc2(&acc[t], isum[t], _mm512_madd_epi16(td_bsums(xb[t]), M), d2, m2, xb[t]->d);
}

/* See td_kern_quant_avx2.c: low 4 bits in bytes 0-7, high 2 bits in bytes 8-11, stored with +32. */
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

TD_INLINE void td_q3_K_pair(const uint8_t *a, const uint8_t *b, const td_block_q8_K *const *xb, int T, __m512 *acc)
{
    const td_block_q3_K *A = (const void *)a, *B = (const void *)b;
    __m256i sa = td_q3_K_scales(A->scales), sb = td_q3_K_scales(B->scales);
    td_sc2 S = td_sc2_make(sa, sb);
    const __m512i one = _mm512_set1_epi8(1);
    __m512i hm = td_load2(A->hmask, B->hmask);
    __m512i isum[TD_T_MAX];
    TD_UNROLL
    for (int t = 0; t < T; t++) isum[t] = _mm512_setzero_si512();
    TD_UNROLL
    for (int n = 0; n < 2; n++) {
        __m512i q[4];
        td_2bit_pair(A->qs, B->qs, n, q);
        TD_UNROLL
        for (int k = 0; k < 4; k++) {
            int c = 4 * n + k;
            __m512i qc = _mm512_or_si512(q[k], _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hm, c), one), 2));
            __m512i sv = td_sc2_chunk(&S, c);
            TD_UNROLL
            for (int t = 0; t < T; t++)
                isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(qc, td_ldx(xb[t], 32 * c)), sv);
        }
    }
    __m512 d2 = td_pair_ps(td_h2f(A->d), td_h2f(B->d));
    __m512i off = td_join(_mm256_slli_epi16(sa, 2), _mm256_slli_epi16(sb, 2));
    TD_UNROLL
    for (int t = 0; t < T; t++) td_acc2(&acc[t], isum[t], _mm512_madd_epi16(td_bsums(xb[t]), off), d2, d2, xb[t]->d);
}

/* ------------------------------------------------------------------ IQ4_XS */

static const alignas(16) int8_t td_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                       1,    13,   25,  38,  53,  69,  89,  113};

TD_INLINE __m128i td_iq4_xs_scales(const td_block_iq4_xs *b)
{
    const __m128i m4 = _mm_set1_epi8(0x0F);
    uint32_t sl;
    memcpy(&sl, b->scales_l, 4);
    __m128i lo = _mm_cvtsi32_si128((int)sl);
    lo = _mm_and_si128(_mm_unpacklo_epi8(lo, _mm_srli_epi16(lo, 4)), m4);
    __m128i hi = _mm_setr_epi16((short)b->scales_h, (short)(b->scales_h >> 2), (short)(b->scales_h >> 4),
                                (short)(b->scales_h >> 6), (short)(b->scales_h >> 8), (short)(b->scales_h >> 10),
                                (short)(b->scales_h >> 12), (short)(b->scales_h >> 14));
    hi = _mm_slli_epi16(_mm_and_si128(hi, _mm_set1_epi16(3)), 4);
    return _mm_sub_epi16(_mm_or_si128(_mm_cvtepu8_epi16(lo), hi), _mm_set1_epi16(32));
}

TD_INLINE void td_iq4_xs_pair(const uint8_t *a, const uint8_t *b, const td_block_q8_K *const *xb, int T, __m512 *acc)
{
    const td_block_iq4_xs *A = (const void *)a, *B = (const void *)b;
    const __m512i tab = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)td_iq4nl_values));
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i S = td_join4(td_iq4_xs_scales(A), td_iq4_xs_scales(B));
    __m512i isum[TD_T_MAX];
    TD_UNROLL
    for (int t = 0; t < T; t++) isum[t] = _mm512_setzero_si512();
    TD_UNROLL
    for (int ib = 0; ib < 8; ib++) {
        /* [A lo | A hi | B lo | B hi] nibbles: values 0-15 and 16-31 of group ib of each row */
        __m512i q = td_join4(_mm_loadu_si128((const __m128i *)(A->qs + 16 * ib)), _mm_loadu_si128((const __m128i *)(B->qs + 16 * ib)));
        __m512i idx = _mm512_mask_blend_epi64(0xCC, _mm512_and_si512(q, m4), _mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
        __m512i wv = _mm512_shuffle_epi8(tab, idx);
        __m512i aw = _mm512_abs_epi8(wv);
        __mmask64 neg = _mm512_movepi8_mask(wv);
        __m512i sv = _mm512_shuffle_epi8(S, td_mask(td_bc[ib]));
        TD_UNROLL
        for (int t = 0; t < T; t++) {
            __m512i xv = td_ldx(xb[t], 32 * ib);
            __m512i sx = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
            isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(aw, sx), sv);
        }
    }
    __m512 d2 = td_pair_ps(td_h2f(A->d), td_h2f(B->d));
    TD_UNROLL
    for (int t = 0; t < T; t++)
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d2, _mm512_set1_ps(xb[t]->d)), acc[t]);
}

/* ------------------------------------------------------------------ Q8_0 */

/* Rows of Q8_0 read 32-value pieces of Q8_K activation blocks; handled per block of 32 (k). x holds the T
 * virtual tokens' rows. */
TD_INLINE void td_q8_0_pair_row(const uint8_t *a, const uint8_t *b, int64_t nb, const td_block_q8_K *const *x, int T,
                                __m512 *acc)
{
    const td_block_q8_0 *A = (const void *)a, *B = (const void *)b;
    for (int64_t k = 0; k < nb; k++) {
        _mm_prefetch((const char *)(A + k) + TD_PREFETCH_BYTES, _MM_HINT_T0); /* each line, one 34-byte block or two */
        _mm_prefetch((const char *)(B + k) + TD_PREFETCH_BYTES, _MM_HINT_T0);
        __m512i w = td_load2((const uint8_t *)A[k].qs, (const uint8_t *)B[k].qs);
        __m512i aw = _mm512_abs_epi8(w);
        __mmask64 neg = _mm512_movepi8_mask(w);
        __m512 d2 = td_pair_ps(td_h2f(A[k].d), td_h2f(B[k].d));
        TD_UNROLL
        for (int t = 0; t < T; t++) {
            const td_block_q8_K *sb = x[t] + k / 8;
            __m512i xv = td_ldx(sb, 32 * (int)(k % 8));
            __m512i sx = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
            __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), aw, sx);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d2, _mm512_set1_ps(sb->d)), acc[t]);
        }
    }
}

/* ------------------------------------------------------------------ row loops */

TD_INLINE void td_store_pair(__m512 acc, float *ya, float *yb)
{
    *ya = td_hsum8(_mm512_castps512_ps256(acc));
    if (yb) *yb = td_hsum8(_mm512_extractf32x8_ps(acc, 1));
}

/* Rows r, r+1 (rb == ra when r is the last row) against T tokens (up to 4): PAIR runs 2T virtual tokens,
 * the main activation rows and their residual rows (nb blocks further), whose sums are added. */
#define TD_PAIR_T(NAME, PAIR, BLOCK_BYTES)                                                                           \
    TD_INLINE void NAME(const uint8_t *ra, const uint8_t *rb, int64_t nb, const void *const *x, int T, float *ya,   \
                        float *yb, int64_t ldy)                                                                       \
    {                                                                                                                \
        __m512 acc[TD_T_MAX];                                                                                        \
        const td_block_q8_K *xb[TD_T_MAX];                                                                           \
        TD_UNROLL                                                                                                    \
        for (int t = 0; t < T; t++) {                                                                                \
            acc[t] = acc[T + t] = _mm512_setzero_ps();                                                               \
            xb[t] = x[t];                                                                                            \
            xb[T + t] = xb[t] + nb;                                                                                  \
        }                                                                                                            \
        for (int64_t b = 0; b < nb; b++) {                                                                           \
            for (size_t o = 0; o < (BLOCK_BYTES); o += 64) {                                                         \
                _mm_prefetch((const char *)ra + (size_t)b * (BLOCK_BYTES) + TD_PREFETCH_BYTES + o, _MM_HINT_T0);     \
                _mm_prefetch((const char *)rb + (size_t)b * (BLOCK_BYTES) + TD_PREFETCH_BYTES + o, _MM_HINT_T0);     \
            }                                                                                                        \
            PAIR(ra + (size_t)b * (BLOCK_BYTES), rb + (size_t)b * (BLOCK_BYTES), xb, 2 * T, acc);                     \
            TD_UNROLL                                                                                                \
            for (int t = 0; t < 2 * T; t++) xb[t]++;                                                                 \
        }                                                                                                            \
        TD_UNROLL                                                                                                    \
        for (int t = 0; t < T; t++)                                                                                  \
            td_store_pair(_mm512_add_ps(acc[t], acc[T + t]), ya + t * ldy, yb ? yb + t * ldy : NULL);                \
    }

#define TD_GEMV(NAME, ROW, BLOCK_ELEMS)                                                                              \
    static void NAME(const td_kern_ctx *ctx, const td_matrix *w, int64_t r0, int64_t r1, const void *const *x,      \
                     int64_t n, float *y, int64_t ldy)                                                               \
    {                                                                                                                \
        (void)ctx;                                                                                                   \
        int64_t nb = w->cols / (BLOCK_ELEMS);                                                                        \
        for (int64_t r = r0; r < r1; r += 2) {                                                                       \
            bool two = r + 1 < r1;                                                                                   \
            const uint8_t *ra = w->data + (size_t)r * w->row_bytes, *rb = two ? ra + w->row_bytes : ra;             \
            for (int64_t t = 0; t < n; t += TD_T_MAX / 2) {                                                          \
                int T = (int)(n - t < TD_T_MAX / 2 ? n - t : TD_T_MAX / 2);                                          \
                float *ya = y + t * ldy + (r - r0), *yb = two ? ya + 1 : NULL;                                       \
                switch (T) {                                                                                         \
                case 4: ROW(ra, rb, nb, x + t, 4, ya, yb, ldy); break;                                               \
                case 3: ROW(ra, rb, nb, x + t, 3, ya, yb, ldy); break;                                               \
                case 2: ROW(ra, rb, nb, x + t, 2, ya, yb, ldy); break;                                               \
                default: ROW(ra, rb, nb, x + t, 1, ya, yb, ldy); break;                                              \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }

TD_PAIR_T(td_rows_q2_K, td_q2_K_pair, sizeof(td_block_q2_K))
TD_PAIR_T(td_rows_q3_K, td_q3_K_pair, sizeof(td_block_q3_K))
TD_PAIR_T(td_rows_q4_K, td_q4_K_pair, sizeof(td_block_q4_K))
TD_PAIR_T(td_rows_q5_K, td_q5_K_pair, sizeof(td_block_q5_K))
TD_PAIR_T(td_rows_q6_K, td_q6_K_pair, sizeof(td_block_q6_K))
TD_PAIR_T(td_rows_iq4_xs, td_iq4_xs_pair, sizeof(td_block_iq4_xs))

TD_INLINE void td_rows_q8_0(const uint8_t *ra, const uint8_t *rb, int64_t nb, const void *const *x, int T, float *ya,
                            float *yb, int64_t ldy)
{
    __m512 acc[TD_T_MAX];
    const td_block_q8_K *xv[TD_T_MAX];
    int64_t nbk = (nb * TD_QK8_0 + TD_QK_K - 1) / TD_QK_K; /* Q8_K blocks per activation row */
    TD_UNROLL
    for (int t = 0; t < T; t++) {
        acc[t] = acc[T + t] = _mm512_setzero_ps();
        xv[t] = x[t];
        xv[T + t] = xv[t] + nbk;
    }
    td_q8_0_pair_row(ra, rb, nb, xv, 2 * T, acc);
    TD_UNROLL
    for (int t = 0; t < T; t++) td_store_pair(_mm512_add_ps(acc[t], acc[T + t]), ya + t * ldy, yb ? yb + t * ldy : NULL);
}

TD_GEMV(td_gemv_q2_K_avx512, td_rows_q2_K, TD_QK_K)
TD_GEMV(td_gemv_q3_K_avx512, td_rows_q3_K, TD_QK_K)
TD_GEMV(td_gemv_q4_K_avx512, td_rows_q4_K, TD_QK_K)
TD_GEMV(td_gemv_q5_K_avx512, td_rows_q5_K, TD_QK_K)
TD_GEMV(td_gemv_q6_K_avx512, td_rows_q6_K, TD_QK_K)
TD_GEMV(td_gemv_iq4_xs_avx512, td_rows_iq4_xs, TD_QK_K)
TD_GEMV(td_gemv_q8_0_avx512, td_rows_q8_0, TD_QK8_0)

const td_kernel td_kernels_avx512_quant[] = {
    {TD_TYPE_Q4_K, TD_ISA_AVX512, TD_ACT_Q8K, td_gemv_q4_K_avx512, TD_QK_K, 0, "q4_K/avx512"},
    {TD_TYPE_Q5_K, TD_ISA_AVX512, TD_ACT_Q8K, td_gemv_q5_K_avx512, TD_QK_K, 0, "q5_K/avx512"},
    {TD_TYPE_Q6_K, TD_ISA_AVX512, TD_ACT_Q8K, td_gemv_q6_K_avx512, TD_QK_K, 0, "q6_K/avx512"},
    {TD_TYPE_Q2_K, TD_ISA_AVX512, TD_ACT_Q8K, td_gemv_q2_K_avx512, TD_QK_K, 0, "q2_K/avx512"},
    {TD_TYPE_Q3_K, TD_ISA_AVX512, TD_ACT_Q8K, td_gemv_q3_K_avx512, TD_QK_K, 0, "q3_K/avx512"},
    {TD_TYPE_Q8_0, TD_ISA_AVX512, TD_ACT_Q8K, td_gemv_q8_0_avx512, TD_QK8_0, 0, "q8_0/avx512"},
    {TD_TYPE_IQ4_XS, TD_ISA_AVX512, TD_ACT_Q8K, td_gemv_iq4_xs_avx512, TD_QK_K, 0, "iq4_xs/avx512"},
    {0},
};
