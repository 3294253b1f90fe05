/* The quantizers, through the reference dequantizers: every element within the bound its format allows
 * (half a step of its stored scale, see td_quantize.h), the scales no coarser than the data needs, and
 * the error compared with ggml's own quantization of the same rows (quant_vectors.safetensors). */
#include "td_test.h"

#include "td_blocks.h"
#include "td_dequant.h"
#include "td_float.h"
#include "td_quant_impl.h"
#include "td_quantize.h"
#include "td_safetensors.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N 4096
#define SLOP (8 * FLT_EPSILON) /* float rounding of the dequantizer's two or three operations */

/* Rows that exercise every corner: gaussian-ish, outliers, zeros, one-signed groups, constants, tiny
 * values (f16 subnormal scales), large values. */
static void make_data(int kind, float *x, uint64_t *rng)
{
    for (int i = 0; i < N; i++) {
        float u = td_test_randf(rng) + td_test_randf(rng) + td_test_randf(rng);
        switch (kind) {
        case 0: x[i] = u; break;
        case 1: x[i] = i % 97 == 0 ? 40.0f * u : 0.01f * u; break;
        case 2: x[i] = (i / 32) % 3 == 0 ? 0.0f : u; break;
        case 3: x[i] = (i / 16) % 2 ? fabsf(u) + 1.0f : -fabsf(u) - 0.5f; break;
        case 4: x[i] = (i / 64) % 2 ? 0.25f : -3.0f; break;
        case 5: x[i] = 1e-6f * u; break;
        default: x[i] = 2000.0f * u; break;
        }
    }
}
#define N_KINDS 7

static float h2f(td_half h) { return td_f16_to_f32(h); }

/* Checks one type on one row; returns the sum of squared errors. */
static double check_type(td_type t, const float *x, int kind)
{
    static _Alignas(64) uint8_t q[N * 4];
    float back[N];
    td_quantize_row(t)(x, q, N);
    td_to_float(t)(q, back, N);
    double sse = 0;
    int bad = 0, loose = 0;
    for (int i = 0; i < N; i++) {
        double err = fabs((double)x[i] - back[i]), bound, tight = INFINITY; /* tight: the largest sane step */
        double amax = 0;
        switch (t) {
        case TD_TYPE_BF16: bound = 0x1p-8 * fabs(x[i]); break; /* 8 significant bits */
        case TD_TYPE_F16: bound = 0x1p-11 * fabs(x[i]) + 0x1p-25; break;
        case TD_TYPE_Q8_0: {
            const td_block_q8_0 *b = (const td_block_q8_0 *)q + i / 32;
            for (int k = i / 32 * 32; k < i / 32 * 32 + 32; k++) amax = fmax(amax, fabs(x[k]));
            bound = 0.5 * h2f(b->d) + SLOP * fabs(x[i]);
            tight = amax / 127 * (1 + 0x1p-10) + 0x1p-24;
            if (h2f(b->d) > tight) loose++;
            break;
        }
        case TD_TYPE_Q5_0: {
            const td_block_q5_0 *b = (const td_block_q5_0 *)q + i / 32;
            for (int k = i / 32 * 32; k < i / 32 * 32 + 32; k++) amax = fmax(amax, fabs(x[k]));
            bound = 0.5 * h2f(b->d) + SLOP * fabs(x[i]);
            tight = amax / 15 * (1 + 0x1p-10) + 0x1p-24;
            if (h2f(b->d) > tight) loose++;
            break;
        }
        case TD_TYPE_Q4_K:
        case TD_TYPE_Q5_K: { /* the same scales; Q5_K's levels go to 31, and its blocks carry qh */
            double top = t == TD_TYPE_Q4_K ? 15 : 31;
            size_t bsz = t == TD_TYPE_Q4_K ? sizeof(td_block_q4_K) : sizeof(td_block_q5_K);
            const uint8_t *blk = q + bsz * (size_t)(i / 256); /* both lead with d, dmin and the scales */
            td_half bd, bdmin;
            memcpy(&bd, blk, 2);
            memcpy(&bdmin, blk + 2, 2);
            int g = (i % 256) / 32, sc, m;
            td_k4_scale_min(blk + 4, g, &sc, &m);
            double step = (double)(h2f(bd) * (float)sc), shift = (double)(h2f(bdmin) * (float)m);
            double lo = 0, hi = 0, maxrange = 0, maxneg = 0;
            for (int k = i / 32 * 32; k < i / 32 * 32 + 32; k++) {
                lo = fmin(lo, x[k]);
                hi = fmax(hi, x[k]);
            }
            for (int k = i / 256 * 256; k < i / 256 * 256 + 256; k++) maxneg = fmax(maxneg, -x[k]);
            double dmin_tight = maxneg / 63 * (1 + 0x1p-10) + 0x1p-24;
            for (int gg = 0; gg < 8; gg++) {
                double l = 0, h = 0;
                for (int k = i / 256 * 256 + 32 * gg; k < i / 256 * 256 + 32 * gg + 32; k++) {
                    l = fmin(l, x[k]);
                    h = fmax(h, x[k]);
                }
                maxrange = fmax(maxrange, h - l + dmin_tight);
            }
            bound = 0.5 * step + SLOP * (fabs(x[i]) + shift + top * step);
            /* one 6-bit step of the scale above the group's need, the offset one step above its min */
            tight = (hi - lo + dmin_tight) / top + maxrange / (top * 63) * (1 + 0x1p-10) + 0x1p-24;
            if (step > tight * (1 + 1e-6) || (double)h2f(bdmin) > dmin_tight) loose++;
            break;
        }
        case TD_TYPE_Q6_K: {
            const td_block_q6_K *b = (const td_block_q6_K *)q + i / 256;
            double step = (double)(h2f(b->d) * (float)b->scales[(i % 256) / 16]), top = 0;
            for (int k = i / 16 * 16; k < i / 16 * 16 + 16; k++) amax = fmax(amax, fabs(x[k]));
            for (int k = i / 256 * 256; k < i / 256 * 256 + 256; k++) top = fmax(top, fabs(x[k]));
            bound = 0.5 * step + SLOP * (fabs(x[i]) + 31 * step);
            tight = amax / 31 + top / (31 * 127) * (1 + 0x1p-10) + 0x1p-24;
            if (step > tight * (1 + 1e-6)) loose++;
            break;
        }
        default: bound = 0; break;
        }
        if (err > bound) {
            if (bad++ < 3)
                TD_CHECKF(false, "%s data %d element %d: %.9g -> %.9g, error %.3g > bound %.3g", td_type_name(t), kind,
                          i, x[i], back[i], err, bound);
        }
        sse += err * err;
    }
    TD_CHECKF(bad == 0, "%s data %d: %d elements out of bounds", td_type_name(t), kind, bad);
    TD_CHECKF(loose == 0, "%s data %d: %d scales coarser than the data needs", td_type_name(t), kind, loose);
    return sse;
}

/* Our error against ggml's on ggml's own test rows: reported, and required to stay within 1.5x in RMS. */
static void compare_with_ggml(void)
{
    td_tensor_dir *dir;
    if (td_tensor_dir_create(&dir) != TD_OK) return;
    if (td_st_load(td_test_fixture("gguf/quant_vectors.safetensors"), dir, NULL) != TD_OK) {
        td_tensor_dir_free(dir);
        return;
    }
    const char *names[] = {"Q8_0", "Q5_0", "Q4_K", "Q5_K", "Q6_K", "BF16", "F16"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char sn[32], dn[32];
        snprintf(sn, sizeof sn, "%s.src", names[k]);
        snprintf(dn, sizeof dn, "%s.deq", names[k]);
        const td_tensor *src = td_tensor_dir_find(dir, sn), *deq = td_tensor_dir_find(dir, dn);
        td_type t;
        if (!src || !deq || !td_type_from_name(names[k], &t)) continue;
        int64_t n = td_tensor_numel(src);
        float *x = malloc((size_t)n * 4), *ref = malloc((size_t)n * 4), *back = malloc((size_t)n * 4);
        uint8_t *q = malloc((size_t)n * 4);
        memcpy(x, src->data, (size_t)n * 4);
        memcpy(ref, deq->data, (size_t)n * 4);
        td_quantize_row(t)(x, q, n);
        td_to_float(t)(q, back, n);
        /* per row, as the rows differ in scale by 3e4 */
        double worst = 0;
        for (int64_t r = 0; r < n / 512; r++) {
            double ours = 0, theirs = 0;
            for (int64_t i = 512 * r; i < 512 * r + 512; i++) {
                ours += ((double)x[i] - back[i]) * ((double)x[i] - back[i]);
                theirs += ((double)x[i] - ref[i]) * ((double)x[i] - ref[i]);
            }
            double ratio = theirs > 0 ? sqrt(ours / theirs) : (ours > 0 ? INFINITY : 1);
            worst = fmax(worst, ratio);
        }
        fprintf(stderr, "%-5s RMS error vs ggml's quantizer on its test rows: worst row %.2fx\n", names[k], worst);
        TD_CHECKF(worst <= 1.5, "%s: RMS error %.2fx ggml's", names[k], worst);
        free(x);
        free(ref);
        free(back);
        free(q);
    }
    td_tensor_dir_free(dir);
}

int main(void)
{
    const td_type types[] = {TD_TYPE_BF16, TD_TYPE_F16, TD_TYPE_Q8_0, TD_TYPE_Q5_0, TD_TYPE_Q4_K, TD_TYPE_Q5_K, TD_TYPE_Q6_K};
    uint64_t rng = 7;
    float x[N];
    for (int kind = 0; kind < N_KINDS; kind++) {
        make_data(kind, x, &rng);
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) check_type(types[k], x, kind);
    }
    /* all zeros: exact */
    memset(x, 0, sizeof x);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) TD_CHECK(check_type(types[k], x, 99) == 0.0);
    TD_CHECK(td_quantize_row(TD_TYPE_IQ2_XXS) == NULL && td_quantize_row(TD_TYPE_F8_E4M3) == NULL);
    TD_CHECK(td_f16_to_f32(td_f16_round_up(0.1f)) >= 0.1f && td_f16_round_up(0.0f) == 0);
    TD_CHECK(td_f16_to_f32(td_f16_round_up(1e-7f)) >= 1e-7f); /* subnormal */
    compare_with_ggml();
    return td_test_finish();
}
