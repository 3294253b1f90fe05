/* AVX-512 kernels for float weights (f32, f16, bf16) against float32 activations: tiles of R rows x T
 * tokens with 16-wide fused multiply-adds; bf16 is widened exactly (a shift), so the products are f32. */
#include "td_float.h"
#include "td_kern.h"
#include "td_kern_avx2.h"

#include <immintrin.h>
#include <string.h>

#define TD_INLINE static inline __attribute__((always_inline))

TD_INLINE __m512 td_ld16_f32(const uint8_t *row, int64_t c) { return _mm512_loadu_ps((const float *)row + c); }
TD_INLINE __m512 td_ld16_f16(const uint8_t *row, int64_t c)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * c)));
}
TD_INLINE __m512 td_ld16_bf16(const uint8_t *row, int64_t c)
{
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(row + 2 * c)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
TD_INLINE float td_ld1_f32(const uint8_t *row, int64_t c) { return td_load_f32(row + 4 * c); }
TD_INLINE float td_ld1_f16(const uint8_t *row, int64_t c)
{
    uint16_t h;
    memcpy(&h, row + 2 * c, 2);
    return td_f16_to_f32(h);
}
TD_INLINE float td_ld1_bf16(const uint8_t *row, int64_t c)
{
    uint16_t h;
    memcpy(&h, row + 2 * c, 2);
    return td_bf16_to_f32(h);
}

#define TD_FLOAT_TILE(NAME, LD16, LD1)                                                                               \
    TD_INLINE void NAME(const td_matrix *w, int64_t r, int R, const void *const *x, int64_t t0, int T, float *y,     \
                        int64_t ldy, int64_t r0)                                                                     \
    {                                                                                                                \
        __m512 acc[8][4];                                                                                            \
        const uint8_t *rows[8];                                                                                      \
        TD_UNROLL                                                                                                    \
        for (int i = 0; i < R; i++) {                                                                                \
            rows[i] = w->data + (size_t)(r + i) * w->row_bytes;                                                      \
            TD_UNROLL                                                                                                \
            for (int j = 0; j < T; j++) acc[i][j] = _mm512_setzero_ps();                                             \
        }                                                                                                            \
        int64_t c = 0;                                                                                               \
        for (; c + 16 <= w->cols; c += 16) {                                                                         \
            __m512 xv[4];                                                                                            \
            TD_UNROLL                                                                                                \
            for (int j = 0; j < T; j++) xv[j] = _mm512_loadu_ps((const float *)x[t0 + j] + c);                     \
            TD_UNROLL                                                                                                \
            for (int i = 0; i < R; i++) {                                                                            \
                __m512 wv = LD16(rows[i], c);                                                                        \
                TD_UNROLL                                                                                            \
                for (int j = 0; j < T; j++) acc[i][j] = _mm512_fmadd_ps(wv, xv[j], acc[i][j]);                      \
            }                                                                                                        \
        }                                                                                                            \
        TD_UNROLL                                                                                                    \
        for (int i = 0; i < R; i++)                                                                                  \
            TD_UNROLL                                                                                                \
            for (int j = 0; j < T; j++) {                                                                            \
                const float *xt = (const float *)x[t0 + j];                                                          \
                float s = _mm512_reduce_add_ps(acc[i][j]);                                                           \
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
        for (; t + 4 <= n; t += 4) {                                                                                 \
            int64_t r = r0;                                                                                          \
            for (; r + 4 <= r1; r += 4) TILE(w, r, 4, x, t, 4, y, ldy, r0);                                          \
            for (; r < r1; r++) TILE(w, r, 1, x, t, 4, y, ldy, r0);                                                  \
        }                                                                                                            \
        for (; t + 2 <= n; t += 2) {                                                                                 \
            int64_t r = r0;                                                                                          \
            for (; r + 8 <= r1; r += 8) TILE(w, r, 8, x, t, 2, y, ldy, r0);                                          \
            for (; r < r1; r++) TILE(w, r, 1, x, t, 2, y, ldy, r0);                                                  \
        }                                                                                                            \
        if (t < n) {                                                                                                 \
            int64_t r = r0;                                                                                          \
            for (; r + 8 <= r1; r += 8) TILE(w, r, 8, x, t, 1, y, ldy, r0);                                          \
            for (; r < r1; r++) TILE(w, r, 1, x, t, 1, y, ldy, r0);                                                  \
        }                                                                                                            \
    }

TD_FLOAT_TILE(td_tile_f32, td_ld16_f32, td_ld1_f32)
TD_FLOAT_TILE(td_tile_f16, td_ld16_f16, td_ld1_f16)
TD_FLOAT_TILE(td_tile_bf16, td_ld16_bf16, td_ld1_bf16)
TD_FLOAT_GEMV(td_gemv_f32_avx512, td_tile_f32)
TD_FLOAT_GEMV(td_gemv_f16_avx512, td_tile_f16)
TD_FLOAT_GEMV(td_gemv_bf16_avx512, td_tile_bf16)

const td_kernel td_kernels_avx512_float[] = {
    {TD_TYPE_F32, TD_ISA_AVX512, TD_ACT_F32, td_gemv_f32_avx512, 1, 0, "f32/avx512"},
    {TD_TYPE_F16, TD_ISA_AVX512, TD_ACT_F32, td_gemv_f16_avx512, 1, 0, "f16/avx512"},
    {TD_TYPE_BF16, TD_ISA_AVX512, TD_ACT_F32, td_gemv_bf16_avx512, 1, 0, "bf16/avx512"},
    {0},
};
