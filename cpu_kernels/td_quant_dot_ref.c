/* Reference dot products of quantized weight rows with Q8_0 / Q8_K activations, the activation
 * quantizers, and the float dot. Integer parts are summed exactly in int32 per (sub-)block; each block's
 * contribution is then scaled in float and accumulated in float, block after block. */
#include "td_quant_dot.h"

#include "td_blocks.h"
#include "td_dequant.h"
#include "td_float.h"
#include "td_iq_tables.h"
#include "td_quant_impl.h"

#include <math.h>
#include <string.h>

static inline float td_h(td_half h) { return td_f16_to_f32(h); }

/* ------------------------------------------------------------------ activation quantizers */

static int td_round_level(float v)
{
    float r = nearbyintf(v); /* round half to even in the default rounding mode */
    if (r > 127.0f) r = 127.0f;
    if (r < -127.0f) r = -127.0f;
    return (int)r;
}

void td_quantize_row_q8_0_ref(const float *x, void *dst, int64_t n)
{
    td_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / TD_QK8_0; i++, b++, x += TD_QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < TD_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = d > 0.0f ? 1.0f / d : 0.0f;
        b->d = td_f32_to_f16(d);
        for (int j = 0; j < TD_QK8_0; j++) b->qs[j] = (int8_t)td_round_level(x[j] * id);
    }
}

void td_quantize_row_q8_K_ref(const float *x, void *dst, int64_t n)
{
    td_block_q8_K *b = dst;
    for (int64_t i = 0; i < n / TD_QK_K; i++, b++, x += TD_QK_K) {
        float amax = 0.0f;
        for (int j = 0; j < TD_QK_K; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = d > 0.0f ? 1.0f / d : 0.0f;
        b->d = d;
        for (int g = 0; g < TD_QK_K / 16; g++) {
            int sum = 0;
            for (int j = 16 * g; j < 16 * g + 16; j++) {
                b->qs[j] = (int8_t)td_round_level(x[j] * id);
                sum += b->qs[j];
            }
            b->bsums[g] = (int16_t)sum;
        }
    }
}

/* ------------------------------------------------------------------ 32-element blocks x Q8_0 */

static float td_dot_q4_0(const void *w, const void *a, int64_t n)
{
    const td_block_q4_0 *x = w;
    const td_block_q8_0 *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / TD_QK4_0; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++)
            isum += ((x[i].qs[j] & 0x0f) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        sum += td_h(x[i].d) * td_h(y[i].d) * (float)isum;
    }
    return sum;
}

static float td_dot_q5_0(const void *w, const void *a, int64_t n)
{
    const td_block_q5_0 *x = w;
    const td_block_q8_0 *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / TD_QK5_0; i++) {
        uint32_t qh = (uint32_t)x[i].qh[0] | (uint32_t)x[i].qh[1] << 8 | (uint32_t)x[i].qh[2] << 16 |
                      (uint32_t)x[i].qh[3] << 24;
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int lo = ((x[i].qs[j] & 0x0f) | (int)((qh >> j) & 1) << 4) - 16;
            int hi = ((x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - 16;
            isum += lo * y[i].qs[j] + hi * y[i].qs[j + 16];
        }
        sum += td_h(x[i].d) * td_h(y[i].d) * (float)isum;
    }
    return sum;
}

static float td_dot_q8_0(const void *w, const void *a, int64_t n)
{
    const td_block_q8_0 *x = w;
    const td_block_q8_0 *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / TD_QK8_0; i++) {
        int isum = 0;
        for (int j = 0; j < TD_QK8_0; j++) isum += x[i].qs[j] * y[i].qs[j];
        sum += td_h(x[i].d) * td_h(y[i].d) * (float)isum;
    }
    return sum;
}

static float td_dot_iq4_nl(const void *w, const void *a, int64_t n)
{
    const td_block_iq4_nl *x = w;
    const td_block_q8_0 *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / TD_QK4_NL; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++)
            isum += td_iq4nl_values[x[i].qs[j] & 0x0f] * y[i].qs[j] + td_iq4nl_values[x[i].qs[j] >> 4] * y[i].qs[j + 16];
        sum += td_h(x[i].d) * td_h(y[i].d) * (float)isum;
    }
    return sum;
}

/* ------------------------------------------------------------------ super-blocks x Q8_K
 * The level of element e of each format is decoded exactly as in td_quant_ref.c; see the comments there
 * for the bit layouts. In every format, element e belongs to scale group e / (group size). */

static float td_dot_q2_K(const void *w, const void *a, int64_t n)
{
    const td_block_q2_K *x = w;
    const td_block_q8_K *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / TD_QK_K; i++) {
        int gsum[16] = {0}; /* level * activation per group of 16 (element e is in group e/16) */
        for (int e = 0; e < TD_QK_K; e++) {
            int half = e / 128, j = (e % 128) / 32, l = e % 32;
            gsum[e / 16] += ((x[i].qs[half * 32 + l] >> (2 * j)) & 3) * y[i].qs[e];
        }
        int isum = 0, msum = 0;
        for (int g = 0; g < 16; g++) {
            isum += (x[i].scales[g] & 0x0f) * gsum[g];
            msum += (x[i].scales[g] >> 4) * y[i].bsums[g];
        }
        sum += y[i].d * (td_h(x[i].d) * (float)isum - td_h(x[i].dmin) * (float)msum);
    }
    return sum;
}

static float td_dot_q3_K(const void *w, const void *a, int64_t n)
{
    const td_block_q3_K *x = w;
    const td_block_q8_K *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / TD_QK_K; i++) {
        int isum = 0;
        for (int e = 0; e < TD_QK_K; e++) {
            int half = e / 128, j = (e % 128) / 32, l = e % 32;
            int q = ((x[i].qs[half * 32 + l] >> (2 * j)) & 3) - (((x[i].hmask[l] >> (half * 4 + j)) & 1) ? 0 : 4);
            isum += td_q3_K_scale(x[i].scales, half * 8 + j * 2 + l / 16) * q * y[i].qs[e];
        }
        sum += td_h(x[i].d) * y[i].d * (float)isum;
    }
    return sum;
}

/* Q4_K and Q5_K: groups of 32 follow element order, so the min term uses Q8_K's bsums. */
static float td_dot_q45_K(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, td_half d, td_half dmin,
                          const td_block_q8_K *y)
{
    int isum = 0, msum = 0;
    for (int g = 0; g < 8; g++) {
        int sc, m;
        td_k4_scale_min(scales, g, &sc, &m);
        int gsum = 0;
        for (int l = 0; l < 32; l++) {
            uint8_t byte = qs[32 * (g / 2) + l];
            int v = g % 2 ? byte >> 4 : byte & 0x0f;
            if (qh) v |= ((qh[l] >> g) & 1) << 4;
            gsum += v * y->qs[32 * g + l];
        }
        isum += sc * gsum;
        msum += m * (y->bsums[2 * g] + y->bsums[2 * g + 1]);
    }
    return y->d * (td_h(d) * (float)isum - td_h(dmin) * (float)msum);
}

static float td_dot_q4_K(const void *w, const void *a, int64_t n)
{
    const td_block_q4_K *x = w;
    const td_block_q8_K *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / TD_QK_K; i++) sum += td_dot_q45_K(x[i].scales, x[i].qs, NULL, x[i].d, x[i].dmin, &y[i]);
    return sum;
}

static float td_dot_q5_K(const void *w, const void *a, int64_t n)
{
    const td_block_q5_K *x = w;
    const td_block_q8_K *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / TD_QK_K; i++)
        sum += td_dot_q45_K(x[i].scales, x[i].qs, x[i].qh, x[i].d, x[i].dmin, &y[i]);
    return sum;
}

static float td_dot_q6_K(const void *w, const void *a, int64_t n)
{
    const td_block_q6_K *x = w;
    const td_block_q8_K *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / TD_QK_K; i++) {
        int isum = 0;
        for (int e = 0; e < TD_QK_K; e++) {
            int half = e / 128, j = (e % 128) / 32, l = e % 32;
            uint8_t lo_byte = x[i].ql[64 * half + 32 * (j % 2) + l];
            int lo = j < 2 ? lo_byte & 0x0f : lo_byte >> 4;
            int q = (lo | ((x[i].qh[32 * half + l] >> (2 * j)) & 3) << 4) - 32;
            isum += x[i].scales[half * 8 + j * 2 + l / 16] * q * y[i].qs[e];
        }
        sum += td_h(x[i].d) * y[i].d * (float)isum;
    }
    return sum;
}

static float td_dot_iq4_xs(const void *w, const void *a, int64_t n)
{
    const td_block_iq4_xs *x = w;
    const td_block_q8_K *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / TD_QK_K; i++) {
        int isum = 0;
        for (int g = 0; g < 8; g++) {
            int ls = ((x[i].scales_l[g / 2] >> (4 * (g % 2))) & 0x0f) | ((x[i].scales_h >> (2 * g)) & 3) << 4;
            const uint8_t *q = x[i].qs + 16 * g;
            const int8_t *qa = y[i].qs + 32 * g;
            int gsum = 0;
            for (int j = 0; j < 16; j++)
                gsum += td_iq4nl_values[q[j] & 0x0f] * qa[j] + td_iq4nl_values[q[j] >> 4] * qa[j + 16];
            isum += (ls - 32) * gsum;
        }
        sum += td_h(x[i].d) * y[i].d * (float)isum;
    }
    return sum;
}

/* value = d * (0.5 + s) / 4 * level = d / 8 * (2s + 1) * level */
static float td_dot_iq2_xxs(const void *w, const void *a, int64_t n)
{
    const td_block_iq2_xxs *x = w;
    const td_block_q8_K *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / TD_QK_K; i++) {
        int isum = 0;
        for (int g = 0; g < 8; g++) {
            const uint16_t *q = x[i].qs + 4 * g;
            uint32_t idx = (uint32_t)q[0] | (uint32_t)q[1] << 16;
            uint32_t aux = (uint32_t)q[2] | (uint32_t)q[3] << 16;
            int gsum = 0;
            for (int k = 0; k < 4; k++) {
                uint64_t grid = td_iq2xxs_grid[(idx >> (8 * k)) & 0xff];
                uint8_t signs = td_iq2_signs[(aux >> (7 * k)) & 127];
                for (int j = 0; j < 8; j++) {
                    int v = td_grid_byte(grid, j) * y[i].qs[32 * g + 8 * k + j];
                    gsum += (signs & td_iq2_sign_mask[j]) ? -v : v;
                }
            }
            isum += (2 * (int)(aux >> 28) + 1) * gsum;
        }
        sum += 0.125f * td_h(x[i].d) * y[i].d * (float)isum;
    }
    return sum;
}

/* value = d * (2s + 1) * (level +- 1/8) = d / 8 * (2s + 1) * (8 level +- 1) */
static float td_dot_iq1_s(const void *w, const void *a, int64_t n)
{
    const td_block_iq1_s *x = w;
    const td_block_q8_K *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / TD_QK_K; i++) {
        int isum = 0;
        for (int g = 0; g < 8; g++) {
            uint16_t qh = x[i].qh[g];
            int gsum = 0, asum = 0;
            for (int k = 0; k < 4; k++) {
                uint64_t grid = td_iq1s_grid[x[i].qs[4 * g + k] | ((qh >> (3 * k)) & 7) << 8];
                for (int j = 0; j < 8; j++) {
                    int qa = y[i].qs[32 * g + 8 * k + j];
                    gsum += (int8_t)td_grid_byte(grid, j) * qa;
                    asum += qa;
                }
            }
            int delta_sign = (qh & 0x8000) ? -1 : 1;
            isum += (2 * ((qh >> 12) & 7) + 1) * (8 * gsum + delta_sign * asum);
        }
        sum += 0.125f * td_h(x[i].d) * y[i].d * (float)isum;
    }
    return sum;
}

/* ------------------------------------------------------------------ dispatch */

td_type td_quant_vec_dot_type(td_type t)
{
    switch (t) {
    case TD_TYPE_Q4_0:
    case TD_TYPE_Q5_0:
    case TD_TYPE_Q8_0:
    case TD_TYPE_IQ4_NL: return TD_TYPE_Q8_0;
    case TD_TYPE_Q2_K:
    case TD_TYPE_Q3_K:
    case TD_TYPE_Q4_K:
    case TD_TYPE_Q5_K:
    case TD_TYPE_Q6_K:
    case TD_TYPE_IQ4_XS:
    case TD_TYPE_IQ2_XXS:
    case TD_TYPE_IQ1_S: return TD_TYPE_Q8_K;
    default: return TD_TYPE_COUNT;
    }
}

td_quant_vec_dot_fn td_quant_vec_dot(td_type t)
{
    switch (t) {
    case TD_TYPE_Q4_0: return td_dot_q4_0;
    case TD_TYPE_Q5_0: return td_dot_q5_0;
    case TD_TYPE_Q8_0: return td_dot_q8_0;
    case TD_TYPE_IQ4_NL: return td_dot_iq4_nl;
    case TD_TYPE_Q2_K: return td_dot_q2_K;
    case TD_TYPE_Q3_K: return td_dot_q3_K;
    case TD_TYPE_Q4_K: return td_dot_q4_K;
    case TD_TYPE_Q5_K: return td_dot_q5_K;
    case TD_TYPE_Q6_K: return td_dot_q6_K;
    case TD_TYPE_IQ4_XS: return td_dot_iq4_xs;
    case TD_TYPE_IQ2_XXS: return td_dot_iq2_xxs;
    case TD_TYPE_IQ1_S: return td_dot_iq1_s;
    default: return NULL;
    }
}

float td_quant_dot_f32_ref(td_type t, const void *w, const float *x, int64_t n)
{
    td_to_float_fn f = td_to_float(t);
    if (!f) return NAN;
    const td_type_traits *tt = td_type_info(t);
    /* a chunk of whole blocks small enough for the stack */
    int64_t chunk = tt->block_elems >= 256 ? tt->block_elems : 256 / tt->block_elems * tt->block_elems;
    size_t chunk_bytes = (size_t)(chunk / tt->block_elems) * (size_t)tt->block_bytes;
    float buf[256];
    double sum = 0.0;
    const uint8_t *p = w;
    for (int64_t i = 0; i < n; i += chunk, p += chunk_bytes) {
        int64_t m = n - i < chunk ? n - i : chunk;
        f(p, buf, m);
        for (int64_t j = 0; j < m; j++) sum += (double)buf[j] * (double)x[i + j];
    }
    return (float)sum;
}
