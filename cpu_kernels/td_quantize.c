/* Scalar quantizers of the GGUF formats tandem writes. Each picks its scales from the data, rounds them
 * up to what the format stores so that no value falls outside the representable range, then rounds every
 * value to the nearest level of the stored scale (see td_quantize.h for the resulting bounds). */
#include "td_quantize.h"

#include "td_blocks.h"
#include "td_float.h"

#include <math.h>
#include <string.h>

uint16_t td_f16_round_up(float v)
{
    if (!(v > 0.0f)) return 0;
    uint16_t h = td_f32_to_f16(v);
    if (td_f16_to_f32(h) < v && h < 0x7c00u) h++; /* positive halves are ordered like their bits */
    return h;
}

/* Comparisons rather than fminf/fmaxf, which are library calls without -ffinite-math-only (inputs are
 * finite: see td_quantize.h); a third of a synthetic model's writing time went into them. */
static inline float td_min(float a, float b) { return b < a ? b : a; }
static inline float td_max(float a, float b) { return b > a ? b : a; }

static float td_absmax(const float *x, int n)
{
    float m = 0.0f;
    for (int i = 0; i < n; i++) m = td_max(m, fabsf(x[i]));
    return m;
}

/* The level nearest to v / step, limited to [lo, hi] (only float rounding can push it out). */
static int td_level(float v, float step, int lo, int hi)
{
    if (!(step > 0.0f)) return 0;
    int q = (int)nearbyintf(v / step);
    return q < lo ? lo : q > hi ? hi : q;
}

/* ------------------------------------------------------------------ plain floats */

static void td_quantize_f32(const float *x, void *dst, int64_t n) { memcpy(dst, x, (size_t)n * sizeof *x); }

static void td_quantize_f16(const float *x, void *dst, int64_t n)
{
    uint8_t *d = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = td_f32_to_f16(x[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}

static void td_quantize_bf16(const float *x, void *dst, int64_t n)
{
    uint8_t *d = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = td_f32_to_bf16(x[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}

/* ------------------------------------------------------------------ 32-element blocks */

static void td_quantize_q8_0(const float *x, void *dst, int64_t n)
{
    td_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / TD_QK8_0; i++, b++, x += TD_QK8_0) {
        b->d = td_f16_round_up(td_absmax(x, TD_QK8_0) / 127.0f);
        float d = td_f16_to_f32(b->d);
        for (int j = 0; j < TD_QK8_0; j++) b->qs[j] = (int8_t)td_level(x[j], d, -127, 127);
    }
}

/* x = d * (q - 16); levels -15..15 so that rounding d up keeps every value in range */
static void td_quantize_q5_0(const float *x, void *dst, int64_t n)
{
    td_block_q5_0 *b = dst;
    for (int64_t i = 0; i < n / TD_QK5_0; i++, b++, x += TD_QK5_0) {
        b->d = td_f16_round_up(td_absmax(x, TD_QK5_0) / 15.0f);
        float d = td_f16_to_f32(b->d);
        uint32_t qh = 0;
        uint8_t q[TD_QK5_0];
        for (int j = 0; j < TD_QK5_0; j++) {
            q[j] = (uint8_t)(td_level(x[j], d, -15, 15) + 16);
            qh |= (uint32_t)(q[j] >> 4) << j;
        }
        for (int j = 0; j < TD_QK5_0 / 2; j++) b->qs[j] = (uint8_t)((q[j] & 0x0f) | (q[j + 16] & 0x0f) << 4);
        for (int k = 0; k < 4; k++) b->qh[k] = (uint8_t)(qh >> (8 * k));
    }
}

/* ------------------------------------------------------------------ K-quants */

/* Packs Q4_K/Q5_K's 8 scales and mins (6 bits each) into 12 bytes (the layout td_k4_scale_min reads). */
static void td_pack_k4_scales(const int *sc, const int *m, uint8_t *s)
{
    for (int g = 0; g < 4; g++) {
        s[g] = (uint8_t)((sc[g] & 63) | (sc[g + 4] >> 4) << 6);
        s[g + 4] = (uint8_t)((m[g] & 63) | (m[g + 4] >> 4) << 6);
        s[g + 8] = (uint8_t)((sc[g + 4] & 15) | (m[g + 4] & 15) << 4);
    }
}

/* Q4_K and Q5_K's scales for one block of 256: per group of 32 the offset m (rounded up so that
 * x + dmin*m >= 0) and the scale sc (rounded up so that top * d * sc covers the shifted range), where top
 * is the highest level (15 or 31); the packed scales go into s, the steps and shifts of the groups, exactly
 * as the dequantizer forms them, into step and shift. */
static void td_k4_block_scales(const float *x, float top, td_half *d_out, td_half *dmin_out, uint8_t *s,
                               float step[8], float shift[8])
{
    float lo[8], hi[8], max_neg = 0.0f;
    for (int g = 0; g < 8; g++) {
        lo[g] = 0.0f; /* the offset only ever lowers the levels: positive minimums become 0 */
        hi[g] = 0.0f;
        for (int l = 0; l < 32; l++) {
            lo[g] = td_min(lo[g], x[32 * g + l]);
            hi[g] = td_max(hi[g], x[32 * g + l]);
        }
        max_neg = td_max(max_neg, -lo[g]);
    }
    *dmin_out = td_f16_round_up(max_neg / 63.0f);
    float dmin = td_f16_to_f32(*dmin_out), off[8], max_range = 0.0f;
    int sc[8], m[8];
    for (int g = 0; g < 8; g++) {
        m[g] = dmin > 0.0f ? (int)ceilf(-lo[g] / dmin) : 0;
        if (m[g] > 63) m[g] = 63;
        off[g] = dmin * (float)m[g];
        max_range = td_max(max_range, hi[g] + off[g]);
    }
    *d_out = td_f16_round_up(max_range / (top * 63.0f));
    float d = td_f16_to_f32(*d_out);
    for (int g = 0; g < 8; g++) {
        sc[g] = d > 0.0f ? (int)ceilf((hi[g] + off[g]) / (top * d)) : 0;
        if (sc[g] > 63) sc[g] = 63;
        step[g] = d * (float)sc[g];
        shift[g] = dmin * (float)m[g];
    }
    td_pack_k4_scales(sc, m, s);
}

static void td_quantize_q4_K(const float *x, void *dst, int64_t n)
{
    td_block_q4_K *b = dst;
    for (int64_t i = 0; i < n / TD_QK_K; i++, b++, x += TD_QK_K) {
        float step[8], shift[8];
        td_k4_block_scales(x, 15.0f, &b->d, &b->dmin, b->scales, step, shift);
        for (int g = 0; g < 8; g++) {
            uint8_t *q = b->qs + 32 * (g / 2);
            for (int l = 0; l < 32; l++) {
                int v = td_level(x[32 * g + l] + shift[g], step[g], 0, 15);
                q[l] = g % 2 ? (uint8_t)((q[l] & 0x0f) | v << 4) : (uint8_t)v;
            }
        }
    }
}

/* Q4_K's layout plus a fifth bit per value: levels 0..31, bit 4 of element l of group g in qh[l] bit g */
static void td_quantize_q5_K(const float *x, void *dst, int64_t n)
{
    td_block_q5_K *b = dst;
    for (int64_t i = 0; i < n / TD_QK_K; i++, b++, x += TD_QK_K) {
        float step[8], shift[8];
        td_k4_block_scales(x, 31.0f, &b->d, &b->dmin, b->scales, step, shift);
        memset(b->qh, 0, sizeof b->qh);
        for (int g = 0; g < 8; g++) {
            uint8_t *q = b->qs + 32 * (g / 2);
            for (int l = 0; l < 32; l++) {
                int v = td_level(x[32 * g + l] + shift[g], step[g], 0, 31);
                q[l] = g % 2 ? (uint8_t)((q[l] & 0x0f) | (v & 15) << 4) : (uint8_t)(v & 15);
                b->qh[l] |= (uint8_t)((v >> 4) << g);
            }
        }
    }
}

/* x = d * sc * (q - 32), 16 groups of 16 with signed 8-bit sc; levels -31..31 */
static void td_quantize_q6_K(const float *x, void *dst, int64_t n)
{
    td_block_q6_K *b = dst;
    for (int64_t i = 0; i < n / TD_QK_K; i++, b++, x += TD_QK_K) {
        float amax[16], top = 0.0f;
        for (int g = 0; g < 16; g++) {
            amax[g] = td_absmax(x + 16 * g, 16);
            top = td_max(top, amax[g]);
        }
        b->d = td_f16_round_up(top / (31.0f * 127.0f));
        float d = td_f16_to_f32(b->d);
        memset(b->ql, 0, sizeof b->ql);
        memset(b->qh, 0, sizeof b->qh);
        for (int g = 0; g < 16; g++) {
            int sc = d > 0.0f ? (int)ceilf(amax[g] / (31.0f * d)) : 0;
            b->scales[g] = (int8_t)(sc > 127 ? 127 : sc);
        }
        /* element (half, j, l): low nibble in ql[64*half + 32*(j%2) + l] (j < 2 low, else high nibble),
         * high bit-pair j in qh[32*half + l]; group half*8 + j*2 + l/16 (as td_quant_ref.c reads it) */
        for (int e = 0; e < TD_QK_K; e++) {
            int half = e / 128, j = (e % 128) / 32, l = e % 32, g = e / 16;
            float step = d * (float)b->scales[g];
            int q = td_level(x[e], step, -31, 31) + 32;
            uint8_t *lo = &b->ql[64 * half + 32 * (j % 2) + l];
            *lo |= (uint8_t)(j < 2 ? (q & 0x0f) : (q & 0x0f) << 4);
            b->qh[32 * half + l] |= (uint8_t)((q >> 4) << (2 * j));
        }
    }
}

td_quantize_fn td_quantize_row(td_type t)
{
    switch (t) {
    case TD_TYPE_F32: return td_quantize_f32;
    case TD_TYPE_F16: return td_quantize_f16;
    case TD_TYPE_BF16: return td_quantize_bf16;
    case TD_TYPE_Q8_0: return td_quantize_q8_0;
    case TD_TYPE_Q5_0: return td_quantize_q5_0;
    case TD_TYPE_Q4_K: return td_quantize_q4_K;
    case TD_TYPE_Q5_K: return td_quantize_q5_K;
    case TD_TYPE_Q6_K: return td_quantize_q6_K;
    default: return NULL;
    }
}
