#include "td_sampler.h"

#include "td_alloc.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

struct td_sampler {
    int64_t n_vocab;
    td_sampler_params p;
    uint64_t rng[4]; /* xoshiro256** */
    float *probs;    /* [n_vocab] scratch for td_sampler_sample */
    int32_t *idx;    /* [n_vocab] candidate ids */
};

/* ------------------------------------------------------------------ random numbers */

static uint64_t td_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t td_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t td_rng_next(uint64_t *s)
{
    uint64_t r = td_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = td_rotl(s[3], 45);
    return r;
}

void td_sampler_reseed(td_sampler *s, uint64_t seed)
{
    s->p.seed = seed;
    for (int i = 0; i < 4; i++) s->rng[i] = td_splitmix64(&seed);
}

double td_sampler_uniform(td_sampler *s)
{
    return (double)(td_rng_next(s->rng) >> 11) * 0x1.0p-53;
}

/* ------------------------------------------------------------------ lifecycle */

td_sampler_params td_sampler_greedy(void)
{
    return (td_sampler_params){.temperature = 0, .top_k = 0, .top_p = 1};
}

td_status td_sampler_params_check(const td_sampler_params *p)
{
    if (!(p->temperature >= 0 && p->temperature <= 100))
        return td_fail(TD_E_ARG, "temperature %g is out of range 0..100 (0 = greedy)", p->temperature);
    if (p->top_k < 0) return td_fail(TD_E_ARG, "top-k %d is negative (0 turns it off)", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return td_fail(TD_E_ARG, "top-p %g is out of range (0, 1] (1 turns it off)", p->top_p);
    if (!(p->min_p >= 0 && p->min_p < 1))
        return td_fail(TD_E_ARG, "min-p %g is out of range [0, 1) (0 turns it off)", p->min_p);
    return TD_OK;
}

const char *td_sampler_param_names(void)
{
    return "temp, top_k, top_p, min_p, seed";
}

/* name with '-' read as '_' equals want */
static bool td_param_is(const char *name, const char *want)
{
    for (; *name && *want; name++, want++)
        if (*name != *want && !(*name == '-' && *want == '_')) return false;
    return !*name && !*want;
}

static td_status td_param_number(const char *value, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end || !isfinite(v)) return td_fail(TD_E_ARG, "'%s' is not a number", value);
    *out = v;
    return TD_OK;
}

static td_status td_param_whole(const char *value, uint64_t hi, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strchr(value, '-') ? 0 : strtoull(value, &end, 10); /* strtoull would wrap "-1" */
    if (!end || errno || end == value || *end || v > hi)
        return td_fail(TD_E_ARG, "'%s' is not a whole number in 0..%llu", value, (unsigned long long)hi);
    *out = v;
    return TD_OK;
}

td_status td_sampler_params_set(td_sampler_params *p, const char *name, const char *value)
{
    td_sampler_params q = *p;
    double v = 0;
    uint64_t w = 0;
    if (td_param_is(name, "temp") || td_param_is(name, "temperature")) {
        TD_TRY(td_param_number(value, &v));
        q.temperature = v;
    } else if (td_param_is(name, "top_p")) {
        TD_TRY(td_param_number(value, &v));
        q.top_p = v;
    } else if (td_param_is(name, "min_p")) {
        TD_TRY(td_param_number(value, &v));
        q.min_p = v;
    } else if (td_param_is(name, "top_k")) {
        TD_TRY(td_param_whole(value, 1 << 26, &w));
        q.top_k = (int)w;
    } else if (td_param_is(name, "seed")) {
        TD_TRY(td_param_whole(value, UINT64_MAX, &w));
        q.seed = w;
    } else {
        return td_fail(TD_E_NOT_FOUND, "'%s' is not a sampling setting (%s)", name, td_sampler_param_names());
    }
    TD_TRY(td_sampler_params_check(&q));
    *p = q;
    return TD_OK;
}

uint64_t td_sampler_random_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed) { /* no entropy source: the clock and pid */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
        seed = td_splitmix64(&x);
    }
    return seed & ((1ull << 53) - 1);
}

td_status td_sampler_create(int64_t n_vocab, const td_sampler_params *p, td_sampler **out)
{
    *out = NULL;
    if (n_vocab < 1 || n_vocab > (1 << 26))
        return td_fail(TD_E_ARG, "vocabulary size %lld is out of range", (long long)n_vocab);
    td_sampler_params params = p ? *p : td_sampler_greedy();
    TD_TRY(td_sampler_params_check(&params));
    td_sampler *s = td_calloc(1, sizeof *s);
    if (!s) return td_fail(TD_E_NOMEM, "out of memory");
    s->n_vocab = n_vocab;
    s->probs = td_malloc((size_t)n_vocab * sizeof(float));
    s->idx = td_malloc((size_t)n_vocab * sizeof(int32_t));
    if (!s->probs || !s->idx) {
        td_sampler_free(s);
        return td_fail(TD_E_NOMEM, "out of memory for a sampler over %lld tokens", (long long)n_vocab);
    }
    s->p = params;
    td_sampler_reseed(s, params.seed);
    *out = s;
    return TD_OK;
}

void td_sampler_free(td_sampler *s)
{
    if (!s) return;
    td_free(s->probs);
    td_free(s->idx);
    td_free(s);
}

td_status td_sampler_set_params(td_sampler *s, const td_sampler_params *p)
{
    TD_TRY(td_sampler_params_check(p));
    bool reseed = p->seed != s->p.seed;
    s->p = *p;
    if (reseed) td_sampler_reseed(s, p->seed);
    return TD_OK;
}

const td_sampler_params *td_sampler_params_of(const td_sampler *s)
{
    return &s->p;
}
int64_t td_sampler_n_vocab(const td_sampler *s)
{
    return s->n_vocab;
}

/* ------------------------------------------------------------------ the distribution */

int32_t td_argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

/* Candidates are ordered by probability, then by id, so ties never depend on the sort. */
static bool td_before(const float *p, int32_t a, int32_t b)
{
    return p[a] != p[b] ? p[a] > p[b] : a < b;
}

/* Moves the k best of idx[0..n) to the front (in no order): quickselect, linear on average. */
static void td_select_top(const float *p, int32_t *idx, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    uint64_t x = 0x2545F4914F6CDD1Dull;
    while (lo < hi) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int32_t pivot = idx[lo + (int64_t)(x % (uint64_t)(hi - lo + 1))];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (td_before(p, idx[i], pivot)) i++;
            while (td_before(p, pivot, idx[j])) j--;
            if (i <= j) {
                int32_t t = idx[i];
                idx[i++] = idx[j];
                idx[j--] = t;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
}

/* Heapsort of idx[0..n), best first, by td_before. The heap keeps the worst at its root, so each
 * extraction parks the worst remaining candidate at the end. */
static void td_sift_worst(const float *p, int32_t *idx, int64_t root, int64_t n)
{
    for (;;) {
        int64_t c = 2 * root + 1;
        if (c >= n) return;
        if (c + 1 < n && td_before(p, idx[c], idx[c + 1])) c++;
        if (!td_before(p, idx[root], idx[c])) return;
        int32_t t = idx[c];
        idx[c] = idx[root];
        idx[root] = t;
        root = c;
    }
}

static void td_sort_best_first(const float *p, int32_t *idx, int64_t n)
{
    for (int64_t i = n / 2 - 1; i >= 0; i--) td_sift_worst(p, idx, i, n);
    for (int64_t end = n - 1; end > 0; end--) {
        int32_t t = idx[0];
        idx[0] = idx[end];
        idx[end] = t;
        td_sift_worst(p, idx, 0, end);
    }
}

static void td_probs_with(td_sampler *s, const float *logits, float *probs)
{
    const td_sampler_params *p = &s->p;
    int64_t V = s->n_vocab;
    memset(probs, 0, (size_t)V * sizeof(float));
    int32_t top = td_argmax(logits, V);
    if (p->temperature <= 0 || !isfinite(logits[top])) {
        probs[top] = 1;
        return;
    }
    /* unnormalized softmax: the top token gets exp(0) = 1 */
    double inv_t = 1.0 / p->temperature, m = logits[top];
    float floor_p = (float)p->min_p; /* min-p relative to the top probability, which is 1 here */
    int32_t *idx = s->idx;
    int64_t n = 0;
    double total = 0;
    for (int64_t i = 0; i < V; i++) {
        float e = (float)exp(((double)logits[i] - m) * inv_t);
        if (!(e >= floor_p) || e == 0) continue; /* also drops NaN logits */
        probs[i] = e;
        idx[n++] = (int32_t)i;
        total += e;
    }
    if (p->top_k > 0 && p->top_k < n) {
        td_select_top(probs, idx, n, p->top_k);
        n = p->top_k;
        total = 0;
        for (int64_t i = 0; i < n; i++) total += probs[idx[i]];
    }
    if (p->top_p < 1) {
        /* a token of the nucleus has p >= (1 - top_p) x total / n: the tokens from it on carry more than
         * (1 - top_p) of the mass, and none is larger than it. Only those need sorting. */
        double bound = (1.0 - p->top_p) * total / (double)n * (1 - 1e-6);
        int64_t m2 = 0;
        for (int64_t i = 0; i < n; i++)
            if (probs[idx[i]] >= bound) idx[m2++] = idx[i];
        td_sort_best_first(probs, idx, m2);
        double want = p->top_p * total, acc = 0;
        int64_t keep = m2;
        for (int64_t i = 0; i < m2; i++) {
            acc += probs[idx[i]];
            if (acc >= want) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        total = acc;
    }
    /* zero what was dropped, normalize what was kept */
    for (int64_t i = 0; i < n; i++) probs[idx[i]] = -probs[idx[i]];
    float scale = (float)(1.0 / total);
    for (int64_t i = 0; i < V; i++) probs[i] = probs[i] < 0 ? -probs[i] * scale : 0;
}

void td_sampler_probs(td_sampler *s, const float *logits, float *probs)
{
    td_probs_with(s, logits, probs);
}

int32_t td_sampler_draw(td_sampler *s, const float *probs)
{
    double total = 0;
    int32_t last = 0;
    for (int64_t i = 0; i < s->n_vocab; i++)
        if (probs[i] > 0) total += probs[i], last = (int32_t)i;
    double u = td_sampler_uniform(s) * total, acc = 0;
    for (int64_t i = 0; i < s->n_vocab; i++) {
        if (probs[i] <= 0) continue;
        acc += probs[i];
        if (u < acc) return (int32_t)i;
    }
    return last; /* rounding left u at the very top */
}

int32_t td_sampler_sample(td_sampler *s, const float *logits)
{
    if (s->p.temperature <= 0) return td_argmax(logits, s->n_vocab);
    td_probs_with(s, logits, s->probs);
    return td_sampler_draw(s, s->probs);
}
