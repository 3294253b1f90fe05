/* Inline helpers shared by the files compiled with AVX2 (and the AVX-512 files, which include AVX2). */
#ifndef TD_KERN_AVX2_H
#define TD_KERN_AVX2_H

#include <immintrin.h>

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

#endif
