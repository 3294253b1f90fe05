/* Every operation of every backend (td_backend_registry) against the reference backend (the CPU on its
 * scalar kernels), in the manner of llama.cpp's test-backend-ops.
 *
 * Each case runs one sequence of operations on the reference and then on every other backend, from
 * the same inputs, and compares what came back on the metric that suits it:
 *  - NMSE = sum (got - ref)^2 / sum ref^2 for everything computed (products, norms, attention, experts),
 *    under a bound per operation and per the backend's declared precision (bo_nmse_max);
 *  - bit equality for the copies (to_host, from_host, copy, add of exactly representable values,
 *    buf_wrap), which are also checked against the host's own values;
 *  - the routed experts' ids as sets per row, where the reference's choice is clear of a tie: a row
 *    whose k-th and (k+1)-th choice (or group) lie closer than the backend's precision can resolve is
 *    skipped and counted, since either answer is right there.
 * Every buffer has guard rows of a sentinel around its view (and the columns its stride skips), which
 * must come back untouched, and every computed output must be finite.
 *
 * Shapes: the four fixture models (bf16 with q_lora, bf16 with a direct q_proj, the GGUF q4_K_M with the
 * MLA k_b/v_b split, the GGUF q8_0 with kv_b), and DeepSeek-V3's real shapes from a model of random
 * weights with 8 distinct weight sets behind its 256 experts (tests/td_test_model.c). The real shapes
 * run fewer rows under the sanitizers (TANDEM_SANITIZED=1), one case per operation at least.
 *
 * TANDEM_TEST_BACKENDS=name,name limits the backends compared (the reference always runs). */
#include "td_backend_registry.h"
#include "td_clock.h"
#include "td_engine.h"
#include "td_ops.h"
#include "td_test.h"
#include "td_test_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ operations and their bounds */

typedef enum bo_op {
    BO_COPIES = 0,
    BO_RMSNORM = 1,
    BO_EMBED = 2,
    BO_LINEAR = 3,
    BO_FFN = 4,
    BO_ROUTE = 5,
    BO_MOE = 6,
    BO_ATTENTION = 7,
    BO_OP_COUNT
} bo_op;

static const char *const bo_op_names[BO_OP_COUNT] = {"copies", "rmsnorm", "embed", "linear",
                                                     "ffn",    "route",   "moe",   "attention"};

/* NMSE bounds per operation and precision.
 *  - f32: float32 sums in another order leave ~1e-13 on these shapes. So do the norms and the
 *    dequantized rows on every backend, whose only rounding is the sum of squares (measured: 0).
 *  - q8+residual: an activation row is quantized to 8 bits per block of 256 and its rounding error
 *    again to 8 bits: an element's error is ~2^-16 of its block's largest, which an outlier (8x here,
 *    as in hidden states) makes ~3e-5 of a typical value. Measured on the fixtures and V3's shapes
 *    (AVX2 and AVX-512 alike): linear <= 6.4e-9, ffn <= 3.9e-8 (x, then silu(gate)*up quantized),
 *    moe <= 2.2e-8, attention <= 9.4e-7 (six products, and a softmax that amplifies score errors, over
 *    313 positions). Float weights (bf16, f32) keep float activations: ~1e-13. Bounds: 15-25x the
 *    worst measured, which a wrong row, head, position or expert (NMSE ~1e-3 and up) cannot meet.
 *  - bf16: operands rounded to 8 significant bits (relative error up to 2^-9, variance ~1.3e-6 each),
 *    so one product lands near 3e-6 and chained ones near 1e-5..1e-4 (the AMX eval on the fixtures gave
 *    KL 4e-3, bench/RESULTS.md). From that estimate: this machine has no AMX to measure on. */
static const double bo_nmse_max[BO_OP_COUNT][TD_PRECISION_COUNT] = {
    [BO_COPIES] = {0, 0, 0},
    [BO_RMSNORM] = {1e-12, 1e-12, 1e-12},
    [BO_EMBED] = {1e-12, 1e-12, 1e-12},
    [BO_LINEAR] = {1e-11, 1e-7, 1e-4},
    [BO_FFN] = {1e-10, 1e-6, 3e-4},
    [BO_ROUTE] = {1e-11, 1e-7, 1e-4}, /* the router's logits and the chosen experts' weights */
    [BO_MOE] = {1e-10, 5e-7, 3e-4},
    [BO_ATTENTION] = {1e-9, 2e-5, 1e-3},
};

/* Routing choices closer than this (in score units: sigmoid or softmax, plus bias) may legitimately
 * flip: the logits' error at the backend's linear bound (sqrt(NMSE) of logits of rms ~1.5), times the
 * sigmoid's slope of at most 1/4, times 2 for a group's sum of two, with a margin of 3 or more. */
static const double bo_tie_margin[TD_PRECISION_COUNT] = {1e-5, 1e-3, 2e-2};

/* ------------------------------------------------------------------ one run of a case on one backend */

#define BO_GUARD_ROWS 2
#define BO_MAX_BUFS 12
#define BO_MAX_OUTS 24
#define BO_SENTINEL 0x7fc0deadu /* a quiet NaN with a payload no operation writes */

typedef enum bo_metric { BO_NMSE = 0, BO_EXACT = 1, BO_IDS = 2, BO_ROUTE_W = 3 } bo_metric;

/* A view of `rows` rows of `width` floats inside a buffer of sentinels. */
typedef struct bo_buf {
    td_buf *buf;
    td_view v;
    int64_t rows, width, total;
} bo_buf;

typedef struct bo_out {
    char name[40];
    bo_metric metric;
    float *v; /* int32 ids for BO_IDS */
    int64_t n, width;
} bo_out;

typedef struct bo_run {
    td_backend *b;
    bo_buf bufs[BO_MAX_BUFS];
    int n_bufs;
    bo_out out[BO_MAX_OUTS];
    int n_out;
    int64_t guard_bad;  /* sentinel words that changed */
    int64_t nonfinite;  /* NaN or Inf among the computed outputs */
    int64_t self_bad;   /* values that differ from what the host knows they must be */
    td_status st;       /* the first operation that failed */
    char err[512];
} bo_run;

static td_status bo_fail(bo_run *r, td_status st, const char *what)
{
    if (r->st == TD_OK) {
        r->st = st;
        snprintf(r->err, sizeof r->err, "%s: %s", what, td_errmsg());
    }
    return st;
}

/* A buffer whose view starts `lead` floats into its first row after the guard rows. */
static bo_buf *bo_buf_new(bo_run *r, int64_t rows, int64_t width, int64_t stride, int64_t lead)
{
    TD_ASSERT(r->n_bufs < BO_MAX_BUFS && lead + width <= stride);
    bo_buf *bb = &r->bufs[r->n_bufs];
    int64_t off = BO_GUARD_ROWS * stride + lead;
    bb->total = (rows + 2 * BO_GUARD_ROWS) * stride;
    bb->rows = rows;
    bb->width = width;
    td_backend *b = r->b;
    if (bo_fail(r, b->i->buf_new(b, (size_t)bb->total * sizeof(float), &bb->buf), "buf_new") != TD_OK) return NULL;
    r->n_bufs++;
    uint32_t *fill = malloc((size_t)bb->total * sizeof *fill);
    for (int64_t i = 0; i < bb->total; i++) fill[i] = BO_SENTINEL;
    bo_fail(r, b->i->from_host(b, fill, 1, bb->total, td_view_rows(bb->buf, bb->total)), "from_host (sentinels)");
    free(fill);
    bb->v = (td_view){bb->buf, off, stride};
    return bb;
}

static td_status bo_put(bo_run *r, const bo_buf *bb, const void *host)
{
    return bo_fail(r, r->b->i->from_host(r->b, host, bb->rows, bb->width, bb->v), "from_host");
}

/* A new output of n values (rows of width), read from bb when bb is given. */
static float *bo_out_new(bo_run *r, const char *name, bo_metric metric, int64_t n, int64_t width, const bo_buf *bb)
{
    TD_ASSERT(r->n_out < BO_MAX_OUTS);
    bo_out *o = &r->out[r->n_out++];
    snprintf(o->name, sizeof o->name, "%s", name);
    o->metric = metric;
    o->v = calloc((size_t)n, sizeof(float));
    o->n = n;
    o->width = width;
    if (bb) bo_fail(r, r->b->i->to_host(r->b, bb->v, bb->rows, bb->width, o->v), "to_host");
    return o->v;
}

/* Sentinels outside every view, finite outputs; frees the buffers. */
static void bo_finish(bo_run *r)
{
    td_backend *b = r->b;
    bo_fail(r, b->i->sync(b), "sync");
    for (int i = 0; i < r->n_bufs; i++) {
        bo_buf *bb = &r->bufs[i];
        uint32_t *all = malloc((size_t)bb->total * sizeof *all);
        if (r->st == TD_OK &&
            bo_fail(r, b->i->to_host(b, td_view_rows(bb->buf, bb->total), 1, bb->total, all), "to_host") == TD_OK) {
            for (int64_t e = 0; e < bb->total; e++) {
                int64_t rel = e - bb->v.off, t = rel >= 0 ? rel / bb->v.stride : -1, c = rel - t * bb->v.stride;
                bool inside = rel >= 0 && t < bb->rows && c < bb->width;
                r->guard_bad += !inside && all[e] != BO_SENTINEL;
            }
        }
        free(all);
        b->i->buf_free(b, bb->buf);
    }
    r->n_bufs = 0;
    for (int i = 0; i < r->n_out; i++) {
        const bo_out *o = &r->out[i];
        if (o->metric == BO_NMSE || o->metric == BO_ROUTE_W)
            for (int64_t j = 0; j < o->n; j++) r->nonfinite += !isfinite(o->v[j]);
    }
}

static void bo_run_free(bo_run *r)
{
    for (int i = 0; i < r->n_out; i++) free(r->out[i].v);
    r->n_out = 0;
}

/* ------------------------------------------------------------------ inputs */

/* Rows of uniform values in [-1, 1) with an outlier of 8x every 61 values, as hidden states have. */
static float *bo_rand_rows(uint64_t seed, int64_t n, int64_t width)
{
    float *x = malloc((size_t)(n * width) * sizeof *x);
    uint64_t s = seed;
    for (int64_t i = 0; i < n * width; i++) x[i] = td_test_randf(&s) * (i % 61 == 7 ? 8.0f : 1.0f);
    return x;
}

/* Normalized rows, as the operation's input comes out of its norm (unit weights when norm is NULL). */
static float *bo_normed_rows(const td_model *m, uint64_t seed, int64_t n, int64_t width, const float *norm)
{
    float *x = bo_rand_rows(seed, n, width), *ones = NULL;
    if (!norm) {
        ones = malloc((size_t)width * sizeof *ones);
        for (int64_t i = 0; i < width; i++) ones[i] = 1.0f;
    }
    for (int64_t t = 0; t < n; t++) td_rmsnorm(x + t * width, x + t * width, norm ? norm : ones, width, m->hp.rms_norm_eps);
    free(ones);
    return x;
}

/* ------------------------------------------------------------------ cases */

/* One attention call: up to two sequences, each continuing its own cache. */
typedef struct bo_seq_call {
    int seq; /* 0: A, 1: B */
    int64_t n;
    td_attn_path path;
} bo_seq_call;

typedef struct bo_call {
    bo_seq_call s[2];
    int n_seqs;
} bo_call;

typedef struct bo_case bo_case;
struct bo_case {
    bo_op op;
    char model[24];
    char shape[64];
    td_status (*run)(const bo_case *c, bo_run *r);
    const td_model *m;
    const td_module *mod;          /* whose weights it reads, for supports() (NULL: none) */
    td_type types[4];              /* the types of those weights */
    int n_types;
    int64_t n;                     /* rows */
    const td_matrix *w;            /* linear, embed */
    const float *norm;             /* the norm in front of the input (NULL: unit weights) */
    const td_ffn_weights *ffn;
    const td_moe_weights *moe;
    const td_attn_weights *attn;
    td_kv_type kv;                 /* sequence A's cache; B's has the other type */
    const bo_call *calls;
    int n_calls;
    uint64_t seed;
};

static td_status bo_run_copies(const bo_case *c, bo_run *r)
{
    td_backend *b = r->b;
    int64_t n = c->n, w = c->m->hp.hidden_size;
    float *x = malloc((size_t)(n * w) * sizeof *x), *z = malloc((size_t)(n * w) * sizeof *z);
    uint64_t s = c->seed;
    for (int64_t i = 0; i < n * w; i++) { /* sixteenths in [-8, 8): every sum below is exact */
        x[i] = (float)((int)(td_test_rand(&s) % 256) - 128) / 16.0f;
        z[i] = (float)((int)(td_test_rand(&s) % 256) - 128) / 16.0f;
    }
    bo_buf *a = bo_buf_new(r, n, w, w + 3, 1), *d = bo_buf_new(r, n - 1, w, w + 5, 2), *sum = bo_buf_new(r, n, w, w, 0);
    td_status st = a && d && sum ? TD_OK : r->st;
    if (st == TD_OK) st = bo_put(r, a, x);
    float *back = st == TD_OK ? bo_out_new(r, "from_host, to_host", BO_EXACT, n * w, w, a) : NULL;
    if (st == TD_OK) st = bo_fail(r, b->i->copy(b, td_view_from(a->v, 1), d->v, n - 1, w), "copy");
    float *copied = st == TD_OK ? bo_out_new(r, "copy rows 1..", BO_EXACT, (n - 1) * w, w, d) : NULL;
    if (st == TD_OK) st = bo_put(r, sum, z);
    if (st == TD_OK) st = bo_fail(r, b->i->add(b, sum->v, a->v, n, w), "add");
    float *added = st == TD_OK ? bo_out_new(r, "add", BO_EXACT, n * w, w, sum) : NULL;
    for (int64_t i = 0; st == TD_OK && i < n * w; i++) {
        r->self_bad += back[i] != x[i] || added[i] != x[i] + z[i];
        if (i < (n - 1) * w) r->self_bad += copied[i] != x[w + i];
    }
    /* a backend in host memory shows its buffers to the host, once what it was doing is done */
    const float *mem = NULL;
    if (st == TD_OK && b->host_memory && (st = bo_fail(r, b->i->sync(b), "sync")) == TD_OK) {
        mem = b->i->buf_host(b, a->buf);
        r->self_bad += !mem;
    }
    for (int64_t t = 0; mem && t < n; t++)
        r->self_bad += memcmp(mem + a->v.off + t * a->v.stride, x + t * w, (size_t)w * sizeof(float)) != 0;
    /* zero copy: the backend computes straight into host memory it wraps, where it can */
    float *host = calloc((size_t)(n * w), sizeof *host);
    td_buf *wrap = NULL;
    td_status ws = st == TD_OK ? b->i->buf_wrap(b, host, (size_t)(n * w) * sizeof(float), &wrap) : TD_E_UNSUPPORTED;
    if (ws == TD_OK) {
        if (bo_fail(r, b->i->copy(b, a->v, td_view_rows(wrap, w), n, w), "copy into buf_wrap") == TD_OK &&
            bo_fail(r, b->i->sync(b), "sync") == TD_OK)
            for (int64_t i = 0; i < n * w; i++) r->self_bad += host[i] != x[i];
        b->i->buf_free(b, wrap);
    } else if (ws != TD_E_UNSUPPORTED) {
        st = bo_fail(r, ws, "buf_wrap");
    }
    free(host);
    free(x);
    free(z);
    return st;
}

static td_status bo_run_rmsnorm(const bo_case *c, bo_run *r)
{
    td_backend *b = r->b;
    int64_t n = c->n, H = c->m->hp.hidden_size;
    float *x = bo_rand_rows(c->seed, n, H);
    /* into the second half of rows twice as wide (the MTP block's concatenation), then in place */
    bo_buf *in = bo_buf_new(r, n, H, 2 * H, 0), *out = bo_buf_new(r, n, H, 2 * H, H);
    td_status st = in && out ? bo_put(r, in, x) : r->st;
    if (st == TD_OK) st = bo_fail(r, b->i->rmsnorm(b, c->norm, H, in->v, out->v, n), "rmsnorm");
    if (st == TD_OK) bo_out_new(r, "into another view", BO_NMSE, n * H, H, out);
    if (st == TD_OK) st = bo_fail(r, b->i->rmsnorm(b, c->norm, H, in->v, in->v, n), "rmsnorm in place");
    if (st == TD_OK) bo_out_new(r, "in place", BO_NMSE, n * H, H, in);
    free(x);
    return st;
}

static td_status bo_run_embed(const bo_case *c, bo_run *r)
{
    td_backend *b = r->b;
    int64_t n = c->n, H = c->w->cols, V = c->w->rows;
    int32_t *tokens = malloc((size_t)n * sizeof *tokens);
    for (int64_t t = 0; t < n; t++) tokens[t] = (int32_t)(t == 0 ? V - 1 : t == 1 ? 0 : (t * 7919 + 3) % V);
    if (n > 3) tokens[3] = tokens[2]; /* a repeated token */
    bo_buf *out = bo_buf_new(r, n, H, H + 7, 0);
    td_status st = out ? bo_fail(r, b->i->embed(b, c->w, tokens, n, out->v), "embed") : r->st;
    if (st == TD_OK) bo_out_new(r, "rows", BO_NMSE, n * H, H, out);
    free(tokens);
    return st;
}

static td_status bo_run_linear(const bo_case *c, bo_run *r)
{
    td_backend *b = r->b;
    const td_matrix *w = c->w;
    float *x = bo_normed_rows(c->m, c->seed, c->n, w->cols, c->norm);
    bo_buf *in = bo_buf_new(r, c->n, w->cols, w->cols, 0), *out = bo_buf_new(r, c->n, w->rows, w->rows, 0);
    td_status st = in && out ? bo_put(r, in, x) : r->st;
    if (st == TD_OK) st = bo_fail(r, b->i->linear(b, w, in->v, out->v, c->n), "linear");
    if (st == TD_OK) bo_out_new(r, "y", BO_NMSE, c->n * w->rows, w->rows, out);
    free(x);
    return st;
}

/* acc on the host after an operation, less what it held before: what the operation added */
static void bo_delta(float *after, const float *before, int64_t n)
{
    for (int64_t i = 0; i < n; i++) after[i] -= before[i];
}

static td_status bo_run_ffn(const bo_case *c, bo_run *r)
{
    td_backend *b = r->b;
    int64_t n = c->n, H = c->ffn->down.rows;
    float *x = bo_normed_rows(c->m, c->seed, n, H, c->norm), *acc0 = bo_rand_rows(c->seed + 1, n, H);
    bo_buf *in = bo_buf_new(r, n, H, H, 0), *acc = bo_buf_new(r, n, H, H, 0);
    td_status st = in && acc ? bo_put(r, in, x) : r->st;
    if (st == TD_OK) st = bo_put(r, acc, acc0);
    if (st == TD_OK) st = bo_fail(r, b->i->ffn(b, c->ffn, in->v, acc->v, n), "ffn");
    if (st == TD_OK) bo_delta(bo_out_new(r, "acc += ffn(x)", BO_NMSE, n * H, H, acc), acc0, n * H);
    free(x);
    free(acc0);
    return st;
}

static td_status bo_run_route(const bo_case *c, bo_run *r)
{
    td_backend *b = r->b;
    const td_hparams *hp = &c->m->hp;
    int64_t n = c->n, H = hp->hidden_size, E = hp->n_routed_experts, k = hp->n_experts_per_tok;
    float *xn = bo_normed_rows(c->m, c->seed, n, H, c->norm);
    bo_buf *in = bo_buf_new(r, n, H, H, 0), *logits = bo_buf_new(r, n, E, E, 0);
    bo_buf *ids = bo_buf_new(r, n, k, k, 0), *wts = bo_buf_new(r, n, k, k, 0);
    td_status st = in && logits && ids && wts ? bo_put(r, in, xn) : r->st;
    if (st == TD_OK) st = bo_fail(r, b->i->linear(b, &c->moe->router, in->v, logits->v, n), "linear (router)");
    if (st == TD_OK) bo_out_new(r, "logits", BO_NMSE, n * E, E, logits);
    if (st == TD_OK) st = bo_fail(r, b->i->route(b, c->moe, in->v, ids->v, wts->v, n), "route");
    if (st == TD_OK) bo_out_new(r, "ids", BO_IDS, n * k, k, ids);
    if (st == TD_OK) bo_out_new(r, "weights", BO_ROUTE_W, n * k, k, wts);
    free(xn);
    return st;
}

/* k distinct experts per row: half of them common to every row (several rows on one expert), the last
 * expert among the first row's. */
static void bo_moe_choice(const td_hparams *hp, int64_t n, uint64_t seed, int32_t *ids, float *w)
{
    int E = hp->n_routed_experts, k = hp->n_experts_per_tok;
    uint64_t s = seed;
    for (int64_t t = 0; t < n; t++) {
        for (int j = 0; j < k; j++) {
            int32_t id = j < k / 2 ? (int32_t)((j * 37 + 5) % E) : (int32_t)((t * 13 + j * 7 + 1) % E);
            if (t == 0 && j == k - 1) id = E - 1;
            for (bool clash = true; clash;) { /* step past an expert the row already has */
                clash = false;
                for (int q = 0; q < j; q++) clash |= ids[t * k + q] == id;
                if (clash) id = (id + 1) % E;
            }
            ids[t * k + j] = id;
            w[t * k + j] = 0.1f + 0.9f * fabsf(td_test_randf(&s));
        }
    }
}

static td_status bo_run_moe(const bo_case *c, bo_run *r)
{
    td_backend *b = r->b;
    const td_hparams *hp = &c->m->hp;
    int64_t n = c->n, H = hp->hidden_size, k = hp->n_experts_per_tok;
    float *xn = bo_normed_rows(c->m, c->seed, n, H, c->norm), *x0 = bo_rand_rows(c->seed + 1, n, H);
    float *junk = bo_rand_rows(c->seed + 2, n, H), *w = malloc((size_t)(n * k) * sizeof *w);
    int32_t *ids = malloc((size_t)(n * k) * sizeof *ids);
    bo_moe_choice(hp, n, c->seed, ids, w);
    bo_buf *in = bo_buf_new(r, n, H, H, 0), *bi = bo_buf_new(r, n, k, k, 0), *bw = bo_buf_new(r, n, k, k, 0);
    bo_buf *out = bo_buf_new(r, n, H, H, 0), *x = bo_buf_new(r, n, H, H, 0);
    td_backend_stats s0, s1;
    b->i->stats(b, &s0);
    td_status st = in && bi && bw && out && x ? bo_put(r, in, xn) : r->st;
    if (st == TD_OK) st = bo_put(r, bi, ids);
    if (st == TD_OK) st = bo_put(r, bw, w);
    if (st == TD_OK) st = bo_put(r, out, junk); /* out is written, not added to */
    if (st == TD_OK) st = bo_put(r, x, x0);
    if (st == TD_OK) st = bo_fail(r, b->i->moe_submit(b, c->moe, in->v, bi->v, bw->v, out->v, n), "moe_submit");
    if (st == TD_OK) st = bo_fail(r, b->i->moe_wait(b), "moe_wait");
    if (st == TD_OK) bo_out_new(r, "out", BO_NMSE, n * H, H, out);
    /* an operation issued between submit and wait runs after the experts (the backend's order): out holds
     * junk again, so an add that ran early would show */
    if (st == TD_OK) st = bo_put(r, out, junk);
    if (st == TD_OK) st = bo_fail(r, b->i->moe_submit(b, c->moe, in->v, bi->v, bw->v, out->v, n), "moe_submit");
    if (st == TD_OK) st = bo_fail(r, b->i->add(b, x->v, out->v, n, H), "add before moe_wait");
    if (st == TD_OK) st = bo_fail(r, b->i->moe_wait(b), "moe_wait");
    if (st == TD_OK) bo_delta(bo_out_new(r, "x += out before wait", BO_NMSE, n * H, H, x), x0, n * H);
    b->i->stats(b, &s1);
    r->self_bad += st == TD_OK && s1.moe_submits - s0.moe_submits != 2;
    free(xn);
    free(x0);
    free(junk);
    free(w);
    free(ids);
    return st;
}

static td_status bo_run_attention(const bo_case *c, bo_run *r)
{
    td_backend *b = r->b;
    int64_t H = c->m->hp.hidden_size, rows = 0, ctx[2] = {0, 0}, pos[2] = {0, 0};
    for (int i = 0; i < c->n_calls; i++) {
        int64_t nr = 0;
        for (int j = 0; j < c->calls[i].n_seqs; j++) {
            nr += c->calls[i].s[j].n;
            ctx[c->calls[i].s[j].seq] += c->calls[i].s[j].n;
        }
        rows = nr > rows ? nr : rows;
    }
    td_kv_type kv_type[2] = {c->kv, c->kv == TD_KV_F32 ? TD_KV_BF16 : TD_KV_F32};
    td_kv *kv[2] = {NULL, NULL};
    int64_t max_ctx = ctx[0] > ctx[1] ? ctx[0] : ctx[1];
    td_status st = bo_fail(r, b->i->reserve(b, rows, max_ctx), "reserve");
    for (int q = 0; st == TD_OK && q < 2; q++)
        if (ctx[q]) st = bo_fail(r, b->i->kv_new(b, ctx[q], kv_type[q], &kv[q]), "kv_new");
    bo_buf *x = st == TD_OK ? bo_buf_new(r, rows, H, H, 0) : NULL;
    if (!x) st = r->st;
    for (int i = 0; st == TD_OK && i < c->n_calls; i++) {
        const bo_call *call = &c->calls[i];
        td_attn_seq seqs[2];
        int64_t nr = 0;
        for (int j = 0; j < call->n_seqs; j++) {
            const bo_seq_call *sc = &call->s[j];
            seqs[j] = (td_attn_seq){.row0 = nr, .n = sc->n, .pos0 = pos[sc->seq], .kv = kv[sc->seq], .path = (int)sc->path};
            pos[sc->seq] += sc->n;
            nr += sc->n;
        }
        float *x0 = bo_rand_rows(c->seed + (uint64_t)i, rows, H);
        st = bo_put(r, x, x0);
        if (st == TD_OK) st = bo_fail(r, b->i->attention(b, c->attn, x->v, seqs, call->n_seqs), "attention");
        char name[40];
        snprintf(name, sizeof name, "call %d", i + 1);
        /* rows past this call's must come back as they went in */
        if (st == TD_OK) {
            float *got = bo_out_new(r, name, BO_NMSE, rows * H, H, x);
            for (int64_t e = nr * H; e < rows * H; e++) r->self_bad += got[e] != x0[e];
            bo_delta(got, x0, nr * H);
            memset(got + nr * H, 0, (size_t)((rows - nr) * H) * sizeof(float));
        }
        free(x0);
    }
    for (int q = 0; q < 2; q++)
        if (kv[q]) b->i->kv_free(b, kv[q]);
    return st;
}

/* ------------------------------------------------------------------ comparison */

static double bo_nmse(const float *got, const float *ref, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return num / den;
}

static int bo_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* How far the reference's routing of one row is from a tie: the gap between the last group kept and
 * the next, and between the k-th expert chosen and the next, in the router's score units. */
static double bo_route_margin(const td_hparams *hp, const float *bias, const float *logits)
{
    int E = hp->n_routed_experts, k = hp->n_experts_per_tok, G = hp->n_group, per = G > 1 ? E / G : E;
    double *score = malloc((size_t)E * sizeof *score), *choice = malloc((size_t)E * sizeof *choice);
    double *sorted = malloc((size_t)(E + G + 2) * sizeof *sorted), margin = INFINITY, mx = -INFINITY, sum = 0.0;
    for (int e = 0; e < E; e++) mx = logits[e] > mx ? logits[e] : mx;
    for (int e = 0; e < E; e++) {
        score[e] = hp->scoring == TD_SCORING_SIGMOID ? 1.0 / (1.0 + exp(-(double)logits[e])) : exp(logits[e] - mx);
        sum += score[e];
    }
    for (int e = 0; e < E; e++) {
        if (hp->scoring != TD_SCORING_SIGMOID) score[e] /= sum;
        choice[e] = score[e] + (bias ? bias[e] : 0.0);
    }
    if (hp->topk_method != TD_TOPK_GREEDY && G > 1) {
        double *gs = sorted + E + 2; /* a group's score: its best two choices (noaux_tc) or its best score */
        for (int g = 0; g < G; g++) {
            const double *v = (hp->topk_method == TD_TOPK_NOAUX_TC ? choice : score) + g * per;
            memcpy(sorted, v, (size_t)per * sizeof *sorted);
            qsort(sorted, (size_t)per, sizeof *sorted, bo_desc);
            gs[g] = hp->topk_method == TD_TOPK_NOAUX_TC ? sorted[0] + sorted[1] : sorted[0];
        }
        memcpy(sorted, gs, (size_t)G * sizeof *sorted);
        qsort(sorted, (size_t)G, sizeof *sorted, bo_desc);
        margin = sorted[hp->topk_group - 1] - sorted[hp->topk_group];
        double cut = sorted[hp->topk_group - 1];
        for (int g = 0; g < G; g++)
            if (gs[g] < cut)
                for (int i = 0; i < per; i++) choice[g * per + i] = -INFINITY;
    }
    memcpy(sorted, choice, (size_t)E * sizeof *sorted);
    qsort(sorted, (size_t)E, sizeof *sorted, bo_desc);
    if (k < E && sorted[k - 1] - sorted[k] < margin) margin = sorted[k - 1] - sorted[k];
    free(score);
    free(choice);
    free(sorted);
    return margin;
}

/* The weight of expert id in a row of k, or NaN when the row lacks it. */
static float bo_weight_of(const int32_t *ids, const float *w, int k, int32_t id)
{
    for (int j = 0; j < k; j++)
        if (ids[j] == id) return w[j];
    return NAN;
}

typedef struct bo_verdict {
    double value, bound;
    char metric[8];
    char note[96];
    bool ok;
} bo_verdict;

/* ids as sets per row where the reference is clear of a tie; the weights of the rows that agree */
static void bo_compare_route(const bo_case *c, const bo_run *ref, const bo_run *got, td_backend_precision prec,
                             bo_verdict *v)
{
    const td_hparams *hp = &c->m->hp;
    int k = hp->n_experts_per_tok, E = hp->n_routed_experts;
    const bo_out *lg = &ref->out[0], *ri = &ref->out[1], *rw = &ref->out[2], *gi = &got->out[1], *gw = &got->out[2];
    int64_t n = ri->n / k, differ = 0, ties = 0;
    double num = 0.0, den = 0.0;
    for (int64_t t = 0; t < n; t++) {
        const int32_t *a = (const int32_t *)ri->v + t * k, *b = (const int32_t *)gi->v + t * k;
        if (bo_route_margin(hp, c->moe->bias, lg->v + t * E) < bo_tie_margin[prec]) {
            ties++;
            continue;
        }
        bool same = true;
        for (int j = 0; j < k; j++) same &= !isnan(bo_weight_of(b, gw->v + t * k, k, a[j]));
        if (!same) {
            differ++;
            continue;
        }
        for (int j = 0; j < k; j++) {
            double d = (double)bo_weight_of(b, gw->v + t * k, k, a[j]) - rw->v[t * k + j];
            num += d * d;
            den += (double)rw->v[t * k + j] * rw->v[t * k + j];
        }
    }
    double wn = den > 0.0 ? num / den : 0.0;
    snprintf(v->note, sizeof v->note, "ids: %lld of %lld rows differ, %lld near ties", (long long)differ,
             (long long)n, (long long)ties);
    v->ok &= differ == 0 && ties < n && wn <= v->bound;
    if (wn > v->value) v->value = wn;
}

static bo_verdict bo_compare(const bo_case *c, const bo_run *ref, const bo_run *got, td_backend_precision prec)
{
    bo_verdict v = {.value = 0.0, .bound = bo_nmse_max[c->op][prec], .ok = true};
    snprintf(v.metric, sizeof v.metric, "%s", c->op == BO_COPIES ? "neq" : "nmse");
    TD_ASSERT(ref->n_out == got->n_out);
    int64_t bits = 0;
    for (int i = 0; i < ref->n_out; i++) {
        const bo_out *a = &ref->out[i], *b = &got->out[i];
        if (a->metric == BO_EXACT) {
            for (int64_t j = 0; j < a->n; j++) bits += memcmp(&a->v[j], &b->v[j], sizeof(float)) != 0;
        } else if (a->metric == BO_NMSE) {
            double e = bo_nmse(b->v, a->v, a->n);
            if (!(e <= v.value)) {
                v.value = e;
                if (ref->n_out > 1) snprintf(v.note, sizeof v.note, "worst: %s", a->name);
            }
        }
    }
    if (c->op == BO_COPIES) {
        v.value = (double)bits;
        snprintf(v.note, sizeof v.note, "values not bit-identical");
    }
    if (c->op == BO_ROUTE) bo_compare_route(c, ref, got, prec, &v);
    v.ok &= v.value <= v.bound;
    return v;
}

/* ------------------------------------------------------------------ backends, tables */

typedef struct bo_backend {
    const td_backend_entry *e;
    td_backend *b;   /* for the current model */
    char **lines;    /* the table */
    int n_lines;
    int failed;
    double seconds;
} bo_backend;

static void bo_line(bo_backend *bb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bo_line(bo_backend *bb, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    bb->lines = realloc(bb->lines, (size_t)(bb->n_lines + 1) * sizeof *bb->lines);
    bb->lines[bb->n_lines++] = strdup(buf);
}

static bool bo_supports(const bo_case *c, td_backend *b, char *why, size_t cap)
{
    for (int i = 0; c->mod && i < c->n_types; i++)
        if (!b->i->supports(b, c->mod, c->types[i], why, cap)) return false;
    return true;
}

/* A run is sound when every operation succeeded, no sentinel changed, and every output is finite. */
static bool bo_sound(const bo_case *c, const char *who, const bo_run *r)
{
    bool ok = TD_CHECKF(r->st == TD_OK, "%s %s %s on %s: %s", bo_op_names[c->op], c->model, c->shape, who, r->err);
    ok &= TD_CHECKF(r->guard_bad == 0, "%s %s %s on %s: %lld sentinel values around the views changed (an overrun)",
                    bo_op_names[c->op], c->model, c->shape, who, (long long)r->guard_bad);
    ok &= TD_CHECKF(r->nonfinite == 0, "%s %s %s on %s: %lld outputs are NaN or Inf", bo_op_names[c->op], c->model,
                    c->shape, who, (long long)r->nonfinite);
    ok &= TD_CHECKF(r->self_bad == 0, "%s %s %s on %s: %lld values differ from what the host knows", bo_op_names[c->op],
                    c->model, c->shape, who, (long long)r->self_bad);
    return ok;
}

static void bo_case_run(const bo_case *c, td_backend *b, bo_run *r)
{
    memset(r, 0, sizeof *r);
    r->b = b;
    td_err_clear();
    c->run(c, r);
    bo_finish(r);
}

/* The case on the reference, then on every backend, compared. */
static void bo_check_case(const bo_case *c, td_backend *ref, bo_backend *bks, int n_bks, double *ref_seconds)
{
    bo_run rr, gr;
    double t0 = td_now();
    bo_case_run(c, ref, &rr);
    double tr = td_now() - t0;
    *ref_seconds += tr;
    if (!bo_sound(c, "the reference", &rr)) {
        bo_run_free(&rr);
        return;
    }
    for (int i = 0; i < n_bks; i++) {
        bo_backend *bb = &bks[i];
        if (!bb->b) continue;
        char why[256] = "";
        if (!bo_supports(c, bb->b, why, sizeof why)) {
            bo_line(bb, "%-9s %-12s %-40s skipped: %s", bo_op_names[c->op], c->model, c->shape, why);
            continue;
        }
        double t1 = td_now();
        bo_case_run(c, bb->b, &gr);
        double tg = td_now() - t1;
        bb->seconds += tg;
        bool sound = bo_sound(c, bb->e->name, &gr);
        bo_verdict v = sound ? bo_compare(c, &rr, &gr, bb->e->precision) : (bo_verdict){.ok = false};
        TD_CHECKF(!sound || v.ok, "%s %s %s on %s: %s %.3g (bound %.3g)%s%s", bo_op_names[c->op], c->model,
                  c->shape, bb->e->name, v.metric, v.value, v.bound, v.note[0] ? "; " : "", v.note);
        bb->failed += !v.ok;
        bo_line(bb, "%-9s %-12s %-40s %-4s %8.1e %8.1e %-4s %6.3f %6.3f  %s", bo_op_names[c->op], c->model, c->shape,
                v.metric, v.value, v.bound, v.ok ? "ok" : "FAIL", tg, tr, sound ? v.note : "unsound run (see above)");
        bo_run_free(&gr);
    }
    bo_run_free(&rr);
}

/* ------------------------------------------------------------------ the cases of a model */

#define BO_MAX_CASES 24

#define BO_MAX_CALLS 20

/* Attention on the fixtures: prefill from context 1, decode, a few hundred positions filled through the
 * operation itself (fill_batches of 32 rows), both forms forced against the automatic choice, and two
 * sessions in one call. Returns the number of calls. */
static int bo_fixture_calls(int fill_batches, bo_call *out)
{
    int n = 0;
    out[n++] = (bo_call){{{0, 20, TD_ATTN_AUTO}}, 1}; /* prefill from context 1: decompressed */
    out[n++] = (bo_call){{{0, 1, TD_ATTN_AUTO}}, 1};  /* decode: absorbed */
    for (int i = 0; i < fill_batches && n < BO_MAX_CALLS - 5; i++) out[n++] = (bo_call){{{0, 32, TD_ATTN_AUTO}}, 1};
    out[n++] = (bo_call){{{0, 1, TD_ATTN_AUTO}}, 1};         /* decode over the filled positions */
    out[n++] = (bo_call){{{0, 1, TD_ATTN_DECOMPRESSED}}, 1}; /* expanded in slices of one batch */
    out[n++] = (bo_call){{{0, 16, TD_ATTN_ABSORBED}}, 1};    /* a prefill in the decode form */
    out[n++] = (bo_call){{{1, 1, TD_ATTN_AUTO}, {0, 17, TD_ATTN_AUTO}}, 2}; /* two sessions, B at context 1 */
    out[n++] = (bo_call){{{0, 1, TD_ATTN_AUTO}, {1, 1, TD_ATTN_AUTO}}, 2};  /* both decoding */
    return n;
}

/* Attention at V3's shapes, where the reference takes 0.3 s a row (2 s under the sanitizers). */
static const bo_call bo_v3_calls[] = {
    {{{0, 3, TD_ATTN_DECOMPRESSED}, {1, 1, TD_ATTN_AUTO}}, 2},
    {{{0, 1, TD_ATTN_AUTO}}, 1},
    {{{0, 1, TD_ATTN_DECOMPRESSED}}, 1},
};
static const bo_call bo_v3_calls_sanitized[] = {
    {{{0, 1, TD_ATTN_DECOMPRESSED}, {1, 1, TD_ATTN_AUTO}}, 2},
};

/* Rows per case: the fixtures' (cheap), V3's, and V3's under the sanitizers. */
typedef struct bo_sizes {
    int64_t max_rows;
    int64_t linear[3]; /* q (or kv_a), the up-projection, the head */
    int64_t ffn_dense, ffn_shared, ffn_expert;
    int64_t route, moe[2];
    const bo_call *calls;
    int n_calls;
    bool both_kv; /* A's cache in f32 and in bf16 */
} bo_sizes;

static const td_module *bo_module(const td_model *m, td_module_kind kind, int layer)
{
    for (int i = 0; i < m->n_modules; i++)
        if (m->modules[i].kind == kind && m->modules[i].layer == layer) return &m->modules[i];
    return NULL;
}

static bo_case *bo_add(bo_case *cs, int *n, const bo_case *proto, bo_op op, const char *shape_fmt, ...)
    __attribute__((format(printf, 5, 6)));
static bo_case *bo_add(bo_case *cs, int *n, const bo_case *proto, bo_op op, const char *shape_fmt, ...)
{
    TD_ASSERT(*n < BO_MAX_CASES);
    bo_case *c = &cs[(*n)++];
    *c = *proto;
    c->op = op;
    c->seed = proto->seed + (uint64_t)*n * 1000;
    va_list ap;
    va_start(ap, shape_fmt);
    vsnprintf(c->shape, sizeof c->shape, shape_fmt, ap);
    va_end(ap);
    return c;
}

static void bo_add_linear(bo_case *cs, int *n, const bo_case *proto, const td_module *mod, const char *what,
                          const td_matrix *w, const float *norm, int64_t rows)
{
    if (!rows) return;
    bo_case *c = bo_add(cs, n, proto, BO_LINEAR, "%s %s %lldx%lld, %lld rows", what, td_type_name(w->type),
                        (long long)w->rows, (long long)w->cols, (long long)rows);
    c->run = bo_run_linear;
    c->mod = mod;
    c->types[0] = w->type;
    c->n_types = 1;
    c->n = rows;
    c->w = w;
    c->norm = norm;
}

static void bo_add_ffn(bo_case *cs, int *n, const bo_case *proto, const td_module *mod, const char *what,
                       const td_ffn_weights *f, const float *norm, int64_t rows)
{
    if (!rows) return;
    bo_case *c = bo_add(cs, n, proto, BO_FFN, "%s %s %lld wide, %lld rows", what, td_type_name(f->gate.type),
                        (long long)f->gate.rows, (long long)rows);
    c->run = bo_run_ffn;
    c->mod = mod;
    c->types[0] = f->gate.type;
    c->types[1] = f->down.type;
    c->n_types = 2;
    c->n = rows;
    c->ffn = f;
    c->norm = norm;
}

/* The types an attention module reads. */
static int bo_attn_types(const td_attn_weights *a, td_type *out)
{
    const td_matrix *ms[] = {&a->q_a, &a->q_b, &a->q, &a->kv_a, &a->kv_b, &a->k_b, &a->v_b, &a->o};
    int n = 0;
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        if (!ms[i]->data) continue;
        bool seen = false;
        for (int j = 0; j < n; j++) seen |= out[j] == ms[i]->type;
        if (!seen && n < 4) out[n++] = ms[i]->type;
    }
    return n;
}

static int bo_model_cases(const td_model *m, const char *label, const bo_sizes *z, bo_case *cs)
{
    const td_hparams *hp = &m->hp;
    int L = hp->n_layers, dense = -1, moe = -1, n = 0;
    for (int l = 0; l < L; l++) {
        if (!m->layers[l].is_moe && dense < 0) dense = l;
        if (m->layers[l].is_moe && moe < 0) moe = l;
    }
    TD_ASSERT(moe >= 0);
    const td_layer_weights *lm = &m->layers[moe];
    const td_attn_weights *a = &lm->attn;
    bo_case proto = {.m = m, .seed = 0x5eed};
    snprintf(proto.model, sizeof proto.model, "%s", label);

    bo_case *c = bo_add(cs, &n, &proto, BO_COPIES, "%lld rows of %lld", 5LL, (long long)hp->hidden_size);
    c->run = bo_run_copies;
    c->n = 5;
    c = bo_add(cs, &n, &proto, BO_RMSNORM, "%lld rows of %lld", 5LL, (long long)hp->hidden_size);
    c->run = bo_run_rmsnorm;
    c->n = 5;
    c->norm = lm->ffn_norm;
    c = bo_add(cs, &n, &proto, BO_EMBED, "%s %lldx%lld, 6 rows", td_type_name(m->embed.type),
               (long long)m->embed.rows, (long long)m->embed.cols);
    c->run = bo_run_embed;
    c->mod = bo_module(m, TD_MODULE_EMBED, -1);
    c->types[0] = m->embed.type;
    c->n_types = 1;
    c->n = 6;
    c->w = &m->embed;

    const td_module *attn = bo_module(m, TD_MODULE_ATTN, moe);
    if (hp->q_lora_rank) bo_add_linear(cs, &n, &proto, attn, "q_a", &a->q_a, a->norm, z->linear[0]);
    else bo_add_linear(cs, &n, &proto, attn, "q", &a->q, a->norm, z->linear[0]);
    if (a->split_kv_b) bo_add_linear(cs, &n, &proto, attn, "k_b", &a->k_b, NULL, z->linear[1]);
    else bo_add_linear(cs, &n, &proto, attn, "kv_b", &a->kv_b, a->kv_a_norm, z->linear[1]);
    bo_add_linear(cs, &n, &proto, bo_module(m, TD_MODULE_HEAD, -1), "head", &m->head, m->norm, z->linear[2]);

    if (dense >= 0)
        bo_add_ffn(cs, &n, &proto, bo_module(m, TD_MODULE_DENSE_MLP, dense), "dense", &m->layers[dense].dense,
                   m->layers[dense].ffn_norm, z->ffn_dense);
    if (lm->moe.has_shared)
        bo_add_ffn(cs, &n, &proto, bo_module(m, TD_MODULE_SHARED_EXPERTS, moe), "shared", &lm->moe.shared,
                   lm->ffn_norm, z->ffn_shared);
    bo_add_ffn(cs, &n, &proto, bo_module(m, TD_MODULE_EXPERTS, moe), "expert 0", &lm->moe.experts[0], lm->ffn_norm,
               z->ffn_expert);

    c = bo_add(cs, &n, &proto, BO_ROUTE, "%s %dx%lld, top-%d, %lld rows", td_type_name(lm->moe.router.type),
               hp->n_routed_experts, (long long)hp->hidden_size, hp->n_experts_per_tok, (long long)z->route);
    c->run = bo_run_route;
    c->mod = bo_module(m, TD_MODULE_ROUTER, moe);
    c->types[0] = lm->moe.router.type;
    c->n_types = 1;
    c->n = z->route;
    c->moe = &lm->moe;
    c->norm = lm->ffn_norm;
    for (int i = 0; i < 2; i++) {
        if (!z->moe[i]) continue;
        c = bo_add(cs, &n, &proto, BO_MOE, "%s %d of %d experts, %lld rows", td_type_name(lm->moe.experts[0].gate.type),
                   hp->n_experts_per_tok, hp->n_routed_experts, (long long)z->moe[i]);
        c->run = bo_run_moe;
        c->mod = bo_module(m, TD_MODULE_EXPERTS, moe);
        c->types[0] = lm->moe.experts[0].gate.type;
        c->types[1] = lm->moe.experts[0].down.type;
        c->n_types = 2;
        c->n = z->moe[i];
        c->moe = &lm->moe;
        c->norm = lm->ffn_norm;
    }
    for (int kv = TD_KV_F32; kv <= TD_KV_BF16; kv++) {
        if (kv == TD_KV_F32 && !z->both_kv) continue;
        int64_t rows = 0, ctx = 0;
        for (int i = 0; i < z->n_calls; i++)
            for (int j = 0; j < z->calls[i].n_seqs; j++) {
                rows += z->calls[i].s[j].n;
                if (z->calls[i].s[j].seq == 0) ctx += z->calls[i].s[j].n;
            }
        c = bo_add(cs, &n, &proto, BO_ATTENTION, "%s cache, %d calls, %lld rows, ctx %lld", td_kv_type_name((td_kv_type)kv),
                   z->n_calls, (long long)rows, (long long)ctx);
        c->run = bo_run_attention;
        c->mod = attn;
        c->n_types = bo_attn_types(a, c->types);
        c->attn = a;
        c->kv = (td_kv_type)kv;
        c->calls = z->calls;
        c->n_calls = z->n_calls;
    }
    return n;
}

/* ------------------------------------------------------------------ models and backends */

/* As the engine opens a backend: every module prepared, scratch for whole batches reserved. Also what
 * the table promises of any backend: a name, and a reason when it refuses a module. */
static td_status bo_prepare(td_backend *b, const td_model *m, int64_t max_rows)
{
    const char *name = b->i->name(b);
    TD_CHECK(name && *name);
    char why[256] = "";
    TD_CHECKF(!b->i->supports(b, &m->modules[0], TD_TYPE_I64, why, sizeof why) && why[0],
              "%s accepts i64 weights for %s, or refuses them without a reason", name, m->modules[0].name);
    for (int i = 0; i < m->n_modules; i++) TD_TRY(b->i->prepare(b, m, &m->modules[i], NULL));
    return b->i->reserve(b, max_rows, 1);
}

/* Makes and prepares every backend for this model; false when the reference cannot be made. */
static bool bo_backends_open(const td_model *m, const char *label, int64_t max_rows, td_backend **ref,
                             bo_backend *bks, int n_bks)
{
    const td_backend_entry *re = td_backend_registry_reference();
    if (!TD_CHECKF(re->create(m, max_rows, ref) == TD_OK && bo_prepare(*ref, m, max_rows) == TD_OK, "%s on %s: %s", re->name,
                   label, td_errmsg()))
        return false;
    for (int i = 0; i < n_bks; i++) {
        bo_backend *bb = &bks[i];
        bb->b = NULL;
        td_status st = bb->e->create(m, max_rows, &bb->b);
        if (st == TD_OK) st = bo_prepare(bb->b, m, max_rows);
        TD_CHECKF(st == TD_OK, "%s on %s: %s", bb->e->name, label, td_errmsg());
        if (st != TD_OK && bb->b) {
            bb->b->i->free(bb->b);
            bb->b = NULL;
        }
    }
    return true;
}

static void bo_backends_close(td_backend *ref, bo_backend *bks, int n_bks)
{
    for (int i = 0; i < n_bks; i++) {
        if (bks[i].b) bks[i].b->i->free(bks[i].b);
        bks[i].b = NULL;
    }
    if (ref) ref->i->free(ref);
}

static void bo_check_model(const td_model *m, const char *label, const bo_sizes *z, bo_backend *bks, int n_bks,
                           double *ref_seconds)
{
    td_backend *ref = NULL;
    if (bo_backends_open(m, label, z->max_rows, &ref, bks, n_bks)) {
        bo_case cs[BO_MAX_CASES];
        int n = bo_model_cases(m, label, z, cs);
        for (int i = 0; i < n; i++) bo_check_case(&cs[i], ref, bks, n_bks, ref_seconds);
    }
    bo_backends_close(ref, bks, n_bks);
}

/* The registry's backends less the reference, those the machine lacks, and those TANDEM_TEST_BACKENDS
 * leaves out. */
static int bo_backends_select(bo_backend *bks)
{
    int n_all, n = 0;
    const td_backend_entry *all = td_backend_registry(&n_all);
    const char *only = getenv("TANDEM_TEST_BACKENDS");
    for (int i = 0; i < n_all; i++) {
        const td_backend_entry *e = &all[i];
        char why[512] = "";
        if (e == td_backend_registry_reference()) continue;
        if (only && *only) {
            char list[512];
            snprintf(list, sizeof list, ",%s,", only);
            char want[128];
            snprintf(want, sizeof want, ",%s,", e->name);
            if (!strstr(list, want)) continue;
        }
        if (!e->available(why, sizeof why)) {
            printf("%-15s skipped: %s\n", e->name, why);
            continue;
        }
        bks[n++] = (bo_backend){.e = e};
    }
    return n;
}

static void bo_print_tables(const bo_backend *bks, int n_bks, double ref_seconds)
{
    printf("\nreference %s: %.2f s\n", td_backend_registry_reference()->name, ref_seconds);
    for (int i = 0; i < n_bks; i++) {
        const bo_backend *bb = &bks[i];
        printf("\n%s (%s products): %d cases, %d failed, %.2f s\n", bb->e->name,
               td_backend_precision_name(bb->e->precision), bb->n_lines, bb->failed, bb->seconds);
        printf("%-9s %-12s %-40s %-4s %8s %8s %-4s %6s %6s\n", "op", "model", "shape", "", "value", "bound", "", "s",
               "ref s");
        for (int j = 0; j < bb->n_lines; j++) printf("%s\n", bb->lines[j]);
    }
}

int main(void)
{
    const char *san = getenv("TANDEM_SANITIZED");
    bool sanitized = san && strcmp(san, "1") == 0;
    bo_backend bks[16];
    int n_bks = bo_backends_select(bks);
    double t0 = td_now(), ref_seconds = 0.0;

    static const struct {
        const char *path, *label;
    } fixtures[] = {
        {"safetensors/tiny-dsv3-bf16", "st-bf16"},
        {"safetensors/tiny-dsv3-qdirect-bf16", "st-qdirect"},
        {"gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf", "gguf-q4_k_m"},
        {"gguf/tiny-dsv3-q8_0-legacy.gguf", "gguf-q8_0"},
    };
    /* 313 positions; 185 under the sanitizers, where the decompressed form's cost (quadratic in the
     * context) made the GGUF fixtures' attention most of the run */
    bo_call fixture_calls[BO_MAX_CALLS];
    const bo_sizes fz = {.max_rows = 32, .linear = {17, 5, 1}, .ffn_dense = 17, .ffn_shared = 3, .ffn_expert = 1,
                         .route = 32, .moe = {1, 17}, .calls = fixture_calls,
                         .n_calls = bo_fixture_calls(sanitized ? 4 : 8, fixture_calls), .both_kv = true};
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        td_model *m = NULL;
        td_model_params mp = {.quiet = true};
        if (!TD_CHECKF(td_model_open(td_test_fixture(fixtures[i].path), &mp, &m) == TD_OK, "%s", td_errmsg())) continue;
        bo_check_model(m, fixtures[i].label, &fz, bks, n_bks, &ref_seconds);
        td_model_close(m);
    }

    /* V3's shapes: 16 rows where the AMX tiles start, two for products of 44M multiply-adds a row */
    bo_sizes vz = {.max_rows = 16, .linear = {16, 2, 3}, .ffn_shared = 2, .ffn_expert = 1, .route = 16, .moe = {2, 0},
                   .calls = bo_v3_calls, .n_calls = (int)(sizeof bo_v3_calls / sizeof bo_v3_calls[0])};
    if (sanitized) {
        vz = (bo_sizes){.max_rows = 16, .linear = {16, 1, 1}, .ffn_shared = 1, .route = 8, .moe = {1, 0},
                        .calls = bo_v3_calls_sanitized, .n_calls = 1};
    }
    td_test_model_params tp = td_test_model_v3_params(td_test_fixture("real/deepseek-v3-config.json"));
    td_model *v3 = NULL;
    double tb = td_now();
    if (TD_CHECKF(td_test_model_build(&tp, &v3) == TD_OK, "%s", td_errmsg())) {
        printf("V3-shaped model built in %.2f s\n", td_now() - tb);
        bo_check_model(v3, "v3-8", &vz, bks, n_bks, &ref_seconds);
    }
    td_model_close(v3);

    bo_print_tables(bks, n_bks, ref_seconds);
    printf("\ntotal %.2f s%s\n", td_now() - t0, sanitized ? " (sanitized build: fewer rows at V3's shapes)" : "");
    for (int i = 0; i < n_bks; i++) {
        for (int j = 0; j < bks[i].n_lines; j++) free(bks[i].lines[j]);
        free(bks[i].lines);
    }
    return td_test_finish();
}
