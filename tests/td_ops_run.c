/* The operation sequences of the per-backend op tests, and the buffers of sentinels they run in. */
#include "td_ops_run.h"

#include "td_ops.h"
#include "td_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BO_GUARD_ROWS 2
#define BO_SENTINEL   0x7fc0deadu /* a quiet NaN with a payload no operation writes */

/* ------------------------------------------------------------------ buffers and outputs */

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

void bo_run_free(bo_run *r)
{
    for (int i = 0; i < r->n_out; i++) free(r->out[i].v);
    r->n_out = 0;
}

void bo_case_run(const bo_case *c, td_backend *b, bo_run *r)
{
    memset(r, 0, sizeof *r);
    r->b = b;
    td_err_clear();
    c->run(c, r);
    bo_finish(r);
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
    for (int64_t t = 0; t < n; t++)
        td_rmsnorm(x + t * width, x + t * width, norm ? norm : ones, width, m->hp.rms_norm_eps);
    free(ones);
    return x;
}

/* ------------------------------------------------------------------ the operations */

td_status bo_run_copies(const bo_case *c, bo_run *r)
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

td_status bo_run_rmsnorm(const bo_case *c, bo_run *r)
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

td_status bo_run_embed(const bo_case *c, bo_run *r)
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

td_status bo_run_linear(const bo_case *c, bo_run *r)
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

td_status bo_run_ffn(const bo_case *c, bo_run *r)
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

td_status bo_run_route(const bo_case *c, bo_run *r)
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
 * expert among the first row's; with `same`, every row on the first row's experts (a batch whose experts
 * each see all its rows: the tiles' path where a backend has one). */
static void bo_moe_choice(const td_hparams *hp, int64_t n, uint64_t seed, bool same, int32_t *ids, float *w)
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
            ids[t * k + j] = same && t > 0 ? ids[j] : id;
            w[t * k + j] = 0.1f + 0.9f * fabsf(td_test_randf(&s));
        }
    }
}

td_status bo_run_moe(const bo_case *c, bo_run *r)
{
    td_backend *b = r->b;
    const td_hparams *hp = &c->m->hp;
    int64_t n = c->n, H = hp->hidden_size, k = hp->n_experts_per_tok;
    float *xn = bo_normed_rows(c->m, c->seed, n, H, c->norm), *x0 = bo_rand_rows(c->seed + 1, n, H);
    float *junk = bo_rand_rows(c->seed + 2, n, H), *w = malloc((size_t)(n * k) * sizeof *w);
    int32_t *ids = malloc((size_t)(n * k) * sizeof *ids);
    bo_moe_choice(hp, n, c->seed, c->same_experts, ids, w);
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

td_status bo_run_attention(const bo_case *c, bo_run *r)
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
            seqs[j] =
                (td_attn_seq){.row0 = nr, .n = sc->n, .pos0 = pos[sc->seq], .kv = kv[sc->seq], .path = (int)sc->path};
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
