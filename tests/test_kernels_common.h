/* Checks every kernel of a table against the scalar reference on fresh random inputs.
 *
 * For each kernel: random valid weights (random quant bytes with finite f16 scales; random floats), odd
 * shapes (rows that are no multiple of the tiles, token counts around every tile edge, partial Q8_K
 * blocks), a random row range written into a poisoned output with a larger stride. The expectation is
 * computed here in double from the reference dequantizer (td_to_float) and from the activations the
 * kernel actually sees (the reference Q8_K quantization or bf16 rounding), so the tolerance only covers
 * float rounding and is derived from the magnitudes:
 *    |y - sum w x^|  <=  tol(act) * sum |w| |x^|.
 * The ggml-made vectors of the fixtures (quant_vectors.safetensors) are a second, outside reference. */
#ifndef TEST_KERNELS_COMMON_H
#define TEST_KERNELS_COMMON_H

#include "td_alloc.h"
#include "td_blocks.h"
#include "td_dequant.h"
#include "td_float.h"
#include "td_kern.h"
#include "td_randw.h"
#include "td_safetensors.h"
#include "td_tensor.h"
#include "td_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t tk_seed(void)
{
    const char *e = getenv("TANDEM_TEST_SEED");
    uint64_t s = e && *e ? strtoull(e, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    fprintf(stderr, "seed %llu (set TANDEM_TEST_SEED to repeat)\n", (unsigned long long)s);
    return s;
}

/* rows x cols of random valid weights of type t (random quant bytes, finite f16 scales). */
static uint8_t *tk_random_matrix(td_type t, int64_t rows, int64_t cols, uint64_t *rng, td_matrix *m)
{
    size_t rb = td_type_row_bytes(t, cols);
    uint8_t *d = td_malloc_aligned(rb * (size_t)rows + 64, 64);
    TD_CHECK(d != NULL);
    if (!d) return NULL;
    td_randw_fill(t, d, rb * (size_t)rows, td_test_rand(rng), 0);
    *m = (td_matrix){.type = t, .rows = rows, .cols = cols, .data = d, .row_bytes = rb, .name = "random"};
    return d;
}

/* The activation row the kernel sees, back in float (x^). */
static void tk_act_seen(td_act a, const float *x, int64_t cols, float *out)
{
    if (a == TD_ACT_F32) {
        memcpy(out, x, (size_t)cols * sizeof(float));
    } else if (a == TD_ACT_BF16) {
        for (int64_t c = 0; c < cols; c++) out[c] = td_bf16_to_f32(td_f32_to_bf16(x[c]));
    } else {
        td_block_q8_K *q = td_malloc_aligned(td_act_row_bytes(TD_ACT_Q8K, cols), 64);
        int64_t nb = (cols + TD_QK_K - 1) / TD_QK_K;
        td_act_q8k_ref(x, cols, 0, nb, q);
        for (int64_t c = 0; c < cols; c++) { /* main + residual */
            const td_block_q8_K *m = &q[c / TD_QK_K], *r = &q[nb + c / TD_QK_K];
            out[c] = (float)((double)m->d * m->qs[c % TD_QK_K] + (double)r->d * r->qs[c % TD_QK_K]);
        }
        td_free(q);
    }
}

/* Relative tolerance per activation format: float rounding only (the activation rounding is in x^). */
static double tk_tol(const td_kernel *k, int64_t cols)
{
    double eps = 1.0 / (1 << 23);
    if (k->act == TD_ACT_F32) return (double)cols * eps + 1e-6;            /* worst-case summation */
    if (k->act == TD_ACT_Q8K) return 16.0 * (double)(cols / 32 + 16) * eps; /* exact int sums, few float ops */
    return 1e-3; /* x^ and w rounded to bf16 here too; a SIMD dequantization may round a few weights the other way */
}

/* The AMX B-tile packer matching the table under test (set by the AMX tests; NULL elsewhere). */
static void (*tk_pack_btiles)(const void *const *x, int cnt, int64_t kt0, int64_t kt1, uint8_t *dst);

typedef struct tk_case {
    int64_t rows, cols, n; /* n tokens */
} tk_case;

/* Runs kernel k on weights m (dequantized: wf [rows][cols]) and checks every output. */
static void tk_check_on(const td_kernel *k, const td_matrix *m, const float *wf, int64_t n, uint64_t *rng,
                        const char *what)
{
    int64_t rows = m->rows, cols = m->cols;
    size_t arow = td_act_row_bytes(k->act, cols);
    float *x = td_malloc((size_t)(n * cols) * sizeof(float));
    float *xs = td_malloc((size_t)cols * sizeof(float));
    uint8_t *xa = td_malloc_aligned((size_t)n * arow + 64, 64);
    const void **xp = td_calloc((size_t)n, sizeof *xp);
    int64_t r0 = rows > 3 ? (int64_t)(td_test_rand(rng) % 3) : 0, r1 = rows - (rows > 5 ? 1 : 0);
    int64_t ldy = r1 - r0 + 3;
    float *y = td_malloc((size_t)(n * ldy) * sizeof(float));
    size_t scratch_bytes = td_kern_scratch_bytes(cols);
    void *scratch = td_malloc_aligned(scratch_bytes, 64);
    if (!x || !xs || !xa || !xp || !y || !scratch) {
        TD_CHECK(!"out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n * cols; i++) x[i] = td_test_randf(rng) * (i % 97 == 0 ? 8.0f : 1.0f);
    for (int64_t t = 0; t < n; t++) {
        td_act_prepare(k->act, k->isa, x + t * cols, cols, xa + (size_t)t * arow);
        xp[t] = k->act == TD_ACT_F32 ? (const void *)(x + t * cols) : xa + (size_t)t * arow;
    }
    for (int64_t i = 0; i < n * ldy; i++) y[i] = NAN;
    td_kern_ctx ctx = {.scratch = scratch, .scratch_bytes = scratch_bytes};
    k->fn(&ctx, m, r0, r1, xp, n, y, ldy);
    /* again, told the activations are those of the previous call: the same bits */
    float *y2 = td_malloc((size_t)(n * ldy) * sizeof(float));
    for (int64_t i = 0; i < n * ldy; i++) y2[i] = NAN;
    ctx.same_acts = true;
    k->fn(&ctx, m, r0, r1, xp, n, y2, ldy);
    TD_CHECKF(memcmp(y, y2, (size_t)(n * ldy) * sizeof(float)) == 0, "%s %s: a repeated call differs", k->name, what);
    if (k->isa == TD_ISA_AMX && tk_pack_btiles) { /* again, with B tiles laid out by the caller */
        int64_t nkt = (cols + 31) / 32, ng = (n + 15) / 16;
        uint8_t *bt = td_malloc_aligned((size_t)(ng * nkt) * 1024, 64);
        for (int64_t g = 0; g < ng; g++)
            tk_pack_btiles(xp + 16 * g, (int)(n - 16 * g < 16 ? n - 16 * g : 16), 0, nkt, bt + (size_t)(g * nkt) * 1024);
        for (int64_t i = 0; i < n * ldy; i++) y2[i] = NAN;
        td_kern_ctx pre = {.scratch = scratch, .scratch_bytes = scratch_bytes, .btiles = bt};
        k->fn(&pre, m, r0, r1, xp, n, y2, ldy);
        TD_CHECKF(memcmp(y, y2, (size_t)(n * ldy) * sizeof(float)) == 0, "%s %s: with the caller's B tiles it differs",
                  k->name, what);
        td_free(bt);
    }
    td_free(y2);
    int bad = 0;
    double tol = tk_tol(k, cols), worst = 0;
    for (int64_t t = 0; t < n; t++) {
        tk_act_seen(k->act, x + t * cols, cols, xs);
        for (int64_t j = 0; j < ldy; j++) {
            float got = y[t * ldy + j];
            if (j >= r1 - r0) { /* past the range: must be untouched */
                if (!isnan(got) && bad++ < 3) TD_CHECKF(false, "%s %s: wrote past the row range", k->name, what);
                continue;
            }
            int64_t r = r0 + j;
            double want = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
                double wv = k->act == TD_ACT_BF16 ? td_bf16_to_f32(td_f32_to_bf16(wf[r * cols + c])) : wf[r * cols + c];
                want += wv * xs[c];
                mag += fabs(wv * xs[c]);
            }
            double err = fabs((double)got - want), lim = tol * mag + 1e-30;
            if (err / (mag + 1e-30) > worst) worst = err / (mag + 1e-30);
            if (!(err <= lim) && bad++ < 3)
                TD_CHECKF(false, "%s %s: row %lld token %lld: got %.8g, want %.8g (err %.3g > %.3g)", k->name, what,
                          (long long)r, (long long)t, got, want, err, lim);
        }
    }
    TD_CHECKF(bad == 0, "%s %s [%lld x %lld, %lld tokens]: %d bad outputs", k->name, what, (long long)rows,
              (long long)cols, (long long)n, bad);
    if (getenv("TANDEM_TEST_VERBOSE"))
        fprintf(stderr, "%-14s %-8s %5lld x %-5lld n=%-3lld worst rel err %.3g (tol %.3g)\n", k->name, what,
                (long long)rows, (long long)cols, (long long)n, worst, tol);
done:
    td_free(x);
    td_free(xs);
    td_free(xa);
    td_free(xp);
    td_free(y);
    td_free(scratch);
}

/* Random weights of k's type against the reference dequantizer; false if the type has none yet. */
static bool tk_check_random(const td_kernel *k, const tk_case *c, uint64_t *rng)
{
    td_to_float_fn deq = td_to_float(k->type);
    if (!deq) return false;
    td_matrix m;
    uint8_t *data = tk_random_matrix(k->type, c->rows, c->cols, rng, &m);
    float *wf = td_malloc((size_t)(c->rows * c->cols) * sizeof(float));
    if (data && wf) {
        for (int64_t r = 0; r < c->rows; r++) td_matrix_dequant_row(&m, r, wf + r * c->cols);
        tk_check_on(k, &m, wf, c->n, rng, "random");
    }
    td_free(data);
    td_free(wf);
    return true;
}

/* ggml's own bytes and dequantization (4 rows of 512) from the fixtures. */
static bool tk_check_ggml(const td_kernel *k, td_tensor_dir *dir, uint64_t *rng)
{
    static const char *const names[] = {"F16", "BF16", "Q4_0", "Q5_0", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
                                        "Q6_K", "IQ2_XXS", "IQ1_S", "IQ4_NL", "IQ4_XS"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        td_type t;
        if (!td_type_from_name(names[i], &t) || t != k->type) continue;
        char qn[32], dn[32];
        snprintf(qn, sizeof qn, "%s.q", names[i]);
        snprintf(dn, sizeof dn, "%s.deq", names[i]);
        const td_tensor *q = td_tensor_dir_find(dir, qn), *dq = td_tensor_dir_find(dir, dn);
        TD_CHECKF(q && dq, "quant_vectors: %s missing", names[i]);
        if (!q || !dq) return false;
        int64_t rows = dq->shape[0], cols = dq->shape[1];
        if (cols % k->col_multiple) return false;
        /* copy to aligned memory, as a mapped file would give */
        uint8_t *bytes = td_malloc_aligned((size_t)q->nbytes + 64, 64);
        memcpy(bytes, q->data, (size_t)q->nbytes);
        td_matrix m = {.type = t, .rows = rows, .cols = cols, .data = bytes, .row_bytes = td_type_row_bytes(t, cols),
                       .name = qn};
        TD_CHECK(m.row_bytes * (size_t)rows == q->nbytes);
        float *wf = td_malloc((size_t)(rows * cols) * sizeof(float));
        memcpy(wf, dq->data, (size_t)(rows * cols) * sizeof(float));
        int64_t ns[] = {1, 3, 6, 16, 40};
        for (size_t j = 0; j < 5; j++)
            if (ns[j] >= k->min_tokens) tk_check_on(k, &m, wf, ns[j], rng, "ggml");
        td_free(wf);
        td_free(bytes);
        return true;
    }
    return false;
}

/* Shapes: odd row counts, token counts at every tile edge, and for each type a few block counts. */
static void tk_check_table(const td_kernel *table, int64_t max_tokens)
{
    uint64_t rng = tk_seed();
    td_tensor_dir *dir = NULL;
    if (td_tensor_dir_create(&dir) != TD_OK || td_st_load(td_test_fixture("gguf/quant_vectors.safetensors"), dir, NULL) != TD_OK) {
        TD_CHECKF(false, "cannot read quant_vectors.safetensors: %s", td_errmsg());
        td_tensor_dir_free(dir);
        dir = NULL;
    }
    static const int64_t tokens[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 64, 70, 100};
    for (const td_kernel *k = table; k->fn; k++) {
        int64_t b = k->col_multiple;
        int64_t colset[4] = {b, 3 * b, b > 1 ? 9 * b : 37, b > 1 ? 29 * b : 1000};
        if (b == 1) colset[1] = 264;
        int random_runs = 0;
        for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
            if (tokens[i] < k->min_tokens || tokens[i] > max_tokens) continue;
            if (k->isa == TD_ISA_AMX && b > 1) colset[3] = 29 * b > 7168 ? 28 * 256 : 29 * b;
            tk_case c = {.rows = 13 + (int64_t)(td_test_rand(&rng) % 40), .cols = colset[i % 4], .n = tokens[i]};
            if (c.cols * c.rows > 4000000) c.rows = 5;
            random_runs += tk_check_random(k, &c, &rng);
        }
        bool ggml = dir && tk_check_ggml(k, dir, &rng);
        fprintf(stderr, "%-16s random shapes: %s; ggml vectors: %s\n", k->name,
                random_runs ? "checked" : "skipped (no reference dequantizer for this type yet)",
                ggml ? "checked" : "n/a");
        TD_CHECKF(random_runs || ggml, "%s: nothing could check it", k->name);
    }
    td_tensor_dir_free(dir);
}

/* The SIMD activation preparation must equal the scalar reference bit for bit. */
static void tk_check_act(td_isa isa)
{
    uint64_t rng = tk_seed();
    static const int64_t colset[] = {1, 17, 255, 256, 257, 512, 700, 7168};
    for (size_t i = 0; i < sizeof colset / sizeof colset[0]; i++) {
        int64_t cols = colset[i];
        float *x = td_malloc((size_t)cols * sizeof(float));
        size_t qb = td_act_row_bytes(TD_ACT_Q8K, cols), bb = td_act_row_bytes(TD_ACT_BF16, cols);
        uint8_t *a = td_malloc_aligned(qb, 64), *r = td_malloc_aligned(qb, 64);
        uint16_t *ba = td_malloc_aligned(bb, 64);
        for (int64_t c = 0; c < cols; c++) x[c] = td_test_randf(&rng) * (c % 50 == 3 ? 30.0f : 1.0f);
        if (i == 0) x[0] = 0.0f; /* an all-zero block */
        memset(a, 0xAB, qb);
        memset(r, 0xAB, qb);
        td_act_prepare(TD_ACT_Q8K, isa, x, cols, a);
        td_act_q8k_ref(x, cols, 0, (cols + 255) / 256, r);
        TD_CHECKF(memcmp(a, r, 2 * (size_t)((cols + 255) / 256) * sizeof(td_block_q8_K)) == 0,
                  "Q8_K activations (%s) differ from the reference at %lld columns", td_isa_name(isa), (long long)cols);
        td_act_prepare(TD_ACT_BF16, isa, x, cols, ba);
        int bad = 0;
        for (int64_t c = 0; c < (cols + 31) / 32 * 32; c++)
            bad += ba[c] != (c < cols ? td_f32_to_bf16(x[c]) : 0);
        TD_CHECKF(bad == 0, "bf16 activations (%s): %d of %lld differ at %lld columns", td_isa_name(isa), bad,
                  (long long)((cols + 31) / 32 * 32), (long long)cols);
        td_free(x);
        td_free(a);
        td_free(r);
        td_free(ba);
    }
}

#endif
