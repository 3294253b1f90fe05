/* td_kq_unpack: every K-quant super-block (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) brought into one form, so one
 * integer dot loop serves them all:
 *
 *     block . x  =  dx * ( d * sum_g sc_g * <q, x>_g  -  dmin * sum_g mn_g * bsum_g )
 *
 * with q the 256 weights as unsigned bytes (0..63), g the 16 groups of 16, sc_g and mn_g small
 * integers, and x a Q8_K block (scale dx, int8 values, bsum_g = sum of its group g). Each format maps
 * in exactly:
 *   Q4_K/Q5_K  w = d*sc*q - dmin*m     (sc, m per 32: each used for two groups)
 *   Q2_K       w = d*sc*q - dmin*m     (sc, m per 16)
 *   Q6_K       w = d*sc*(q - 32)       ->  mn = 32*sc, dmin = d
 *   Q3_K       w = d*sc*(q' - 4)       ->  q' = q + 4 in 0..7, mn = 4*sc, dmin = d
 * The scales are laid out for the dot loop: scv[c] holds, for the 32 values of chunk c, the scale of
 * each int16 lane of _mm256_maddubs_epi16 (lanes 0-7: group 2c, lanes 8-15: group 2c+1); the AVX-512
 * loop reads two chunks at once from the same memory.
 * Compiled in AVX2 (and AVX-512) files only. */
#ifndef TD_KQ_UNPACK_H
#define TD_KQ_UNPACK_H

#include "td_blocks.h"
#include "td_float.h"

#include <immintrin.h>
#include <stdalign.h>
#include <stdint.h>
#include <string.h>

typedef struct td_kq {
    alignas(64) uint8_t q[256];
    alignas(64) int16_t scv[8][16];
    alignas(32) int16_t mn[16];
    float d, dmin;
} td_kq;

/* scv from one signed scale byte per group. */
static inline void td_kq_set_scales(td_kq *u, __m128i s8)
{
    for (int c = 0; c < 8; c++) {
        __m128i pick = _mm_setr_epi8((char)(2 * c), (char)(2 * c), (char)(2 * c), (char)(2 * c), (char)(2 * c),
                                     (char)(2 * c), (char)(2 * c), (char)(2 * c), (char)(2 * c + 1), (char)(2 * c + 1),
                                     (char)(2 * c + 1), (char)(2 * c + 1), (char)(2 * c + 1), (char)(2 * c + 1),
                                     (char)(2 * c + 1), (char)(2 * c + 1));
        _mm256_store_si256((__m256i *)u->scv[c], _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, pick)));
    }
}

/* The 6-bit scales and mins of Q4_K/Q5_K: 8 of each in 12 bytes. */
static inline void td_kq_scales_k4(const uint8_t *s, uint8_t sc[8], uint8_t m[8])
{
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (uint8_t)((s[j + 8] & 0xF) | ((s[j] >> 6) << 4));
        m[j + 4] = (uint8_t)((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
}

/* Q4_K/Q5_K: per-32 scales and mins repeated for both groups of 16. */
static inline void td_kq_set_k4_scales(td_kq *u, const uint8_t *scales)
{
    uint8_t sc[8], m[8];
    td_kq_scales_k4(scales, sc, m);
    __m128i s = _mm_loadl_epi64((const __m128i *)sc), mm = _mm_loadl_epi64((const __m128i *)m);
    td_kq_set_scales(u, _mm_unpacklo_epi8(s, s));
    _mm256_store_si256((__m256i *)u->mn, _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mm, mm)));
}

static inline void td_kq_unpack_q4_K(const td_block_q4_K *b, td_kq *u)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int j = 0; j < 4; j++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * j));
        _mm256_store_si256((__m256i *)(u->q + 64 * j), _mm256_and_si256(v, m4));
        _mm256_store_si256((__m256i *)(u->q + 64 * j + 32), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
    }
    td_kq_set_k4_scales(u, b->scales);
    u->d = td_f16_to_f32(b->d);
    u->dmin = td_f16_to_f32(b->dmin);
}

/* Q5_K: the fifth bit of chunk j's low nibbles is bit 2j of qh[l], of its high nibbles bit 2j+1. */
static inline void td_kq_unpack_q5_K(const td_block_q5_K *b, td_kq *u)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256i hb = _mm256_loadu_si256((const __m256i *)b->qh);
    for (int j = 0; j < 4; j++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * j));
        __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(hb, one), 4);
        __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), one), 4);
        hb = _mm256_srli_epi16(hb, 2);
        _mm256_store_si256((__m256i *)(u->q + 64 * j), _mm256_or_si256(_mm256_and_si256(v, m4), h0));
        _mm256_store_si256((__m256i *)(u->q + 64 * j + 32),
                           _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), h1));
    }
    td_kq_set_k4_scales(u, b->scales);
    u->d = td_f16_to_f32(b->d);
    u->dmin = td_f16_to_f32(b->dmin);
}

/* Q6_K: per half n of 128: values l, l+32, l+64, l+96 from ql[l] low, ql[l+32] low, ql[l] high,
 * ql[l+32] high, with two high bits each from qh[l] (bits 0-1, 2-3, 4-5, 6-7). */
static inline void td_kq_unpack_q6_K(const td_block_q6_K *b, td_kq *u)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    for (int n = 0; n < 2; n++) {
        __m256i la = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * n));
        __m256i lb = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * n + 32));
        __m256i h = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * n));
        __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(h, m2), 4);
        __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m2), 4);
        __m256i h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m2), 4);
        __m256i h3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m2), 4);
        uint8_t *q = u->q + 128 * n;
        _mm256_store_si256((__m256i *)q, _mm256_or_si256(_mm256_and_si256(la, m4), h0));
        _mm256_store_si256((__m256i *)(q + 32), _mm256_or_si256(_mm256_and_si256(lb, m4), h1));
        _mm256_store_si256((__m256i *)(q + 64), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, 4), m4), h2));
        _mm256_store_si256((__m256i *)(q + 96), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, 4), m4), h3));
    }
    __m128i s = _mm_loadu_si128((const __m128i *)b->scales);
    td_kq_set_scales(u, s);
    _mm256_store_si256((__m256i *)u->mn, _mm256_slli_epi16(_mm256_cvtepi8_epi16(s), 5));
    u->d = u->dmin = td_f16_to_f32(b->d);
}

/* 2-bit fields: value 128n + 32k + l is bits 2k..2k+1 of qs[32n + l]. */
static inline void td_kq_unpack_2bit(const uint8_t *qs, uint8_t *q)
{
    const __m256i m2 = _mm256_set1_epi8(3);
    for (int n = 0; n < 2; n++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * n));
        for (int k = 0; k < 4; k++)
            _mm256_store_si256((__m256i *)(q + 128 * n + 32 * k), _mm256_and_si256(_mm256_srli_epi16(v, 2 * k), m2));
    }
}

static inline void td_kq_unpack_q2_K(const td_block_q2_K *b, td_kq *u)
{
    td_kq_unpack_2bit(b->qs, u->q);
    __m128i s = _mm_loadu_si128((const __m128i *)b->scales);
    td_kq_set_scales(u, _mm_and_si128(s, _mm_set1_epi8(0x0F)));
    _mm256_store_si256((__m256i *)u->mn, _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), _mm_set1_epi8(0x0F))));
    u->d = td_f16_to_f32(b->d);
    u->dmin = td_f16_to_f32(b->dmin);
}

/* Q3_K: the third bit of value 128n + 32k + l is bit 4n + k of hmask[l] (set: +4, the stored value is
 * q - 4 otherwise); 16 signed 6-bit scales, low 4 bits in bytes 0-7 (groups 8-15 in the high nibbles),
 * high 2 bits in bytes 8-11. */
static inline void td_kq_unpack_q3_K(const td_block_q3_K *b, td_kq *u)
{
    td_kq_unpack_2bit(b->qs, u->q);
    const __m256i one = _mm256_set1_epi8(1);
    __m256i hm = _mm256_loadu_si256((const __m256i *)b->hmask);
    for (int i = 0; i < 8; i++) {
        __m256i *dst = (__m256i *)(u->q + 32 * i);
        __m256i h = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, i), one), 2);
        _mm256_store_si256(dst, _mm256_or_si256(_mm256_load_si256(dst), h));
    }
    int8_t sc[16];
    const uint8_t *s = b->scales;
    for (int g = 0; g < 16; g++) {
        int lo = g < 8 ? (s[g] & 0xF) : (s[g - 8] >> 4);
        int hi = (s[8 + (g % 4)] >> (2 * (g / 4))) & 3;
        sc[g] = (int8_t)((lo | (hi << 4)) - 32);
    }
    __m128i s8 = _mm_loadu_si128((const __m128i *)sc);
    td_kq_set_scales(u, s8);
    _mm256_store_si256((__m256i *)u->mn, _mm256_slli_epi16(_mm256_cvtepi8_epi16(s8), 2));
    u->d = u->dmin = td_f16_to_f32(b->d);
}

#endif
