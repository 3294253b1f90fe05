/* AMX kernels for batches of tokens (prefill): C[row][token] = sum_k W[row][k] x[token][k] with bf16 tiles
 * and float32 accumulation.
 *  - A (weights): 32 rows at a time are dequantized straight to bf16 (SIMD for the common types, Q4_K by
 *    a 16-entry lookup per sub-block; the reference converter for the rest) into a panel laid out tile
 *    by tile (32 x K, 448 KiB at K = 7168) that stays in L2 and serves every token of the call: each
 *    weight is dequantized once per call.
 *  - B (activations): bf16 rows (TD_ACT_BF16) of up to 64 tokens, transposed once per call into the
 *    tiles' pair-interleaved layout (dword kk of each token's 32-column slice becomes row kk).
 *  - C: 2 x 2 tiles (32 rows x 32 tokens), transposed on the way out into y[token][row].
 * Tile state is configured at the start of each call and released at its end. */
#include "td_blocks.h"
#include "td_dequant.h"
#include "td_float.h"
#include "td_kern.h"
#include "td_roofline.h"

#include <immintrin.h>
#include <stdalign.h>
#include <string.h>

#define TD_INLINE static inline __attribute__((always_inline))

/* f16 -> f32 with the F16C instruction (every CPU with these kernels has it) */
#define td_h2f(h) _cvtsh_ss(h)

typedef struct td_tilecfg {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} td_tilecfg;

/* tmm0-3: C, tmm4-5: A, tmm6-7: B; all 16 rows of 64 bytes. A static constant: GCC 12 drops stores
 * into a local configuration before ldtilecfg (it does not see the instruction read them), leaving the
 * tiles unconfigured and the next tile instruction faulting. */
static const alignas(64) td_tilecfg td_amx_cfg = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

static void td_amx_config(void) { _tile_loadconfig(&td_amx_cfg); }

/* ------------------------------------------------------------------ dequantization to float */

TD_INLINE void td_k4_scales(const uint8_t *s, uint8_t sc[8], uint8_t mn[8])
{
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (uint8_t)((s[j + 8] & 0xF) | ((s[j] >> 6) << 4));
        mn[j + 4] = (uint8_t)((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
}

/* 16 unsigned bytes -> floats * d - m */
TD_INLINE __m512 td_u8x16_fma(__m128i q, float d, float m)
{
    return _mm512_fmsub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q)), _mm512_set1_ps(d), _mm512_set1_ps(m));
}

/* 32 bf16 from two 16-float halves */
TD_INLINE void td_st_bf16x32(uint16_t *dst, __m512 lo, __m512 hi)
{
    _mm512_storeu_si512((void *)dst, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

/* The 16 values a 4-bit sub-block can take, d*q - m for q = 0..15, as bf16 in both halves of 32 words. */
TD_INLINE __m512i td_bf16_table16(float d, float m)
{
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512 t = _mm512_fmsub_ps(iota, _mm512_set1_ps(d), _mm512_set1_ps(m));
    return (__m512i)_mm512_cvtne2ps_pbh(t, t);
}

/* Q4_K: each sub-block of 32 is a lookup of its nibbles in its own 16-entry bf16 table (the same float
 * d*sc*q - dmin*m, rounded once, as computing it value by value). */
static void td_deq_q4_K(const uint8_t *row, int64_t cols, uint16_t *out, size_t cs)
{
    const td_block_q4_K *b = (const void *)row;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < cols / TD_QK_K; i++) {
        uint8_t sc[8], mn[8];
        td_k4_scales(b[i].scales, sc, mn);
        float d = td_h2f(b[i].d), dm = td_h2f(b[i].dmin);
        for (int j = 0; j < 4; j++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * j));
            __m512i lo = _mm512_cvtepu8_epi16(_mm256_and_si256(v, m4));
            __m512i hi = _mm512_cvtepu8_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
            uint16_t *c0 = out + (size_t)(8 * i + 2 * j) * cs;
            _mm512_storeu_si512((void *)c0, _mm512_permutexvar_epi16(lo, td_bf16_table16(d * sc[2 * j], dm * mn[2 * j])));
            _mm512_storeu_si512((void *)(c0 + cs),
                                _mm512_permutexvar_epi16(hi, td_bf16_table16(d * sc[2 * j + 1], dm * mn[2 * j + 1])));
        }
    }
}

static void td_deq_q8_0(const uint8_t *row, int64_t cols, uint16_t *out, size_t cs)
{
    const td_block_q8_0 *b = (const void *)row;
    for (int64_t i = 0; i < cols / TD_QK8_0; i++, out += cs) {
        __m512 d = _mm512_set1_ps(td_h2f(b[i].d));
        __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b[i].qs)));
        __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b[i].qs + 16))));
        td_st_bf16x32(out, _mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d));
    }
}

/* Q6_K: value 128n + 32k + l from ql/qh as in the other kernels; w = d * sc * (q - 32) */
static void td_deq_q6_K(const uint8_t *row, int64_t cols, uint16_t *out, size_t cs)
{
    const td_block_q6_K *b = (const void *)row;
    const __m128i m4 = _mm_set1_epi8(0x0F), m2 = _mm_set1_epi8(3);
    for (int64_t i = 0; i < cols / TD_QK_K; i++) {
        float d = td_h2f(b[i].d);
        for (int n = 0; n < 2; n++) {
            __m512 f[4][2];
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = b[i].ql + 64 * n + 16 * h, *qh = b[i].qh + 32 * n + 16 * h;
                __m128i la = _mm_loadu_si128((const __m128i *)ql), lb = _mm_loadu_si128((const __m128i *)(ql + 32));
                __m128i hh = _mm_loadu_si128((const __m128i *)qh);
                __m128i q[4] = {
                    _mm_or_si128(_mm_and_si128(la, m4), _mm_slli_epi16(_mm_and_si128(hh, m2), 4)),
                    _mm_or_si128(_mm_and_si128(lb, m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hh, 2), m2), 4)),
                    _mm_or_si128(_mm_and_si128(_mm_srli_epi16(la, 4), m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hh, 4), m2), 4)),
                    _mm_or_si128(_mm_and_si128(_mm_srli_epi16(lb, 4), m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hh, 6), m2), 4))};
                for (int k = 0; k < 4; k++) {
                    float sc = d * (float)b[i].scales[(128 * n + 32 * k + 16 * h) / 16];
                    f[k][h] = td_u8x16_fma(q[k], sc, 32.0f * sc);
                }
            }
            for (int k = 0; k < 4; k++) td_st_bf16x32(out + (size_t)(8 * i + 4 * n + k) * cs, f[k][0], f[k][1]);
        }
    }
}

/* Weight row r as bf16, zero-padded to kp columns, written 32 columns (one A-tile row) at a time: chunk c
 * goes to out + c * cs. rowf: a float row for the types without a SIMD path. */
static void td_amx_row(const td_matrix *w, int64_t r, uint16_t *out, size_t cs, int64_t kp, float *rowf)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    int64_t nfull = w->cols / 32;
    switch (w->type) {
    case TD_TYPE_Q4_K: td_deq_q4_K(row, w->cols, out, cs); return;
    case TD_TYPE_Q8_0: td_deq_q8_0(row, w->cols, out, cs); return;
    case TD_TYPE_Q6_K: td_deq_q6_K(row, w->cols, out, cs); return;
    default: break;
    }
    td_matrix_dequant_row(w, r, rowf);
    for (int64_t c = 0; c < nfull; c++)
        td_st_bf16x32(out + (size_t)c * cs, _mm512_loadu_ps(rowf + 32 * c), _mm512_loadu_ps(rowf + 32 * c + 16));
    if (nfull * 32 < kp) { /* the last partial chunk, zero-padded */
        uint16_t *o = out + (size_t)nfull * cs;
        for (int64_t k = 0; k < 32; k++) o[k] = nfull * 32 + k < w->cols ? td_f32_to_bf16(rowf[nfull * 32 + k]) : 0;
    }
}

/* ------------------------------------------------------------------ layouts */

/* 16 rows of 16 dwords -> their transpose, in place (a[j] becomes column j). */
TD_INLINE void td_transpose16(__m512i a[16])
{
    __m512i b[16], c[16], d[16], e[16];
    for (int i = 0; i < 8; i++) {
        b[2 * i] = _mm512_unpacklo_epi32(a[2 * i], a[2 * i + 1]);
        b[2 * i + 1] = _mm512_unpackhi_epi32(a[2 * i], a[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        c[4 * i + 0] = _mm512_unpacklo_epi64(b[4 * i], b[4 * i + 2]);
        c[4 * i + 1] = _mm512_unpackhi_epi64(b[4 * i], b[4 * i + 2]);
        c[4 * i + 2] = _mm512_unpacklo_epi64(b[4 * i + 1], b[4 * i + 3]);
        c[4 * i + 3] = _mm512_unpackhi_epi64(b[4 * i + 1], b[4 * i + 3]);
    }
    for (int j = 0; j < 4; j++) {
        d[j] = _mm512_shuffle_i32x4(c[j], c[4 + j], 0x88);
        d[4 + j] = _mm512_shuffle_i32x4(c[j], c[4 + j], 0xDD);
        e[j] = _mm512_shuffle_i32x4(c[8 + j], c[12 + j], 0x88);
        e[4 + j] = _mm512_shuffle_i32x4(c[8 + j], c[12 + j], 0xDD);
    }
    for (int j = 0; j < 4; j++) {
        a[j] = _mm512_shuffle_i32x4(d[j], e[j], 0x88);             /* lane 0 -> column j */
        a[8 + j] = _mm512_shuffle_i32x4(d[j], e[j], 0xDD);         /* lane 2 -> column 8 + j */
        a[4 + j] = _mm512_shuffle_i32x4(d[4 + j], e[4 + j], 0x88); /* lane 1 -> column 4 + j */
        a[12 + j] = _mm512_shuffle_i32x4(d[4 + j], e[4 + j], 0xDD);
    }
}

/* B tiles of token group g (16 tokens, zeros past cnt): tile kt holds in row kk, for each token, the bf16
 * pair at columns 32 kt + 2 kk, +1. */
static void td_amx_btiles(const void *const *x, int cnt, int64_t nkt, uint8_t *dst)
{
    for (int64_t kt = 0; kt < nkt; kt++) {
        __m512i a[16];
        for (int i = 0; i < 16; i++)
            a[i] = i < cnt ? _mm512_loadu_si512((const uint8_t *)x[i] + 64 * kt) : _mm512_setzero_si512();
        td_transpose16(a);
        for (int kk = 0; kk < 16; kk++) _mm512_store_si512((void *)(dst + (size_t)kt * 1024 + 64 * kk), a[kk]);
    }
}

/* ------------------------------------------------------------------ the kernel */

#define TD_AMX_TOKENS 64 /* tokens whose B tiles are prepared at once */

/* C tile (16 weight rows x 16 tokens) -> y[token][row] for cnt_t tokens and cnt_r rows. */
static void td_amx_store(float *ctmp, float *y, int64_t ldy, int cnt_t, int cnt_r)
{
    __m512i a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_load_si512((const void *)(ctmp + 16 * i));
    td_transpose16(a);
    __mmask16 m = (__mmask16)((1u << cnt_r) - 1);
    for (int t = 0; t < cnt_t; t++) _mm512_mask_storeu_ps(y + t * ldy, m, _mm512_castsi512_ps(a[t]));
}

static void td_gemm_amx_bf16(const td_kern_ctx *ctx, const td_matrix *w, int64_t r0, int64_t r1, const void *const *x,
                             int64_t n, float *y, int64_t ldy)
{
    int64_t K = w->cols, kp = (K + 31) / 32 * 32, nkt = kp / 32;
    /* scratch (td_kern_scratch_bytes): B tiles of 64 tokens | weight panel (32 rows) | C tile | a float row */
    uint8_t *btiles = ctx->scratch;
    uint16_t *panel = (uint16_t *)(btiles + (size_t)kp * 2 * TD_AMX_TOKENS);
    float *ctmp = (float *)(panel + (size_t)kp * 32);
    float *rowf = ctmp + 256;
    td_amx_config();
    for (int64_t t0 = 0; t0 < n; t0 += TD_AMX_TOKENS) {
        int64_t nt = n - t0 < TD_AMX_TOKENS ? n - t0 : TD_AMX_TOKENS;
        int ng = (int)((nt + 15) / 16);
        bool have = ctx->same_acts && n <= TD_AMX_TOKENS; /* the previous call left these B tiles */
        for (int g = 0; g < ng && !have; g++)
            td_amx_btiles(x + t0 + 16 * g, (int)(nt - 16 * g < 16 ? nt - 16 * g : 16), nkt,
                          btiles + (size_t)g * (size_t)nkt * 1024);
        for (int64_t r = r0; r < r1; r += 32) {
            int nr = (int)(r1 - r < 32 ? r1 - r : 32);
            /* the panel, tile by tile: half h (rows 16h..), k-tile kt at (h * nkt + kt) KiB, 64 bytes a row;
             * contiguous tiles load without the cache-set conflicts of rows K * 2 bytes apart */
            for (int i = 0; i < 32; i++) {
                uint16_t *dst = panel + ((size_t)(i / 16) * (size_t)nkt * 512) + (size_t)(i % 16) * 32;
                if (i < nr) {
                    td_amx_row(w, r + i, dst, 512, kp, rowf);
                } else {
                    for (int64_t kt = 0; kt < nkt; kt++) memset(dst + (size_t)kt * 512, 0, 64);
                }
            }
            for (int g = 0; g < ng; g += 2) {
                bool two = g + 1 < ng, low_only = nr <= 16;
                const uint8_t *b0 = btiles + (size_t)g * (size_t)nkt * 1024, *b1 = b0 + (size_t)nkt * 1024;
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                const uint8_t *a0 = (const uint8_t *)panel, *a1 = a0 + (size_t)nkt * 1024;
                for (int64_t kt = 0; kt < nkt; kt++) {
                    _tile_loadd(4, a0 + (size_t)kt * 1024, 64);
                    _tile_loadd(6, b0 + (size_t)kt * 1024, 64);
                    _tile_dpbf16ps(0, 4, 6);
                    if (two) {
                        _tile_loadd(7, b1 + (size_t)kt * 1024, 64);
                        _tile_dpbf16ps(1, 4, 7);
                    }
                    if (!low_only) {
                        _tile_loadd(5, a1 + (size_t)kt * 1024, 64);
                        _tile_dpbf16ps(2, 5, 6);
                        if (two) _tile_dpbf16ps(3, 5, 7);
                    }
                }
                /* C tile (a, b): weight rows r + 16a, tokens t0 + 16(g + b) */
                for (int a = 0; a < (low_only ? 1 : 2); a++)
                    for (int bb = 0; bb < (two ? 2 : 1); bb++) {
                        int tile = 2 * a + bb;
                        if (tile == 0) _tile_stored(0, ctmp, 64);
                        else if (tile == 1) _tile_stored(1, ctmp, 64);
                        else if (tile == 2) _tile_stored(2, ctmp, 64);
                        else _tile_stored(3, ctmp, 64);
                        int64_t tt = t0 + 16 * (g + bb);
                        int cnt_t = (int)(n - tt < 16 ? n - tt : 16), cnt_r = nr - 16 * a < 16 ? nr - 16 * a : 16;
                        td_amx_store(ctmp, y + tt * ldy + (r - r0) + 16 * a, ldy, cnt_t, cnt_r);
                    }
            }
        }
    }
    _tile_release();
}

/* ------------------------------------------------------------------ peak */

double td_amx_bf16_loop(int64_t iters)
{
    alignas(64) static const uint8_t zeros[16 * 64] = {0};
    td_amx_config();
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, zeros, 64);
    _tile_loadd(5, zeros, 64);
    _tile_loadd(6, zeros, 64);
    _tile_loadd(7, zeros, 64);
    for (int64_t i = 0; i < iters; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_release();
    return (double)iters * 4 * 16 * 16 * 32 * 2;
}

/* AMX pays once a weight is used by several tokens; below that the AVX-512 kernels stream faster. */
#define TD_AMX_MIN_TOKENS 16

const td_kernel td_kernels_amx[] = {
    {TD_TYPE_Q4_K, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, TD_QK_K, TD_AMX_MIN_TOKENS, "q4_K/amx"},
    {TD_TYPE_Q5_K, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, TD_QK_K, TD_AMX_MIN_TOKENS, "q5_K/amx"},
    {TD_TYPE_Q6_K, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, TD_QK_K, TD_AMX_MIN_TOKENS, "q6_K/amx"},
    {TD_TYPE_Q2_K, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, TD_QK_K, TD_AMX_MIN_TOKENS, "q2_K/amx"},
    {TD_TYPE_Q3_K, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, TD_QK_K, TD_AMX_MIN_TOKENS, "q3_K/amx"},
    {TD_TYPE_Q8_0, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, TD_QK8_0, TD_AMX_MIN_TOKENS, "q8_0/amx"},
    {TD_TYPE_IQ4_XS, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, TD_QK_K, TD_AMX_MIN_TOKENS, "iq4_xs/amx"},
    {TD_TYPE_BF16, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, 1, TD_AMX_MIN_TOKENS, "bf16/amx"},
    {TD_TYPE_F16, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, 1, TD_AMX_MIN_TOKENS, "f16/amx"},
    {0},
};
