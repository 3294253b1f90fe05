/* Reference dequantizers of the GGUF block formats. Each reproduces ggml's float32 values exactly, which
 * fixes the order of the float operations: scales are formed first (d * sub-scale), then applied to the
 * integer level, then the min or delta is subtracted, each step rounded to float. Block bytes are read
 * through the structs of td_blocks.h; multi-byte fields are little-endian, as in the files. */
#include "td_quant.h"

#include "td_blocks.h"
#include "td_float.h"
#include "td_iq_tables.h"
#include "td_quant_impl.h"

#include <string.h>

static inline float td_h(td_half h) { return td_f16_to_f32(h); }

/* ------------------------------------------------------------------ 32-element blocks */

static void td_q4_0_to_float(const void *src, float *y, int64_t n)
{
    const td_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / TD_QK4_0; i++, b++, y += TD_QK4_0) {
        float d = td_h(b->d);
        for (int j = 0; j < TD_QK4_0 / 2; j++) {
            y[j] = (float)((b->qs[j] & 0x0f) - 8) * d;
            y[j + 16] = (float)((b->qs[j] >> 4) - 8) * d;
        }
    }
}

static void td_q5_0_to_float(const void *src, float *y, int64_t n)
{
    const td_block_q5_0 *b = src;
    for (int64_t i = 0; i < n / TD_QK5_0; i++, b++, y += TD_QK5_0) {
        float d = td_h(b->d);
        uint32_t qh = (uint32_t)b->qh[0] | (uint32_t)b->qh[1] << 8 | (uint32_t)b->qh[2] << 16 |
                      (uint32_t)b->qh[3] << 24; /* bit j: fifth bit of element j */
        for (int j = 0; j < TD_QK5_0 / 2; j++) {
            int lo = (b->qs[j] & 0x0f) | (int)((qh >> j) & 1) << 4;
            int hi = (b->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)(lo - 16) * d;
            y[j + 16] = (float)(hi - 16) * d;
        }
    }
}

static void td_q8_0_to_float(const void *src, float *y, int64_t n)
{
    const td_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / TD_QK8_0; i++, b++, y += TD_QK8_0) {
        float d = td_h(b->d);
        for (int j = 0; j < TD_QK8_0; j++) y[j] = (float)b->qs[j] * d;
    }
}

static void td_iq4_nl_to_float(const void *src, float *y, int64_t n)
{
    const td_block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / TD_QK4_NL; i++, b++, y += TD_QK4_NL) {
        float d = td_h(b->d);
        for (int j = 0; j < TD_QK4_NL / 2; j++) {
            y[j] = d * (float)td_iq4nl_values[b->qs[j] & 0x0f];
            y[j + 16] = d * (float)td_iq4nl_values[b->qs[j] >> 4];
        }
    }
}

/* ------------------------------------------------------------------ K-quants
 * Elements of a 256 super-block come in two halves of 128. Inside a half, the 2-bit formats (Q2_K,
 * Q3_K) take their levels from 32 bytes, four bit-pairs per byte: element (half, j, l) with j = 0..3,
 * l = 0..31 is bit-pair j of byte l; its group of 16 is half*8 + j*2 + l/16. */

static void td_q2_K_to_float(const void *src, float *y, int64_t n)
{
    const td_block_q2_K *b = src;
    for (int64_t i = 0; i < n / TD_QK_K; i++, b++) {
        float d = td_h(b->d), dmin = td_h(b->dmin);
        for (int e = 0; e < TD_QK_K; e++) {
            int half = e / 128, j = (e % 128) / 32, l = e % 32;
            uint8_t sc = b->scales[half * 8 + j * 2 + l / 16];
            int q = (b->qs[half * 32 + l] >> (2 * j)) & 3;
            float dl = d * (float)(sc & 0x0f), ml = dmin * (float)(sc >> 4);
            *y++ = dl * (float)q - ml;
        }
    }
}

static void td_q3_K_to_float(const void *src, float *y, int64_t n)
{
    const td_block_q3_K *b = src;
    for (int64_t i = 0; i < n / TD_QK_K; i++, b++) {
        float d = td_h(b->d);
        for (int e = 0; e < TD_QK_K; e++) {
            int half = e / 128, j = (e % 128) / 32, l = e % 32;
            float dl = d * (float)td_q3_K_scale(b->scales, half * 8 + j * 2 + l / 16);
            int q = (b->qs[half * 32 + l] >> (2 * j)) & 3;
            int high = (b->hmask[l] >> (half * 4 + j)) & 1; /* a clear high bit means q - 4 */
            *y++ = dl * (float)(q - (high ? 0 : 4));
        }
    }
}

/* Q4_K and Q5_K: 8 groups of 32; group pair (2p, 2p+1) reads the low then high nibbles of bytes
 * qs[32p .. 32p+31]; Q5_K's fifth bit of element l in group g is bit g of qh[l]. */
static void td_q4_K_to_float(const void *src, float *y, int64_t n)
{
    const td_block_q4_K *b = src;
    for (int64_t i = 0; i < n / TD_QK_K; i++, b++) {
        float d = td_h(b->d), dmin = td_h(b->dmin);
        for (int g = 0; g < 8; g++) {
            int sc, m;
            td_k4_scale_min(b->scales, g, &sc, &m);
            float dl = d * (float)sc, ml = dmin * (float)m;
            const uint8_t *q = b->qs + 32 * (g / 2);
            for (int l = 0; l < 32; l++) {
                int v = g % 2 ? q[l] >> 4 : q[l] & 0x0f;
                *y++ = dl * (float)v - ml;
            }
        }
    }
}

static void td_q5_K_to_float(const void *src, float *y, int64_t n)
{
    const td_block_q5_K *b = src;
    for (int64_t i = 0; i < n / TD_QK_K; i++, b++) {
        float d = td_h(b->d), dmin = td_h(b->dmin);
        for (int g = 0; g < 8; g++) {
            int sc, m;
            td_k4_scale_min(b->scales, g, &sc, &m);
            float dl = d * (float)sc, ml = dmin * (float)m;
            const uint8_t *q = b->qs + 32 * (g / 2);
            for (int l = 0; l < 32; l++) {
                int v = (g % 2 ? q[l] >> 4 : q[l] & 0x0f) | ((b->qh[l] >> g) & 1) << 4;
                *y++ = dl * (float)v - ml;
            }
        }
    }
}

/* Q6_K: per half of 128, 64 bytes of low nibbles and 32 bytes of high bit-pairs. Element (half, j, l),
 * j = 0..3, l = 0..31: low nibble from ql[64*half + 32*(j%2) + l] (j < 2 low, else high nibble), high
 * pair j from qh[32*half + l]; group of 16 is half*8 + j*2 + l/16; level q - 32. */
static void td_q6_K_to_float(const void *src, float *y, int64_t n)
{
    const td_block_q6_K *b = src;
    for (int64_t i = 0; i < n / TD_QK_K; i++, b++) {
        float d = td_h(b->d);
        for (int e = 0; e < TD_QK_K; e++) {
            int half = e / 128, j = (e % 128) / 32, l = e % 32;
            uint8_t lo_byte = b->ql[64 * half + 32 * (j % 2) + l];
            int lo = j < 2 ? lo_byte & 0x0f : lo_byte >> 4;
            int hi = (b->qh[32 * half + l] >> (2 * j)) & 3;
            int q = (lo | hi << 4) - 32;
            *y++ = d * (float)b->scales[half * 8 + j * 2 + l / 16] * (float)q;
        }
    }
}

static void td_q8_K_to_float(const void *src, float *y, int64_t n)
{
    const td_block_q8_K *b = src;
    for (int64_t i = 0; i < n / TD_QK_K; i++, b++, y += TD_QK_K) {
        float d;
        memcpy(&d, &b->d, sizeof d);
        for (int j = 0; j < TD_QK_K; j++) y[j] = d * (float)b->qs[j];
    }
}

/* ------------------------------------------------------------------ IQ formats */

/* IQ4_XS: 8 groups of 32, each a 6-bit scale (bias 32): low 4 bits in nibble g%2 of scales_l[g/2], high
 * 2 bits at bit 2g of scales_h; levels from the IQ4_NL table, low nibbles then high nibbles. */
static void td_iq4_xs_to_float(const void *src, float *y, int64_t n)
{
    const td_block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / TD_QK_K; i++, b++) {
        float d = td_h(b->d);
        for (int g = 0; g < 8; g++, y += 32) {
            int ls = ((b->scales_l[g / 2] >> (4 * (g % 2))) & 0x0f) | ((b->scales_h >> (2 * g)) & 3) << 4;
            float dl = d * (float)(ls - 32);
            const uint8_t *q = b->qs + 16 * g;
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)td_iq4nl_values[q[j] & 0x0f];
                y[j + 16] = dl * (float)td_iq4nl_values[q[j] >> 4];
            }
        }
    }
}

/* IQ2_XXS: per group of 32 two little-endian uint32: the first holds four 8-bit grid indices (one per
 * 8 values), the second four 7-bit sign codes and, in its top 4 bits, the scale s: d * (0.5 + s) / 4. */
static void td_iq2_xxs_to_float(const void *src, float *y, int64_t n)
{
    const td_block_iq2_xxs *b = src;
    for (int64_t i = 0; i < n / TD_QK_K; i++, b++) {
        float d = td_h(b->d);
        for (int g = 0; g < 8; g++) {
            const uint16_t *q = b->qs + 4 * g;
            uint32_t idx = (uint32_t)q[0] | (uint32_t)q[1] << 16;
            uint32_t aux = (uint32_t)q[2] | (uint32_t)q[3] << 16;
            float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
            for (int k = 0; k < 4; k++, y += 8) {
                uint64_t grid = td_iq2xxs_grid[(idx >> (8 * k)) & 0xff];
                uint8_t signs = td_iq2_signs[(aux >> (7 * k)) & 127];
                for (int j = 0; j < 8; j++)
                    y[j] = db * (float)td_grid_byte(grid, j) * ((signs & td_iq2_sign_mask[j]) ? -1.0f : 1.0f);
            }
        }
    }
}

#define TD_IQ1S_DELTA 0.125f

/* IQ1_S: per group of 32, qh holds the 3 high bits of each of the four 11-bit grid indices (bits 3k),
 * a 3-bit scale (bits 12..14: d * (2s + 1)) and the sign of the delta (bit 15) added to each level. */
static void td_iq1_s_to_float(const void *src, float *y, int64_t n)
{
    const td_block_iq1_s *b = src;
    for (int64_t i = 0; i < n / TD_QK_K; i++, b++) {
        float d = td_h(b->d);
        for (int g = 0; g < 8; g++) {
            uint16_t qh = b->qh[g];
            float dl = d * (float)(2 * ((qh >> 12) & 7) + 1);
            float delta = (qh & 0x8000) ? -TD_IQ1S_DELTA : TD_IQ1S_DELTA;
            for (int k = 0; k < 4; k++, y += 8) {
                uint64_t grid = td_iq1s_grid[b->qs[4 * g + k] | ((qh >> (3 * k)) & 7) << 8];
                for (int j = 0; j < 8; j++) y[j] = dl * ((float)(int8_t)td_grid_byte(grid, j) + delta);
            }
        }
    }
}

td_quant_to_float_fn td_quant_to_float(td_type t)
{
    switch (t) {
    case TD_TYPE_Q4_0: return td_q4_0_to_float;
    case TD_TYPE_Q5_0: return td_q5_0_to_float;
    case TD_TYPE_Q8_0: return td_q8_0_to_float;
    case TD_TYPE_Q2_K: return td_q2_K_to_float;
    case TD_TYPE_Q3_K: return td_q3_K_to_float;
    case TD_TYPE_Q4_K: return td_q4_K_to_float;
    case TD_TYPE_Q5_K: return td_q5_K_to_float;
    case TD_TYPE_Q6_K: return td_q6_K_to_float;
    case TD_TYPE_Q8_K: return td_q8_K_to_float;
    case TD_TYPE_IQ4_NL: return td_iq4_nl_to_float;
    case TD_TYPE_IQ4_XS: return td_iq4_xs_to_float;
    case TD_TYPE_IQ2_XXS: return td_iq2_xxs_to_float;
    case TD_TYPE_IQ1_S: return td_iq1_s_to_float;
    default: return NULL;
    }
}
