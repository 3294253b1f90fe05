/* td_cpu's entry points with the fast kernels against TD_KERNELS_REF on fresh random inputs: every
 * ISA level this CPU has, 1 to 3 threads, a synthetic two-node topology (the NUMA split and the partial
 * sums), odd shapes, token batches across the MoE batch edge. Also: results do not depend on the
 * thread count, and nothing allocates once the context exists. */
#include "td_alloc.h"
#include "td_cpu.h"
#include "td_cpu_features.h"
#include "td_dequant.h"
#include "td_ops.h"
#include "td_randw.h"
#include "td_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t g_rng;

typedef struct tc_setup {
    td_kernels kernels;
    int threads;
    const char *topology;
    const char *name;
} tc_setup;

/* MoE against the reference: relative RMS error, a sanity bound that catches lost or misrouted tokens.
 * Quantized activations (Q8_K plus its residual row, about 15 bits per value relative to each block's
 * max|x|) and the bf16 tiles of AMX round a little; the exact check of the MoE machinery is the
 * composition from linear products (1e-5); the kernels have their own tests. */
static double tc_moe_tol(td_type t) { return td_type_info(t)->is_quant ? 2e-3 : 2e-5; }

static double tc_rms_rel(const float *got, const float *want, int64_t n)
{
    double se = 0, sw = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        se += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        sw += (double)want[i] * want[i];
    }
    return sqrt(se / (sw + 1e-300));
}

/* Every output of a fast linear product against the reference, within a bound derived here: the
 * activation rounding when the kernel quantizes (Q8_K with its residual row: the residual of a block is at
 * most half a step, max|x| / 254, and is itself rounded to half of its own step: max|x| / 254^2 per
 * value, times sum |w|), plus float summation error of both sides. Returns the outputs outside it. */
static int tc_linear_bound(const td_matrix *w, const float *x, int64_t n, const float *y, const float *yr, bool q8k,
                           bool bf16)
{
    int64_t rows = w->rows, cols = w->cols;
    float *row = td_malloc((size_t)cols * sizeof(float));
    int bad = 0;
    for (int64_t r = 0; r < rows; r++) {
        td_matrix_dequant_row(w, r, row);
        for (int64_t t = 0; t < n; t++) {
            const float *xt = x + t * cols;
            double act = 0, mag = 0;
            for (int64_t c0 = 0; c0 < cols; c0 += 256) {
                double amax = 0, sw = 0;
                for (int64_t c = c0; c < cols && c < c0 + 256; c++) {
                    amax = fmax(amax, fabs(xt[c]));
                    sw += fabs(row[c]);
                    mag += fabs((double)row[c] * xt[c]);
                }
                act += sw * amax / (254.0 * 254.0);
            }
            /* bf16 tiles (AMX) round both x and w to 8 significant bits: 2^-9 relative each */
            double bound = (q8k ? act * 1.001 : 0) + (bf16 ? mag * (2.0 / 512 + 1e-4) : 0) +
                           2.0 * (double)(cols + 64) * 1.2e-7 * mag + 1e-30;
            double err = fabs((double)y[t * rows + r] - yr[t * rows + r]);
            if (!(err <= bound) && bad++ < 3)
                fprintf(stderr, "row %lld token %lld: %.8g vs ref %.8g (err %.3g > bound %.3g)\n", (long long)r,
                        (long long)t, y[t * rows + r], yr[t * rows + r], err, bound);
        }
    }
    td_free(row);
    return bad;
}

static double tc_max_rel(const float *got, const float *want, int64_t n)
{
    double m = 0, e = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        m = fmax(m, fabs(want[i]));
        e = fmax(e, fabs((double)got[i] - want[i]));
    }
    return e / (m + 1e-30);
}

static uint8_t *tc_matrix(td_type t, int64_t rows, int64_t cols, td_matrix *m)
{
    size_t rb = td_type_row_bytes(t, cols);
    uint8_t *d = td_malloc_aligned(rb * (size_t)rows, 64);
    td_randw_fill(t, d, rb * (size_t)rows, td_test_rand(&g_rng), 0);
    *m = (td_matrix){.type = t, .rows = rows, .cols = cols, .data = d, .row_bytes = rb, .name = "w"};
    return d;
}

static float *tc_vec(int64_t n, float scale)
{
    float *x = td_malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = td_test_randf(&g_rng) * scale * (i % 61 == 5 ? 6.0f : 1.0f);
    return x;
}

static td_status tc_create(const tc_setup *s, td_kernels k, int64_t max_tok, int64_t cols, int64_t hidden,
                           int64_t width, int experts, int topk, td_cpu **out)
{
    td_cpu_params p = {.kernels = k, .n_threads = s->threads, .max_tokens = max_tok, .max_cols = cols,
                       .hidden = hidden, .ffn_width = width, .expert_width = width, .n_experts = experts,
                       .top_k = topk, .topology = k == TD_KERNELS_REF ? NULL : s->topology};
    return td_cpu_create(&p, out);
}

/* linear, linear_t and the dense FFN for one weight type */
static void tc_dense(const tc_setup *s, td_type t)
{
    int64_t blk = td_type_info(t)->block_elems, cols = blk > 1 ? 3 * (blk > 32 ? 256 : 32) : 100, rows = 77;
    if (blk == 32) cols = 96;
    static const int64_t ns[] = {1, 5, 37};
    td_cpu *fast = NULL, *ref = NULL;
    td_status st = tc_create(s, s->kernels, 40, cols > rows ? cols : rows, cols, rows, 4, 2, &fast);
    TD_CHECKF(st == TD_OK, "%s: %s", s->name, td_errmsg());
    if (st != TD_OK) return;
    TD_CHECK(tc_create(s, TD_KERNELS_REF, 40, cols > rows ? cols : rows, cols, rows, 4, 2, &ref) == TD_OK);
    td_matrix w;
    uint8_t *wd = tc_matrix(t, rows, cols, &w);
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        int64_t n = ns[i];
        float *x = tc_vec(n * cols, 1.0f), *y = td_malloc((size_t)(n * rows) * sizeof(float)),
              *yr = td_malloc((size_t)(n * rows) * sizeof(float));
        for (int64_t j = 0; j < n * rows; j++) y[j] = NAN;
        td_alloc_fail_after(0); /* the per-token path must not allocate */
        td_cpu_linear(fast, &w, x, n, y);
        td_alloc_fail_after(-1);
        TD_CHECKF(td_alloc_failures() == 0, "%s %s: td_cpu_linear allocated", s->name, td_type_name(t));
        td_cpu_linear(ref, &w, x, n, yr);
        const char *kname = td_cpu_kernel_name(fast, t, cols, n);
        bool bf16 = strstr(kname, "/amx") != NULL;
        bool q8k = !bf16 && td_type_info(t)->is_quant && strncmp(kname, "generic", 7) != 0;
        int bad = tc_linear_bound(&w, x, n, y, yr, q8k, bf16);
        TD_CHECKF(bad == 0, "%s linear %s n=%lld (%s): %d outputs off", s->name, td_type_name(t), (long long)n, kname, bad);
        td_free(x);
        td_free(y);
        td_free(yr);
    }
    /* transposed: y[c] = sum_r W[r][c] x[r] (float math in both; only the summation order differs) */
    float *xt = tc_vec(rows, 1.0f), *yt = td_malloc((size_t)cols * sizeof(float)), *ytr = td_malloc((size_t)cols * sizeof(float));
    td_cpu_linear_t(fast, &w, xt, yt);
    td_cpu_linear_t(ref, &w, xt, ytr);
    TD_CHECKF(tc_max_rel(yt, ytr, cols) <= 1e-5, "%s linear_t %s: rel err %.3g", s->name, td_type_name(t),
              tc_max_rel(yt, ytr, cols));
    td_free(xt);
    td_free(yt);
    td_free(ytr);
    td_free(wd);
    td_cpu_free(fast);
    td_cpu_free(ref);
}

/* A small MoE layer of random experts of one type. */
typedef struct tc_moe {
    int E, k;
    int64_t H, F;
    td_ffn_weights *ex;
    uint8_t **bufs;
} tc_moe;

static void tc_moe_make(tc_moe *m, td_type t, int E, int k, int64_t H, int64_t F)
{
    *m = (tc_moe){.E = E, .k = k, .H = H, .F = F};
    m->ex = td_calloc((size_t)E, sizeof *m->ex);
    m->bufs = td_calloc((size_t)E * 3, sizeof *m->bufs);
    for (int e = 0; e < E; e++) {
        m->bufs[3 * e] = tc_matrix(t, F, H, &m->ex[e].gate);
        m->bufs[3 * e + 1] = tc_matrix(t, F, H, &m->ex[e].up);
        m->bufs[3 * e + 2] = tc_matrix(t, H, F, &m->ex[e].down);
    }
}

static void tc_moe_free(tc_moe *m)
{
    for (int i = 0; i < 3 * m->E; i++) td_free(m->bufs[i]);
    td_free(m->bufs);
    td_free(m->ex);
}

static void tc_route(int64_t n, int k, int E, int32_t *ids, float *w)
{
    for (int64_t t = 0; t < n; t++)
        for (int j = 0; j < k; j++) {
            int e;
            bool dup;
            do { /* distinct experts per token, skewed so some experts get many tokens and some none */
                e = (int)(td_test_rand(&g_rng) % (uint64_t)(td_test_rand(&g_rng) % 3 ? E / 2 + 1 : E));
                dup = false;
                for (int i = 0; i < j; i++) dup |= ids[t * k + i] == e;
            } while (dup);
            ids[t * k + j] = e;
            w[t * k + j] = 0.1f + 0.9f * (0.5f + 0.5f * td_test_randf(&g_rng));
        }
}

/* out = out0 + sum over tokens' experts of w * down(silu(gate x) * up x), with td_cpu_linear. */
static void tc_moe_composed(td_cpu *cpu, const tc_moe *m, const td_moe_batch *b, float *out)
{
    int64_t H = m->H, F = m->F, n = b->n_tok;
    float *xg = td_malloc((size_t)(n * H) * sizeof(float)), *g = td_malloc((size_t)(n * F) * sizeof(float));
    float *u = td_malloc((size_t)(n * F) * sizeof(float)), *y = td_malloc((size_t)(n * H) * sizeof(float));
    int64_t *slot = td_malloc((size_t)n * sizeof(int64_t));
    for (int e = 0; e < m->E; e++) {
        int64_t c = 0;
        for (int64_t t = 0; t < n; t++)
            for (int j = 0; j < b->k; j++)
                if (b->ids[t * b->k + j] == e) {
                    memcpy(xg + c * H, b->x + t * H, (size_t)H * sizeof(float));
                    slot[c++] = t * b->k + j;
                }
        if (!c) continue;
        td_cpu_linear(cpu, &m->ex[e].gate, xg, c, g);
        td_cpu_linear(cpu, &m->ex[e].up, xg, c, u);
        for (int64_t i = 0; i < c * F; i++) g[i] = td_silu(g[i]) * u[i];
        td_cpu_linear(cpu, &m->ex[e].down, g, c, y);
        for (int64_t i = 0; i < c; i++)
            for (int64_t r = 0; r < H; r++) out[slot[i] / b->k * H + r] += b->weights[slot[i]] * y[i * H + r];
    }
    td_free(xg);
    td_free(g);
    td_free(u);
    td_free(y);
    td_free(slot);
}

static void tc_moe_check(const tc_setup *s, td_type t)
{
    bool kq = td_type_info(t)->block_elems == 256;
    int64_t H = 256, F = kq ? 512 : 320; /* 320: a partial last 256-row chunk of h */
    int E = 12, k = 3;
    static const int64_t ns[] = {1, 7, 70};
    tc_moe m;
    tc_moe_make(&m, t, E, k, H, F);
    td_cpu *fast = NULL, *ref = NULL;
    td_status st = tc_create(s, s->kernels, 70, F > H ? F : H, H, F, E, k, &fast);
    TD_CHECKF(st == TD_OK, "%s: %s", s->name, td_errmsg());
    if (st == TD_OK) TD_CHECK(tc_create(s, TD_KERNELS_REF, 70, F > H ? F : H, H, F, E, k, &ref) == TD_OK);
    for (size_t i = 0; fast && ref && i < sizeof ns / sizeof ns[0]; i++) {
        int64_t n = ns[i];
        int32_t *ids = td_malloc((size_t)(n * k) * sizeof(int32_t));
        float *w = td_malloc((size_t)(n * k) * sizeof(float));
        tc_route(n, k, E, ids, w);
        float *x = tc_vec(n * H, 1.0f), *out = tc_vec(n * H, 0.5f);
        float *out_ref = td_malloc((size_t)(n * H) * sizeof(float)), *out2 = td_malloc((size_t)(n * H) * sizeof(float));
        memcpy(out_ref, out, (size_t)(n * H) * sizeof(float)); /* accumulates into what is there */
        memcpy(out2, out, (size_t)(n * H) * sizeof(float));
        float *out0 = td_malloc((size_t)(n * H) * sizeof(float));
        memcpy(out0, out, (size_t)(n * H) * sizeof(float));
        td_moe_batch b = {.n_tok = n, .k = k, .ids = ids, .weights = w, .x = x, .out = out};
        td_alloc_fail_after(0);
        td_cpu_moe(fast, m.ex, E, &b);
        td_alloc_fail_after(-1);
        TD_CHECKF(td_alloc_failures() == 0, "%s moe %s: allocated on the per-token path", s->name, td_type_name(t));
        b.out = out2;
        td_cpu_moe(fast, m.ex, E, &b); /* the same call again: bit for bit */
        TD_CHECKF(memcmp(out, out2, (size_t)(n * H) * sizeof(float)) == 0, "%s moe %s n=%lld: not deterministic",
                  s->name, td_type_name(t), (long long)n);
        b.out = out_ref;
        td_cpu_moe(ref, m.ex, E, &b);
        int active = 0; /* the MoE picks its kernel by the tokens per expert that has any */
        for (int ex = 0; ex < E; ex++) {
            bool used = false;
            for (int64_t q = 0; q < n * k; q++) used |= ids[q] == ex;
            active += used;
        }
        int64_t per_expert = (n * k + active - 1) / active;
        bool amx = strstr(td_cpu_kernel_name(fast, t, H, per_expert), "/amx") != NULL;
        double e = tc_rms_rel(out, out_ref, n * H);
        TD_CHECKF(e <= (amx ? 0.15 : tc_moe_tol(t)), "%s moe %s n=%lld: rel err %.3g (nodes %d)", s->name, td_type_name(t),
                  (long long)n, e, td_cpu_nodes(fast));
        /* the grouped, fused, split MoE must compute exactly what its pieces do: compose it from the same
         * fast context's linear products, expert by expert (exact unless the MoE batch is large enough for
         * the bf16 tiles while a single expert's few tokens are not: then only the rounding differs) */
        memcpy(out2, out0, (size_t)(n * H) * sizeof(float));
        tc_moe_composed(fast, &m, &b, out2);
        e = amx ? tc_rms_rel(out, out2, n * H) : tc_max_rel(out, out2, n * H);
        TD_CHECKF(e <= (amx ? 0.05 : 1e-5), "%s moe %s n=%lld: differs from its composition by %.3g", s->name,
                  td_type_name(t), (long long)n, e);
        td_free(ids);
        td_free(w);
        td_free(x);
        td_free(out);
        td_free(out_ref);
        td_free(out2);
        td_free(out0);
    }
    td_cpu_free(fast);
    td_cpu_free(ref);
    tc_moe_free(&m);
}

/* The split over threads must not change a single bit (each output element has one fixed sum order). */
static void tc_thread_invariance(void)
{
    tc_moe m;
    tc_moe_make(&m, TD_TYPE_Q4_K, 10, 4, 512, 512);
    int64_t n = 9, H = 512;
    int32_t ids[36];
    float w[36];
    tc_route(n, 4, 10, ids, w);
    float *x = tc_vec(n * H, 1.0f), *o1 = td_calloc((size_t)(n * H), sizeof(float)), *o3 = td_calloc((size_t)(n * H), sizeof(float));
    float *l1 = td_malloc((size_t)(n * 512) * sizeof(float)), *l3 = td_malloc((size_t)(n * 512) * sizeof(float));
    td_cpu *c1 = NULL, *c3 = NULL;
    tc_setup s1 = {TD_KERNELS_AUTO, 1, NULL, "1 thread"}, s3 = {TD_KERNELS_AUTO, 3, NULL, "3 threads"};
    TD_CHECK(tc_create(&s1, TD_KERNELS_AUTO, n, H, H, 512, 10, 4, &c1) == TD_OK);
    TD_CHECK(tc_create(&s3, TD_KERNELS_AUTO, n, H, H, 512, 10, 4, &c3) == TD_OK);
    if (c1 && c3) {
        td_moe_batch b = {.n_tok = n, .k = 4, .ids = ids, .weights = w, .x = x, .out = o1};
        td_cpu_moe(c1, m.ex, 10, &b);
        b.out = o3;
        td_cpu_moe(c3, m.ex, 10, &b);
        TD_CHECK(memcmp(o1, o3, (size_t)(n * H) * sizeof(float)) == 0);
        td_cpu_linear(c1, &m.ex[0].gate, x, n, l1);
        td_cpu_linear(c3, &m.ex[0].gate, x, n, l3);
        TD_CHECK(memcmp(l1, l3, (size_t)(n * 512) * sizeof(float)) == 0);
    }
    td_cpu_free(c1);
    td_cpu_free(c3);
    td_free(x);
    td_free(o1);
    td_free(o3);
    td_free(l1);
    td_free(l3);
    tc_moe_free(&m);
}

static void tc_errors(void)
{
    td_cpu *c = NULL;
    td_cpu_params p = {.kernels = TD_KERNELS_AUTO, .max_tokens = 1, .max_cols = 8, .hidden = 8, .ffn_width = 8,
                       .topology = "this is not a topology"};
    TD_CHECK(td_cpu_create(&p, &c) == TD_E_ARG && c == NULL);
    TD_CHECK(strstr(td_errmsg(), "synthetic") != NULL);
    p.topology = NULL;
    p.max_tokens = 0;
    TD_CHECK(td_cpu_create(&p, &c) == TD_E_ARG);
    p.max_tokens = 1;
    for (int k = TD_KERNELS_AVX2; k <= TD_KERNELS_AMX; k++) {
        td_isa isa = k == TD_KERNELS_AVX2 ? TD_ISA_AVX2 : k == TD_KERNELS_AVX512 ? TD_ISA_AVX512 : TD_ISA_AMX;
        p.kernels = (td_kernels)k;
        td_status st = td_cpu_create(&p, &c);
        if (td_cpu_has_isa(isa)) {
            TD_CHECK(st == TD_OK);
        } else {
            TD_CHECKF(st == TD_E_UNSUPPORTED && strstr(td_errmsg(), "--kernels auto"), "forced %s: %s",
                      td_kernels_name((td_kernels)k), td_errmsg());
        }
        td_cpu_free(c);
        c = NULL;
    }
    /* out of memory while creating: a clean failure at every allocation */
    p.kernels = TD_KERNELS_AUTO;
    for (long n = 0; n < 40; n++) {
        td_alloc_fail_after(n);
        td_status st = td_cpu_create(&p, &c);
        long failed = td_alloc_failures();
        td_alloc_fail_after(-1);
        if (st == TD_OK) {
            td_cpu_free(c);
            c = NULL;
            if (!failed) break;
        } else {
            TD_CHECK(st == TD_E_NOMEM && c == NULL);
        }
    }
}

int main(void)
{
    const char *e = getenv("TANDEM_TEST_SEED");
    g_rng = e && *e ? strtoull(e, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    fprintf(stderr, "seed %llu (set TANDEM_TEST_SEED to repeat)\n", (unsigned long long)g_rng);
    tc_setup setups[] = {
        {TD_KERNELS_AUTO, 0, NULL, "auto"},
        {TD_KERNELS_AUTO, 3, NULL, "auto, 3 threads"},
        {TD_KERNELS_AVX2, 2, NULL, "avx2"},
        {TD_KERNELS_AVX512, 2, NULL, "avx512"},
        {TD_KERNELS_AUTO, 0, "pack:2 numa:1 core:2 pu:1", "auto, synthetic 2 nodes"},
    };
    static const td_type types[] = {TD_TYPE_F32, TD_TYPE_F16, TD_TYPE_BF16, TD_TYPE_Q8_0, TD_TYPE_Q4_K, TD_TYPE_Q5_K,
                                    TD_TYPE_Q6_K, TD_TYPE_Q2_K, TD_TYPE_Q3_K, TD_TYPE_IQ4_XS, TD_TYPE_Q4_0,
                                    TD_TYPE_F8_E4M3};
    for (size_t i = 0; i < sizeof setups / sizeof setups[0]; i++) {
        const tc_setup *s = &setups[i];
        if (s->kernels == TD_KERNELS_AVX2 && !td_cpu_has_isa(TD_ISA_AVX2)) continue;
        if (s->kernels == TD_KERNELS_AVX512 && !td_cpu_has_isa(TD_ISA_AVX512)) continue;
        for (size_t j = 0; j < sizeof types / sizeof types[0]; j++) {
            if (!td_type_computable(types[j])) continue;
            tc_dense(s, types[j]);
            tc_moe_check(s, types[j]);
        }
    }
    tc_thread_invariance();
    tc_errors();
    return td_test_finish();
}
