/* AMX kernels for batches of tokens (prefill): C[token][row] += A[token][k] . B[k][row] with bf16 tiles.
 *
 *  - B (weights): 32 rows at a time are dequantized (SIMD for the common types, the reference converter
 *    for the rest), rounded to bf16 and written into a panel in the tiles' pair-interleaved layout (a
 *    16x16 dword transpose per 32 columns). The panel (32 x K bf16, 448 KiB at K = 7168) stays in L2 and
 *    serves every token of the call, so each weight is dequantized once per call.
 *  - A (activations): bf16 rows (TD_ACT_BF16) loaded straight from memory when the token rows are evenly
 *    spaced (the MoE prepares them per slot so each expert's tokens are), else copied into a padded tile
 *    buffer, as is a last group of fewer than 16 tokens.
 *  - C: 2 x 2 tiles of 16 tokens x 16 rows, float32 accumulation, stored straight into y.
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

typedef struct td_tilecfg {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} td_tilecfg;

/* tmm0-3: C, tmm4-5: A, tmm6-7: B; all 16 rows of 64 bytes */
static void td_amx_config(void)
{
    alignas(64) td_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) {
        cfg.colsb[i] = 64;
        cfg.rows[i] = 16;
    }
    _tile_loadconfig(&cfg);
}

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

static void td_deq_q4_K(const uint8_t *row, int64_t cols, float *out)
{
    const td_block_q4_K *b = (const void *)row;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < cols / TD_QK_K; i++, out += TD_QK_K) {
        uint8_t sc[8], mn[8];
        td_k4_scales(b[i].scales, sc, mn);
        float d = td_f16_to_f32(b[i].d), dm = td_f16_to_f32(b[i].dmin);
        for (int j = 0; j < 4; j++) {
            float d0 = d * sc[2 * j], m0 = dm * mn[2 * j], d1 = d * sc[2 * j + 1], m1 = dm * mn[2 * j + 1];
            for (int h = 0; h < 2; h++) {
                __m128i v = _mm_loadu_si128((const __m128i *)(b[i].qs + 32 * j + 16 * h));
                _mm512_storeu_ps(out + 64 * j + 16 * h, td_u8x16_fma(_mm_and_si128(v, m4), d0, m0));
                _mm512_storeu_ps(out + 64 * j + 32 + 16 * h, td_u8x16_fma(_mm_and_si128(_mm_srli_epi16(v, 4), m4), d1, m1));
            }
        }
    }
}

static void td_deq_q8_0(const uint8_t *row, int64_t cols, float *out)
{
    const td_block_q8_0 *b = (const void *)row;
    for (int64_t i = 0; i < cols / TD_QK8_0; i++, out += TD_QK8_0) {
        __m512 d = _mm512_set1_ps(td_f16_to_f32(b[i].d));
        for (int h = 0; h < 2; h++) {
            __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b[i].qs + 16 * h)));
            _mm512_storeu_ps(out + 16 * h, _mm512_mul_ps(_mm512_cvtepi32_ps(q), d));
        }
    }
}

/* Q6_K: value 128n + 32k + l from ql/qh as in the other kernels; w = d * sc * (q - 32) */
static void td_deq_q6_K(const uint8_t *row, int64_t cols, float *out)
{
    const td_block_q6_K *b = (const void *)row;
    for (int64_t i = 0; i < cols / TD_QK_K; i++, out += TD_QK_K) {
        float d = td_f16_to_f32(b[i].d);
        for (int n = 0; n < 2; n++)
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = b[i].ql + 64 * n + 16 * h, *qh = b[i].qh + 32 * n + 16 * h;
                __m128i la = _mm_loadu_si128((const __m128i *)ql), lb = _mm_loadu_si128((const __m128i *)(ql + 32));
                __m128i hh = _mm_loadu_si128((const __m128i *)qh);
                const __m128i m4 = _mm_set1_epi8(0x0F), m2 = _mm_set1_epi8(3);
                __m128i q[4] = {
                    _mm_or_si128(_mm_and_si128(la, m4), _mm_slli_epi16(_mm_and_si128(hh, m2), 4)),
                    _mm_or_si128(_mm_and_si128(lb, m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hh, 2), m2), 4)),
                    _mm_or_si128(_mm_and_si128(_mm_srli_epi16(la, 4), m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hh, 4), m2), 4)),
                    _mm_or_si128(_mm_and_si128(_mm_srli_epi16(lb, 4), m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hh, 6), m2), 4))};
                for (int k = 0; k < 4; k++) {
                    int l0 = 128 * n + 32 * k + 16 * h; /* 16 values, one group of 16 */
                    float s = d * (float)b[i].scales[l0 / 16];
                    _mm512_storeu_ps(out + l0, td_u8x16_fma(q[k], s, 32.0f * s));
                }
            }
    }
}

/* Weight row r as floats (cols of them, zero-padded to kp). */
static void td_amx_row(const td_matrix *w, int64_t r, float *out, int64_t kp)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    switch (w->type) {
    case TD_TYPE_Q4_K: td_deq_q4_K(row, w->cols, out); break;
    case TD_TYPE_Q8_0: td_deq_q8_0(row, w->cols, out); break;
    case TD_TYPE_Q6_K: td_deq_q6_K(row, w->cols, out); break;
    default: td_matrix_dequant_row(w, r, out); break;
    }
    for (int64_t c = w->cols; c < kp; c++) out[c] = 0.0f;
}

/* ------------------------------------------------------------------ the panel */

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
        a[j] = _mm512_shuffle_i32x4(d[j], e[j], 0x88);          /* lane 0 -> column j */
        a[8 + j] = _mm512_shuffle_i32x4(d[j], e[j], 0xDD);      /* lane 2 -> column 8 + j */
        a[4 + j] = _mm512_shuffle_i32x4(d[4 + j], e[4 + j], 0x88); /* lane 1 -> column 4 + j */
        a[12 + j] = _mm512_shuffle_i32x4(d[4 + j], e[4 + j], 0xDD);
    }
}

/* Rows [r, r + 32) of w (zeros past r1) into the panel: for half h and k-tile kt, a 1 KiB tile whose
 * row kk holds, for each of the 16 weight rows, the bf16 pair (k = 32 kt + 2 kk, +1). */
static void td_amx_panel(const td_matrix *w, int64_t r, int64_t r1, int64_t kp, float *rowf, uint16_t *rowsbf,
                         uint8_t *panel)
{
    int64_t nkt = kp / 32;
    for (int h = 0; h < 2; h++) {
        for (int i = 0; i < 16; i++) {
            uint16_t *dst = rowsbf + (size_t)i * (size_t)kp;
            if (r + 16 * h + i < r1) {
                td_amx_row(w, r + 16 * h + i, rowf, kp);
                for (int64_t c = 0; c < kp; c += 32) {
                    __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(rowf + c + 16), _mm512_loadu_ps(rowf + c));
                    _mm512_storeu_si512((void *)(dst + c), (__m512i)v);
                }
            } else {
                memset(dst, 0, (size_t)kp * 2);
            }
        }
        for (int64_t kt = 0; kt < nkt; kt++) {
            __m512i a[16];
            for (int i = 0; i < 16; i++) a[i] = _mm512_loadu_si512((const void *)(rowsbf + (size_t)i * (size_t)kp + 32 * kt));
            td_transpose16(a);
            uint8_t *tile = panel + ((size_t)h * (size_t)nkt + (size_t)kt) * 1024;
            for (int kk = 0; kk < 16; kk++) _mm512_store_si512((void *)(tile + 64 * kk), a[kk]);
        }
    }
}

/* ------------------------------------------------------------------ the kernel */

static void td_gemm_amx_bf16(const td_kern_ctx *ctx, const td_matrix *w, int64_t r0, int64_t r1, const void *const *x,
                             int64_t n, float *y, int64_t ldy)
{
    int64_t K = w->cols, kp = (K + 31) / 32 * 32, nkt = kp / 32;
    /* scratch (td_kern_scratch_bytes): panel | padded A tiles (2 x 16 rows) | C tiles | 16 bf16 rows | a float row */
    uint8_t *panel = ctx->scratch;
    uint8_t *apad = panel + (size_t)kp * 64;
    float *ctmp = (float *)(apad + (size_t)kp * 64);
    uint16_t *rowsbf = (uint16_t *)(ctmp + 4 * 256);
    float *rowf = (float *)(rowsbf + (size_t)kp * 16);
    /* evenly spaced token rows load straight into the A tiles */
    ptrdiff_t xs = n > 1 ? (const uint8_t *)x[1] - (const uint8_t *)x[0] : 0;
    bool even = xs >= kp * 2;
    for (int64_t t = 2; t < n && even; t++) even = (const uint8_t *)x[t] == (const uint8_t *)x[0] + t * xs;
    td_amx_config();
    for (int64_t r = r0; r < r1; r += 32) {
        td_amx_panel(w, r, r1, kp, rowf, rowsbf, panel);
        int64_t nr = r1 - r < 32 ? r1 - r : 32;
        for (int64_t t0 = 0; t0 < n; t0 += 32) {
            int64_t nt = n - t0 < 32 ? n - t0 : 32;
            /* A sources: straight from the rows when 16 evenly spaced tokens exist, else padded copies */
            const uint8_t *asrc[2];
            size_t astride[2];
            for (int a = 0; a < 2; a++) {
                int64_t ta = t0 + 16 * a, cnt = n - ta < 16 ? (n - ta > 0 ? n - ta : 0) : 16;
                if (even && cnt == 16) {
                    asrc[a] = x[ta];
                    astride[a] = (size_t)xs;
                } else {
                    uint8_t *dst = apad + (size_t)a * 16 * (size_t)kp * 2;
                    for (int i = 0; i < 16; i++) {
                        if (i < cnt) memcpy(dst + (size_t)i * (size_t)kp * 2, x[ta + i], (size_t)kp * 2);
                        else memset(dst + (size_t)i * (size_t)kp * 2, 0, (size_t)kp * 2);
                    }
                    asrc[a] = dst;
                    astride[a] = (size_t)kp * 2;
                }
            }
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            bool two = nt > 16;
            for (int64_t kt = 0; kt < nkt; kt++) {
                _tile_loadd(4, asrc[0] + 64 * kt, (long)astride[0]);
                _tile_loadd(6, panel + (size_t)kt * 1024, 64);
                _tile_loadd(7, panel + ((size_t)nkt + (size_t)kt) * 1024, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                if (two) {
                    _tile_loadd(5, asrc[1] + 64 * kt, (long)astride[1]);
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                }
            }
            /* C tile (a, b): tokens t0 + 16a.., rows r + 16b.. */
            bool full = nr == 32 && nt == 32;
            float *yb = y + t0 * ldy + (r - r0);
            if (full) {
                _tile_stored(0, yb, (long)(ldy * 4));
                _tile_stored(1, yb + 16, (long)(ldy * 4));
                _tile_stored(2, yb + 16 * ldy, (long)(ldy * 4));
                _tile_stored(3, yb + 16 * ldy + 16, (long)(ldy * 4));
                continue;
            }
            _tile_stored(0, ctmp, 64);
            _tile_stored(1, ctmp + 256, 64);
            _tile_stored(2, ctmp + 512, 64);
            _tile_stored(3, ctmp + 768, 64);
            for (int64_t t = 0; t < nt; t++)
                for (int64_t c = 0; c < nr; c++)
                    yb[t * ldy + c] = ctmp[(t / 16 * 2 + c / 16) * 256 + (t % 16) * 16 + c % 16];
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
