/* The reference dequantizers against ggml's own output (quant_vectors.safetensors: rows that ggml
 * quantized and dequantized), bit for bit; and the reference dot products against dequantize-then-dot. */
#include "td_test.h"

#include "td_blocks.h"
#include "td_dequant.h"
#include "td_float.h"
#include "td_quant.h"
#include "td_quant_dot.h"
#include "td_safetensors.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const td_vector_types[] = {"F16",  "BF16", "Q4_0", "Q5_0",    "Q8_0",  "Q2_K",   "Q3_K",
                                              "Q4_K", "Q5_K", "Q6_K", "IQ2_XXS", "IQ1_S", "IQ4_NL", "IQ4_XS"};
#define TD_N_VECTOR_TYPES (sizeof td_vector_types / sizeof td_vector_types[0])

static const td_tensor *td_find(td_tensor_dir *dir, const char *tname, const char *suffix)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%s", tname, suffix);
    const td_tensor *t = td_tensor_dir_find(dir, name);
    TD_CHECKF(t != NULL, "fixture tensor %s is missing", name);
    return t;
}

/* Dequantizes <T>.q and compares every float's bits with <T>.deq. */
static void td_check_dequant(td_tensor_dir *dir, const char *tname)
{
    td_type t;
    bool known = td_type_from_name(tname, &t);
    TD_CHECKF(known, "type %s unknown", tname);
    if (!known) return;
    const td_tensor *q = td_find(dir, tname, "q"), *deq = td_find(dir, tname, "deq");
    if (!q || !deq) return;
    int64_t n = td_tensor_numel(deq);
    uint64_t need;
    TD_CHECK(deq->type == TD_TYPE_F32);
    bool sized = td_type_nbytes(t, n, &need) && need == q->nbytes;
    TD_CHECKF(sized, "%s: %llu bytes of blocks for %lld values", tname, (unsigned long long)q->nbytes, (long long)n);
    td_to_float_fn f = td_to_float(t);
    TD_CHECKF(f != NULL, "%s has no dequantizer", tname);
    if (!sized || !f) return;
    float *out = malloc((size_t)n * sizeof *out);
    f(q->data, out, n);
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        float want;
        memcpy(&want, (const uint8_t *)deq->data + 4 * i, 4);
        if (td_f32_bits(out[i]) != td_f32_bits(want)) {
            if (first < 0) first = i;
            bad++;
        }
    }
    if (first >= 0) {
        float want;
        memcpy(&want, (const uint8_t *)deq->data + 4 * first, 4);
        TD_CHECKF(bad == 0, "%s: %lld of %lld values differ from ggml; first at %lld: %.9g vs %.9g", tname,
                  (long long)bad, (long long)n, (long long)first, out[first], want);
    } else {
        TD_CHECK(bad == 0);
    }
    free(out);
}

/* Offsets of the half-float scales of each block type, so random blocks can be given finite scales. */
typedef struct td_scale_fields {
    td_type type;
    size_t off[2];
    int n;
} td_scale_fields;

static const td_scale_fields td_scales[] = {
    {TD_TYPE_Q4_0, {offsetof(td_block_q4_0, d)}, 1},
    {TD_TYPE_Q5_0, {offsetof(td_block_q5_0, d)}, 1},
    {TD_TYPE_Q8_0, {offsetof(td_block_q8_0, d)}, 1},
    {TD_TYPE_Q2_K, {offsetof(td_block_q2_K, d), offsetof(td_block_q2_K, dmin)}, 2},
    {TD_TYPE_Q3_K, {offsetof(td_block_q3_K, d)}, 1},
    {TD_TYPE_Q4_K, {offsetof(td_block_q4_K, d), offsetof(td_block_q4_K, dmin)}, 2},
    {TD_TYPE_Q5_K, {offsetof(td_block_q5_K, d), offsetof(td_block_q5_K, dmin)}, 2},
    {TD_TYPE_Q6_K, {offsetof(td_block_q6_K, d)}, 1},
    {TD_TYPE_IQ4_NL, {offsetof(td_block_iq4_nl, d)}, 1},
    {TD_TYPE_IQ4_XS, {offsetof(td_block_iq4_xs, d)}, 1},
    {TD_TYPE_IQ2_XXS, {offsetof(td_block_iq2_xxs, d)}, 1},
    {TD_TYPE_IQ1_S, {offsetof(td_block_iq1_s, d)}, 1},
};

static void td_random_blocks(td_type t, uint8_t *bytes, int64_t n, uint64_t *rng)
{
    const td_type_traits *tt = td_type_info(t);
    size_t nb = (size_t)(n / tt->block_elems);
    for (size_t i = 0; i < nb * (size_t)tt->block_bytes; i++) bytes[i] = (uint8_t)td_test_rand(rng);
    for (size_t s = 0; s < sizeof td_scales / sizeof td_scales[0]; s++) {
        if (td_scales[s].type != t) continue;
        for (size_t b = 0; b < nb; b++)
            for (int k = 0; k < td_scales[s].n; k++) {
                uint16_t h = td_f32_to_f16(td_test_randf(rng) * 0.05f);
                memcpy(bytes + b * (size_t)tt->block_bytes + td_scales[s].off[k], &h, 2);
            }
    }
}

/* One row: the integer dot with quantized activations against the dequantized values multiplied in
 * double, and the float dot against double. Each block adds at most a few float roundings of its own
 * contribution plus one accumulation rounding: bound (blocks + 4) * FLT_EPSILON * sum|w a|. */
static void td_check_dot_row(td_type t, const uint8_t *w, const float *x, int64_t n, const char *what)
{
    td_type at = td_quant_vec_dot_type(t);
    TD_CHECKF(at == TD_TYPE_Q8_0 || at == TD_TYPE_Q8_K, "%s has no activation type", td_type_name(t));
    if (at != TD_TYPE_Q8_0 && at != TD_TYPE_Q8_K) return;
    const td_type_traits *wt = td_type_info(t), *att = td_type_info(at);
    TD_CHECK(wt->block_elems <= att->block_elems ? att->block_elems % wt->block_elems == 0 : 0);
    uint8_t *a = malloc((size_t)(n / att->block_elems) * (size_t)att->block_bytes);
    float *wf = malloc((size_t)n * sizeof *wf), *af = malloc((size_t)n * sizeof *af);
    (at == TD_TYPE_Q8_0 ? td_quantize_row_q8_0_ref : td_quantize_row_q8_K_ref)(x, a, n);
    td_to_float(t)(w, wf, n);
    td_to_float(at)(a, af, n);
    double exact = 0, mag = 0, exact_x = 0, mag_x = 0;
    for (int64_t i = 0; i < n; i++) {
        exact += (double)wf[i] * af[i];
        mag += fabs((double)wf[i] * af[i]);
        exact_x += (double)wf[i] * x[i];
        mag_x += fabs((double)wf[i] * x[i]);
    }
    double blocks = (double)(n / att->block_elems) + (double)(n / wt->block_elems);
    double got = td_quant_vec_dot(t)(w, a, n);
    double tol = (blocks + 4) * FLT_EPSILON * mag + 1e-30;
    TD_CHECKF(fabs(got - exact) <= tol, "%s %s: integer dot %.9g vs %.9g (tolerance %.3g)", td_type_name(t), what,
              got, exact, tol);
    double gotf = td_quant_dot_f32_ref(t, w, x, n);
    double tolf = (double)FLT_EPSILON * (mag_x + fabs(exact_x)) + 1e-30; /* one rounding to float at the end */
    TD_CHECKF(fabs(gotf - exact_x) <= tolf, "%s %s: float dot %.9g vs %.9g", td_type_name(t), what, gotf, exact_x);
    free(a);
    free(wf);
    free(af);
}

/* The activation quantizers round each value to the nearest level: |x - deq(q(x))| <= d/2, plus for
 * Q8_0 the rounding of its scale to f16 (|d - d16| per unit of the level, at most 127 units). */
static void td_check_activation_quant(uint64_t *rng)
{
    enum { N = 1024 };
    float x[N], back[N];
    for (int i = 0; i < N; i++) x[i] = td_test_randf(rng) * (i < 256 ? 1e-3f : 7.0f);
    for (int i = 512; i < 512 + 32; i++) x[i] = 0.0f; /* an all-zero Q8_0 block */
    td_block_q8_K qk[N / TD_QK_K];
    td_quantize_row_q8_K_ref(x, qk, N);
    td_to_float(TD_TYPE_Q8_K)(qk, back, N);
    for (int i = 0; i < N; i++) {
        const td_block_q8_K *b = &qk[i / TD_QK_K];
        TD_CHECKF(fabsf(x[i] - back[i]) <= 0.5f * b->d * (1 + 1e-6f), "q8_K %d: %g -> %g", i, x[i], back[i]);
    }
    for (int b = 0; b < N / TD_QK_K; b++)
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += qk[b].qs[16 * g + j];
            TD_CHECK(s == qk[b].bsums[g]);
        }
    td_block_q8_0 q0[N / TD_QK8_0];
    td_quantize_row_q8_0_ref(x, q0, N);
    td_to_float(TD_TYPE_Q8_0)(q0, back, N);
    for (int i = 0; i < N; i++) {
        float d = td_f16_to_f32(q0[i / TD_QK8_0].d);
        float amax = 0;
        for (int j = i / 32 * 32; j < i / 32 * 32 + 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d32 = amax / 127.0f;
        float tol = (0.5f * d32 + 127.0f * fabsf(d32 - d)) * (1 + 1e-5f) + 1e-30f;
        TD_CHECKF(fabsf(x[i] - back[i]) <= tol, "q8_0 %d: %g -> %g (d %g)", i, x[i], back[i], d);
    }
    TD_CHECK(td_f16_to_f32(q0[512 / 32].d) == 0.0f && back[520] == 0.0f);
}

int main(void)
{
    const char *path = td_test_fixture("gguf/quant_vectors.safetensors");
    td_tensor_dir *dir;
    if (td_tensor_dir_create(&dir) != TD_OK) return 1;
    if (td_st_load(path, dir, NULL) != TD_OK) {
        fprintf(stderr, "%s\n", td_errmsg());
        td_tensor_dir_free(dir);
        return td_test_skip("quant_vectors.safetensors not readable (TANDEM_SHARED?)");
    }
    for (size_t i = 0; i < TD_N_VECTOR_TYPES; i++) td_check_dequant(dir, td_vector_types[i]);

    uint64_t rng = 12345;
    float x[2048];
    for (int i = 0; i < 2048; i++) x[i] = td_test_randf(&rng) * (i % 97 == 0 ? 20.0f : 1.0f);
    for (size_t i = 0; i < TD_N_VECTOR_TYPES; i++) {
        td_type t;
        td_type_from_name(td_vector_types[i], &t);
        if (!td_type_info(t)->is_quant) continue;
        const td_tensor *q = td_find(dir, td_vector_types[i], "q");
        if (!q) continue;
        size_t row_bytes = td_type_row_bytes(t, 512);
        for (int r = 0; r < 4; r++) td_check_dot_row(t, (const uint8_t *)q->data + r * row_bytes, x + 512 * r, 512, "ggml row");
        static _Alignas(16) uint8_t rnd[2048 * 2];
        td_random_blocks(t, rnd, 2048, &rng);
        td_check_dot_row(t, rnd, x, 2048, "random blocks");
    }
    /* the float dot also covers the plain types */
    float w[512];
    uint16_t h[512];
    for (int i = 0; i < 512; i++) {
        w[i] = td_test_randf(&rng);
        h[i] = td_f32_to_bf16(w[i]);
    }
    double exact = 0;
    for (int i = 0; i < 512; i++) exact += (double)td_bf16_to_f32(h[i]) * x[i];
    TD_CHECK(fabs(td_quant_dot_f32_ref(TD_TYPE_BF16, h, x, 512) - exact) <= 1e-5 * fabs(exact) + 1e-6);
    exact = 0;
    for (int i = 0; i < 512; i++) exact += (double)w[i] * x[i];
    TD_CHECK(fabs(td_quant_dot_f32_ref(TD_TYPE_F32, w, x, 512) - exact) <= 1e-5 * fabs(exact) + 1e-6);
    TD_CHECK(td_quant_vec_dot(TD_TYPE_F32) == NULL && td_quant_vec_dot_type(TD_TYPE_BF16) == TD_TYPE_COUNT);

    td_check_activation_quant(&rng);
    td_tensor_dir_free(dir);
    return td_test_finish();
}
