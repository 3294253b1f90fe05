/* Speculative sampling keeps the main model's distribution. At temperature 1, with a fixed context and a
 * fixed next token, the token after next (the one the MTP block drafts) is sampled 20,000 times through
 * the real speculative step (MTP draft, verify pass of 2, accept with min(1, p/q) or draw from
 * (p - q)+, rewind of both caches) and 20,000 times without MTP. Chi-square tests (seeded, p > 0.01,
 * rare tokens pooled so every expected count is at least 5) must not tell them apart, nor the MTP
 * samples from the exact distribution. Two wrong samplers (the raw draft distribution, and a resample
 * from p instead of (p - q)+) must be told apart, which shows the test can fail. Two more cases: the
 * token after that with chained drafts (k = 2), and sampling with temperature, top-k and top-p, where
 * drafts can fall outside the target's kept set.
 *
 * The samples without MTP are drawn from the main model's exact distributions at those positions,
 * computed once: plain decoding would run the same forward passes every time and draw from the same
 * numbers. Statistical, so it runs in the normal test pass only (skipped under the sanitizers). */
#include "td_alloc.h"
#include "td_engine.h"
#include "td_generate.h"
#include "td_mtp_spec.h"
#include "td_safetensors.h"
#include "td_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_SAMPLES    20000
#define MIN_EXPECTED 5.0

/* Cells over the vocabulary: tokens in ascending order of probability, pooled until each cell expects at
 * least MIN_EXPECTED of n samples (the last cell takes what is left). cell[v] = the cell of token v. */
static int td_make_cells(const float *p, int64_t V, double n, int *cell)
{
    int32_t *order = td_malloc((size_t)V * sizeof *order);
    for (int64_t i = 0; i < V; i++) order[i] = (int32_t)i;
    for (int64_t i = 1; i < V; i++) { /* insertion sort: V is small */
        int32_t t = order[i];
        int64_t j = i;
        while (j > 0 && p[order[j - 1]] > p[t]) order[j] = order[j - 1], j--;
        order[j] = t;
    }
    int cells = 0;
    double acc = 0;
    for (int64_t i = 0; i < V; i++) {
        cell[order[i]] = cells;
        acc += n * p[order[i]];
        if (acc >= MIN_EXPECTED) cells++, acc = 0;
    }
    if (acc > 0) { /* a short tail joins the cell before it */
        for (int64_t i = 0; i < V; i++)
            if (cell[i] == cells) cell[i] = cells - 1;
    }
    td_free(order);
    return cells;
}

/* P(X >= x) for X ~ chi-square(df), by the Wilson-Hilferty normal approximation (df here is in the
 * hundreds, where it is accurate to well under 1e-3). */
static double td_chi2_sf(double x, int df)
{
    double k = df, z = (cbrt(x / k) - (1 - 2 / (9 * k))) / sqrt(2 / (9 * k));
    return 0.5 * erfc(z / sqrt(2.0));
}

/* Two samples of equal size: sum over cells (a - b)^2 / (a + b), df = cells - 1. */
static double td_chi2_two(const int64_t *a, const int64_t *b, const int *cell, int64_t V, int cells, double *stat)
{
    double *ca = td_calloc((size_t)cells, sizeof *ca), *cb = td_calloc((size_t)cells, sizeof *cb), x = 0;
    for (int64_t i = 0; i < V; i++) ca[cell[i]] += (double)a[i], cb[cell[i]] += (double)b[i];
    for (int c = 0; c < cells; c++)
        if (ca[c] + cb[c] > 0) x += (ca[c] - cb[c]) * (ca[c] - cb[c]) / (ca[c] + cb[c]);
    td_free(ca);
    td_free(cb);
    *stat = x;
    return td_chi2_sf(x, cells - 1);
}

/* Goodness of fit of counts (n in all) to p. */
static double td_chi2_fit(const int64_t *a, const float *p, double n, const int *cell, int64_t V, int cells,
                          double *stat)
{
    double *ca = td_calloc((size_t)cells, sizeof *ca), *ce = td_calloc((size_t)cells, sizeof *ce), x = 0;
    for (int64_t i = 0; i < V; i++) ca[cell[i]] += (double)a[i], ce[cell[i]] += n * p[i];
    for (int c = 0; c < cells; c++) x += (ca[c] - ce[c]) * (ca[c] - ce[c]) / ce[c];
    td_free(ca);
    td_free(ce);
    *stat = x;
    return td_chi2_sf(x, cells - 1);
}


/* the safetensors fixtures have no tokenizer; the generator only needs one to stream text */
static td_tokenizer *td_plain_tokenizer(int64_t n)
{
    td_tokenizer *t = NULL;
    if (td_tokenizer_placeholder(n, &t) != TD_OK) fprintf(stderr, "tokenizer: %s\n", td_errmsg());
    return t;
}

typedef struct td_dist {
    td_model *m;
    td_engine *e;
    td_session *s;
    td_sampler *smp, *plain_smp;
    td_generator *g;
    td_tokenizer *tok;
    int64_t V, T;
    int32_t ctx[128];
    int32_t next; /* the fixed next token */
} td_dist;

/* The main model's distribution after the context, `next` and then `after` (-1: none), with the
 * sampler's settings, computed as plain decoding computes it (one token per forward). */
static void td_exact(td_dist *d, int32_t after, float *p)
{
    TD_CHECK(td_generator_rewind(d->g, d->T) == TD_OK);
    TD_CHECK(td_session_forward(d->s, &d->next, 1, NULL, NULL) == TD_OK);
    if (after >= 0) TD_CHECK(td_session_forward(d->s, &after, 1, NULL, NULL) == TD_OK);
    td_sampler_probs(d->smp, td_session_logits(d->s), p);
}

/* One MTP sample: the depth-th token (1 or 2) generated after the context and `next`. */
static int32_t td_mtp_sample(td_dist *d, td_mtp_spec *sp, int depth)
{
    int32_t out[16];
    int n = 0, have = 0;
    TD_CHECK(td_generator_rewind(d->g, d->T) == TD_OK && td_generator_set_pending(d->g, &d->next, 1) == TD_OK);
    while (have < depth) {
        if (!TD_CHECK(td_mtp_spec_step(d->g, sp, out, &n, 16) == TD_OK && n >= 1)) return 0;
        if (have + n >= depth) return out[depth - 1 - have];
        have += n;
    }
    return 0;
}

typedef struct td_case {
    const char *name;
    td_sampler_params sampling;
    int k, depth;
    bool controls; /* also show that wrong samplers fail */
} td_case;

static void td_run_case(td_dist *d, const td_case *c)
{
    int64_t V = d->V;
    float *p = td_malloc((size_t)V * sizeof *p), *q = td_malloc((size_t)V * sizeof *q);
    float *buggy = td_malloc((size_t)V * sizeof *buggy), *table = NULL;
    int64_t *c_mtp = td_calloc((size_t)V, sizeof *c_mtp), *c_plain = td_calloc((size_t)V, sizeof *c_plain);
    int *cell = td_malloc((size_t)V * sizeof *cell);
    td_mtp_spec *sp = NULL;
    td_sampler_params plain = c->sampling;
    plain.seed = ~plain.seed; /* another stream than the MTP side's */
    TD_CHECK(td_sampler_set_params(d->smp, &c->sampling) == TD_OK &&
             td_sampler_set_params(d->plain_smp, &plain) == TD_OK);
    td_mtp_params mtp = {.mode = TD_MTP_ON, .k = c->k};
    if (!TD_CHECKF(td_mtp_spec_create(d->g, &mtp, &sp) == TD_OK, "%s", td_errmsg())) goto done;

    /* the exact distribution of the sampled token: p1 after `next`, or the mixture over p1 of what
     * follows each possible first token */
    float *p1 = td_malloc((size_t)V * sizeof *p1);
    td_exact(d, -1, p1);
    if (c->depth == 1) {
        memcpy(p, p1, (size_t)V * sizeof *p);
    } else {
        table = td_calloc((size_t)(V * V), sizeof *table);
        for (int64_t i = 0; i < V; i++) p[i] = 0;
        for (int32_t y = 0; y < V; y++) {
            if (p1[y] <= 0) continue;
            td_exact(d, y, table + y * V);
            for (int64_t i = 0; i < V; i++) p[i] += p1[y] * table[y * V + i];
        }
    }
    /* with MTP: each sample runs real speculative steps from the same state */
    for (int i = 0; i < N_SAMPLES; i++) c_mtp[td_mtp_sample(d, sp, c->depth)]++;
    /* without MTP: draws from the exact distributions, as plain decoding makes them */
    for (int i = 0; i < N_SAMPLES; i++) {
        int32_t y = td_sampler_draw(d->plain_smp, p1);
        c_plain[c->depth == 1 ? y : td_sampler_draw(d->plain_smp, table + y * V)]++;
    }
    int64_t impossible = 0;
    for (int64_t i = 0; i < V; i++) impossible += p[i] <= 0 ? c_mtp[i] : 0;

    td_mtp_stats ms;
    td_mtp_spec_stats(sp, &ms);
    double acc = ms.drafted ? (double)ms.accepted / (double)ms.drafted : 0;
    int cells = td_make_cells(p, V, N_SAMPLES, cell);
    double x_two, x_fit;
    double p_two = td_chi2_two(c_mtp, c_plain, cell, V, cells, &x_two);
    double p_fit = td_chi2_fit(c_mtp, p, N_SAMPLES, cell, V, cells, &x_fit);
    printf("%s: %d samples each, %d cells, k = %d, acceptance %.3f\n", c->name, N_SAMPLES, cells, c->k, acc);
    printf("  MTP vs plain:             chi2 %.1f, p = %.4f\n", x_two, p_two);
    printf("  MTP vs exact:             chi2 %.1f, p = %.4f\n", x_fit, p_fit);
    TD_CHECK(ms.accepted > 0 && ms.accepted < ms.drafted); /* both branches ran */
    TD_CHECKF(impossible == 0, "%s: %lld samples of tokens the distribution excludes", c->name, (long long)impossible);
    TD_CHECKF(p_two > 0.01, "%s: the MTP samples differ from plain sampling: p = %g", c->name, p_two);
    TD_CHECKF(p_fit > 0.01, "%s: the MTP samples differ from the exact distribution: p = %g", c->name, p_fit);

    if (c->controls) {
        /* the first draft's distribution q; acceptance must follow the theory, E = sum min(p, q) */
        TD_CHECK(td_generator_rewind(d->g, d->T) == TD_OK && td_session_mtp_draft(d->s, d->next) == TD_OK);
        td_sampler_probs(d->smp, td_session_mtp_logits(d->s), q);
        double beta = 0;
        for (int64_t i = 0; i < V; i++) beta += p[i] < q[i] ? p[i] : q[i];
        printf("  acceptance expected:      sum min(p, q) = %.3f\n", beta);
        TD_CHECK(fabs(acc - beta) < 0.02);
        /* wrong samplers: the draft distribution itself, and a rejection that resamples from p instead of
         * (p - q)+ (its distribution: min(p, q) + (1 - beta) p) */
        for (int64_t i = 0; i < V; i++) buggy[i] = (float)((p[i] < q[i] ? p[i] : q[i]) + (1 - beta) * p[i]);
        int64_t *c_q = td_calloc((size_t)V, sizeof *c_q), *c_bug = td_calloc((size_t)V, sizeof *c_bug);
        for (int i = 0; i < N_SAMPLES; i++) {
            c_q[td_sampler_draw(d->plain_smp, q)]++;
            c_bug[td_sampler_draw(d->plain_smp, buggy)]++;
        }
        double x_q, x_bug;
        double p_q = td_chi2_fit(c_q, p, N_SAMPLES, cell, V, cells, &x_q);
        double p_bug = td_chi2_fit(c_bug, p, N_SAMPLES, cell, V, cells, &x_bug);
        printf("  draft distribution:       chi2 %.1f, p = %.3g (must fail)\n", x_q, p_q);
        printf("  resample from p (a bug):  chi2 %.1f, p = %.3g (must fail)\n", x_bug, p_bug);
        TD_CHECKF(p_q < 0.01 && p_bug < 0.01, "the test cannot tell wrong samplers apart: p = %g, %g", p_q, p_bug);
        td_free(c_q);
        td_free(c_bug);
    }
    td_free(p1);
done:
    td_mtp_spec_free(sp);
    td_free(p);
    td_free(q);
    td_free(buggy);
    td_free(table);
    td_free(c_mtp);
    td_free(c_plain);
    td_free(cell);
}

int main(void)
{
    const char *env = getenv("TANDEM_SANITIZED");
    if (env && strcmp(env, "1") == 0) return td_test_skip("statistical test: normal builds only");
    char model_path[4096], ref_path[4200];
    snprintf(model_path, sizeof model_path, "%s", td_test_fixture("safetensors/tiny-dsv3-bf16"));
    snprintf(ref_path, sizeof ref_path, "%s/reference.safetensors", model_path);
    td_dist d = {0};
    td_model_params mp = {.quiet = true};
    if (td_model_open(model_path, &mp, &d.m) != TD_OK)
        return td_test_skip("the bf16 fixture is missing (TANDEM_SHARED)");
    d.V = d.m->hp.vocab_size;
    d.tok = td_plain_tokenizer((int)d.V);
    td_tensor_dir *dir = NULL;
    TD_CHECK(td_tensor_dir_create(&dir) == TD_OK && td_st_load(ref_path, dir, NULL) == TD_OK);
    const td_tensor *ids = td_tensor_dir_find(dir, "input_ids");
    td_engine_params ep = {.n_threads = 1};
    td_session_params spp = {.n_ctx = 128};
    td_sampler_params seeded = {.temperature = 1, .top_p = 1, .seed = 20240611};
    if (!TD_CHECK(ids && ids->shape[0] >= 8 && ids->shape[0] < 100 && d.tok) ||
        !TD_CHECK(td_engine_open(d.m, &ep, &d.e) == TD_OK && td_session_create(d.e, &spp, &d.s) == TD_OK) ||
        !TD_CHECK(td_sampler_create(d.V, &seeded, &d.smp) == TD_OK) ||
        !TD_CHECK(td_sampler_create(d.V, &seeded, &d.plain_smp) == TD_OK) ||
        !TD_CHECK(td_generator_create(d.s, d.tok, d.smp, &d.g) == TD_OK))
        goto done;
    d.T = ids->shape[0];
    memcpy(d.ctx, ids->data, (size_t)d.T * sizeof(int32_t));
    /* the context in the cache; the next token fixed: the main model's favourite */
    td_gen_params gp = {.max_tokens = 1, .ignore_eos = true};
    TD_CHECK(td_generate(d.g, d.ctx, d.T, &gp, NULL, NULL) == TD_OK);
    d.next = td_argmax(td_session_logits(d.s), d.V);

    const td_case cases[] = {
        {"token after next, temperature 1", {.temperature = 1, .top_p = 1, .seed = 20240611}, 1, 1, true},
        {"the token after that, k = 2", {.temperature = 1, .top_p = 1, .seed = 7}, 2, 2, false},
        {"temperature 0.8, top-k 40, top-p 0.9",
         {.temperature = 0.8, .top_k = 40, .top_p = 0.9, .seed = 2000},
         1,
         1,
         false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) td_run_case(&d, &cases[i]);

done:
    td_generator_free(d.g);
    td_sampler_free(d.smp);
    td_sampler_free(d.plain_smp);
    td_session_free(d.s);
    td_engine_close(d.e);
    td_tensor_dir_free(dir);
    td_model_close(d.m);
    td_tokenizer_free(d.tok);
    return td_test_finish();
}
