/* The sampler: each filter against an expectation computed here in double precision, draw frequencies
 * against the distribution (seeded, within 5 sigma), determinism by seed, and no allocation per token. */
#include "td_alloc.h"
#include "td_sampler.h"
#include "td_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define V 64

static void td_random_logits(uint64_t *rng, float *l, int n, float scale)
{
    for (int i = 0; i < n; i++) l[i] = scale * td_test_randf(rng);
}

/* softmax(l / T) in double */
static void td_softmax_ref(const float *l, int n, double T, double *p)
{
    double m = l[0], s = 0;
    for (int i = 1; i < n; i++) m = l[i] > m ? l[i] : m;
    for (int i = 0; i < n; i++) s += (p[i] = exp((l[i] - m) / T));
    for (int i = 0; i < n; i++) p[i] /= s;
}

static int td_order_desc(const double *p, int n, int *order)
{
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && (p[order[j]] > p[order[j - 1]]); j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    return n;
}

static double td_sum(const float *p, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += p[i];
    return s;
}

static void td_test_greedy(void)
{
    td_sampler *s;
    TD_CHECK(td_sampler_create(V, NULL, &s) == TD_OK);
    float l[V] = {0}, probs[V];
    l[7] = 3;
    l[9] = 3;
    TD_CHECK(td_sampler_sample(s, l) == 7); /* lowest id on a tie */
    td_sampler_probs(s, l, probs);
    TD_CHECK(probs[7] == 1 && td_sum(probs, V) == 1);
    td_sampler_free(s);
}

/* temperature alone: exactly the softmax */
static void td_test_softmax(uint64_t *rng)
{
    td_sampler_params p = {.temperature = 0.7, .top_p = 1};
    td_sampler *s;
    TD_CHECK(td_sampler_create(V, &p, &s) == TD_OK);
    float l[V], probs[V];
    double ref[V];
    td_random_logits(rng, l, V, 4);
    td_sampler_probs(s, l, probs);
    td_softmax_ref(l, V, 0.7, ref);
    double err = 0;
    for (int i = 0; i < V; i++) err = fmax(err, fabs(probs[i] - ref[i]));
    TD_CHECKF(err < 1e-6, "max error %g", err);
    td_sampler_free(s);
}

static void td_test_top_k(uint64_t *rng)
{
    for (int k = 1; k <= 9; k += 4) {
        td_sampler_params p = {.temperature = 0.8, .top_k = k, .top_p = 1};
        td_sampler *s;
        TD_CHECK(td_sampler_create(V, &p, &s) == TD_OK);
        float l[V], probs[V];
        double ref[V];
        int order[V];
        td_random_logits(rng, l, V, 3);
        td_sampler_probs(s, l, probs);
        td_softmax_ref(l, V, 0.8, ref);
        td_order_desc(ref, V, order);
        double kept = 0;
        for (int i = 0; i < k; i++) kept += ref[order[i]];
        int nonzero = 0;
        double err = 0;
        for (int i = 0; i < V; i++) nonzero += probs[i] > 0;
        for (int i = 0; i < k; i++) err = fmax(err, fabs(probs[order[i]] - ref[order[i]] / kept));
        TD_CHECKF(nonzero == k && err < 1e-6, "k=%d: %d kept, error %g", k, nonzero, err);
        TD_CHECK(fabs(td_sum(probs, V) - 1) < 1e-6);
        td_sampler_free(s);
    }
}

/* The smallest set of most likely tokens whose mass reaches top_p, renormalized. */
static void td_test_top_p(uint64_t *rng)
{
    int checked = 0;
    for (int iter = 0; iter < 50; iter++) {
        double top_p = 0.3 + 0.65 * (td_test_randf(rng) + 1) / 2;
        td_sampler_params p = {.temperature = 1.0, .top_p = top_p};
        td_sampler *s;
        TD_CHECK(td_sampler_create(V, &p, &s) == TD_OK);
        float l[V], probs[V];
        double ref[V];
        int order[V];
        td_random_logits(rng, l, V, 3);
        td_softmax_ref(l, V, 1.0, ref);
        td_order_desc(ref, V, order);
        double acc = 0;
        int keep = 0;
        while (keep < V && acc < top_p) acc += ref[order[keep++]];
        /* a boundary closer than float rounding could go either way: skip it */
        if (fabs(acc - top_p) < 1e-5 || fabs(acc - ref[order[keep - 1]] - top_p) < 1e-5) {
            td_sampler_free(s);
            continue;
        }
        td_sampler_probs(s, l, probs);
        int nonzero = 0;
        double err = 0;
        for (int i = 0; i < V; i++) nonzero += probs[i] > 0;
        for (int i = 0; i < keep; i++) err = fmax(err, fabs(probs[order[i]] - ref[order[i]] / acc));
        TD_CHECKF(nonzero == keep && err < 1e-6, "top_p %.3f: kept %d, want %d, error %g", top_p, nonzero, keep, err);
        checked++;
        td_sampler_free(s);
    }
    TD_CHECK(checked > 40);
}

/* min-p keeps tokens at least min_p times as likely as the top one; top-k then top-p apply after it. */
static void td_test_min_p_and_combined(uint64_t *rng)
{
    td_sampler_params p = {.temperature = 1.0, .min_p = 0.2, .top_p = 1};
    td_sampler *s;
    TD_CHECK(td_sampler_create(V, &p, &s) == TD_OK);
    float l[V], probs[V];
    double ref[V];
    td_random_logits(rng, l, V, 3);
    td_softmax_ref(l, V, 1.0, ref);
    double top = 0;
    for (int i = 0; i < V; i++) top = fmax(top, ref[i]);
    td_sampler_probs(s, l, probs);
    bool same = true;
    for (int i = 0; i < V; i++) same &= (probs[i] > 0) == (ref[i] >= 0.2 * top);
    TD_CHECK(same);
    p = (td_sampler_params){.temperature = 1.0, .top_k = 10, .top_p = 0.5};
    TD_CHECK(td_sampler_set_params(s, &p) == TD_OK);
    td_sampler_probs(s, l, probs);
    int order[V], nonzero = 0;
    td_order_desc(ref, V, order);
    double k10 = 0, acc = 0;
    for (int i = 0; i < 10; i++) k10 += ref[order[i]];
    int keep = 0;
    while (acc < 0.5 * k10) acc += ref[order[keep++]];
    for (int i = 0; i < V; i++) nonzero += probs[i] > 0;
    TD_CHECKF(nonzero == keep, "top-k 10 then top-p 0.5: kept %d, want %d", nonzero, keep);
    td_sampler_free(s);
}

/* Draw frequencies follow the distribution; nothing outside the kept set is ever drawn. */
static void td_test_draw_statistics(void)
{
    td_sampler_params p = {.temperature = 1.0, .top_k = 6, .top_p = 1, .seed = 1234};
    td_sampler *s;
    TD_CHECK(td_sampler_create(V, &p, &s) == TD_OK);
    float l[V], probs[V];
    for (int i = 0; i < V; i++) l[i] = (float)(-0.25 * i);
    td_sampler_probs(s, l, probs);
    enum { N = 200000 };
    int counts[V] = {0};
    for (int i = 0; i < N; i++) counts[td_sampler_sample(s, l)]++;
    int outside = 0, off = 0;
    for (int i = 0; i < V; i++) {
        if (probs[i] == 0) {
            outside += counts[i];
            continue;
        }
        double mean = N * probs[i], sd = sqrt(N * probs[i] * (1 - probs[i]));
        off += fabs(counts[i] - mean) > 5 * sd;
    }
    TD_CHECK(outside == 0 && off == 0);
    /* the uniform draw: mean 1/2, variance 1/12 */
    double m = 0, m2 = 0;
    for (int i = 0; i < N; i++) {
        double u = td_sampler_uniform(s);
        TD_CHECK(u >= 0 && u < 1);
        m += u;
        m2 += u * u;
    }
    m /= N;
    m2 = m2 / N - m * m;
    TD_CHECKF(fabs(m - 0.5) < 5 * sqrt(1.0 / 12 / N) && fabs(m2 - 1.0 / 12) < 0.002, "mean %g var %g", m, m2);
    td_sampler_free(s);
}

static void td_test_seeds(uint64_t *rng)
{
    td_sampler_params p = {.temperature = 1.2, .top_p = 0.95, .seed = 99};
    td_sampler *a, *b, *c;
    TD_CHECK(td_sampler_create(V, &p, &a) == TD_OK && td_sampler_create(V, &p, &b) == TD_OK);
    p.seed = 100;
    TD_CHECK(td_sampler_create(V, &p, &c) == TD_OK);
    float l[V];
    td_random_logits(rng, l, V, 1);
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < 1000; i++) {
        int32_t x = td_sampler_sample(a, l), y = td_sampler_sample(b, l), z = td_sampler_sample(c, l);
        same_ab += x == y;
        same_ac += x == z;
    }
    TD_CHECK(same_ab == 1000 && same_ac < 1000);
    /* re-seeding replays the sequence */
    td_sampler_reseed(a, 7);
    int32_t first[20];
    for (int i = 0; i < 20; i++) first[i] = td_sampler_sample(a, l);
    td_sampler_reseed(a, 7);
    bool replay = true;
    for (int i = 0; i < 20; i++) replay &= td_sampler_sample(a, l) == first[i];
    TD_CHECK(replay);
    td_sampler_free(a);
    td_sampler_free(b);
    td_sampler_free(c);
}

/* Sampling allocates nothing: with every allocation refused, it still works. */
static void td_test_no_alloc(uint64_t *rng)
{
    td_sampler_params p = {.temperature = 0.9, .top_k = 20, .top_p = 0.9, .min_p = 0.01, .seed = 5};
    td_sampler *s;
    TD_CHECK(td_sampler_create(V, &p, &s) == TD_OK);
    float l[V], probs[V];
    td_random_logits(rng, l, V, 2);
    td_alloc_fail_after(0);
    for (int i = 0; i < 100; i++) {
        td_sampler_sample(s, l);
        td_sampler_probs(s, l, probs);
        td_sampler_draw(s, probs);
    }
    TD_CHECK(td_alloc_failures() == 0);
    td_alloc_fail_after(-1);
    td_sampler_free(s);
}

static void td_test_bad_params(void)
{
    td_sampler_params bad[] = {
        {.temperature = NAN, .top_p = 1},
        {.temperature = -1, .top_p = 1},
        {.temperature = 1e9, .top_p = 1},
        {.temperature = 1, .top_k = -1, .top_p = 1},
        {.temperature = 1, .top_p = 0},
        {.temperature = 1, .top_p = 1.5},
        {.temperature = 1, .top_p = 1, .min_p = 1},
        {.temperature = 1, .top_p = 1, .min_p = -0.1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        td_sampler *s = NULL;
        TD_CHECKF(td_sampler_create(V, &bad[i], &s) == TD_E_ARG && !s && td_errmsg()[0], "case %zu", i);
    }
    td_sampler *s;
    TD_CHECK(td_sampler_create(0, NULL, &s) == TD_E_ARG);
}

/* The one check of sampling values that the command-line flags and chat's /set share. */
static void td_test_params_set(void)
{
    td_sampler_params p = td_sampler_greedy();
    TD_CHECK(td_sampler_params_set(&p, "temp", "0.7") == TD_OK && p.temperature == 0.7);
    TD_CHECK(td_sampler_params_set(&p, "temperature", "0") == TD_OK && p.temperature == 0);
    TD_CHECK(td_sampler_params_set(&p, "top-k", "40") == TD_OK && p.top_k == 40);
    TD_CHECK(td_sampler_params_set(&p, "top_p", "0.9") == TD_OK && p.top_p == 0.9);
    TD_CHECK(td_sampler_params_set(&p, "min-p", "0.05") == TD_OK && p.min_p == 0.05);
    TD_CHECK(td_sampler_params_set(&p, "seed", "18446744073709551615") == TD_OK && p.seed == UINT64_MAX);
    td_sampler_params before = p;
    static const char *const bad[][2] = {
        {"temp", "-1"},  {"temp", "nan"},  {"temp", "101"},   {"temp", "abc"}, {"temp", ""},
        {"top_k", "-4"}, {"top_k", "2.5"}, {"top_k", "1e99"}, {"top_p", "0"},  {"top_p", "1.5"},
        {"min_p", "1"},  {"min_p", "-0.1"}, {"seed", "-1"},   {"seed", "x"},   {"seed", "18446744073709551616"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        td_status st = td_sampler_params_set(&p, bad[i][0], bad[i][1]);
        TD_CHECKF(st == TD_E_ARG && td_errmsg()[0], "%s %s gave %d", bad[i][0], bad[i][1], (int)st);
        TD_CHECKF(memcmp(&p, &before, sizeof p) == 0, "%s %s changed the parameters", bad[i][0], bad[i][1]);
    }
    TD_CHECK(td_sampler_params_set(&p, "tmp", "1") == TD_E_NOT_FOUND);
    /* fresh seeds: below 2^53 (exact as JSON numbers), and not the same twice */
    uint64_t a = td_sampler_random_seed(), b = td_sampler_random_seed();
    TD_CHECK(a < (1ull << 53) && b < (1ull << 53) && a != b);
}

int main(void)
{
    uint64_t rng = 2024;
    td_test_greedy();
    td_test_softmax(&rng);
    td_test_top_k(&rng);
    td_test_top_p(&rng);
    td_test_min_p_and_combined(&rng);
    td_test_draw_statistics();
    td_test_seeds(&rng);
    td_test_no_alloc(&rng);
    td_test_bad_params();
    td_test_params_set();
    return td_test_finish();
}
