/* Inline helpers shared by the files compiled with AVX2 (and the AVX-512 files, which include AVX2). */
#ifndef TD_KERN_AVX2_H
#define TD_KERN_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* Loops over tokens, chunks and accumulators must be unrolled so the arrays live in registers (-O2
 * alone keeps them on the stack). */
#define TD_UNROLL _Pragma("GCC unroll 16")

static inline float td_hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float td_hmax8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Q4_K/Q5_K: the 8 six-bit scales and 8 mins packed in 12 bytes, as bytes in two uint64 (bit operations on
 * 32-bit words, no byte stores). */
static inline void td_k4_scales(const uint8_t *s, uint64_t *sc, uint64_t *mn)
{
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    uint32_t sc_lo = u0 & 0x3f3f3f3fu, mn_lo = u1 & 0x3f3f3f3fu;
    uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
    uint32_t mn_hi = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
    *sc = (uint64_t)sc_lo | ((uint64_t)sc_hi << 32);
    *mn = (uint64_t)mn_lo | ((uint64_t)mn_hi << 32);
}

#endif
