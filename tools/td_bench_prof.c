/* The timing interposer of td_bench_prof.h: each wrapped operation finds its layer and module by the
 * weights it was handed, calls the backend's own operation and books the time. */
#include "td_bench_prof.h"

#include "td_alloc.h"
#include "td_clock.h"

#include <string.h>

static td_prof *td_prof_active; /* the operations' way back to their profiler (one per process) */

static const char *const td_prof_names[TD_PROF_KIND_COUNT] = {"embed", "attn",   "dense_mlp", "router", "experts",
                                                              "shared", "head", "mtp",       "other"};

const char *td_prof_kind_name(td_prof_kind k) { return (unsigned)k < TD_PROF_KIND_COUNT ? td_prof_names[k] : "?"; }

/* ------------------------------------------------------------------ which layer and module */

static int td_prof_mtp_slot(const td_prof *p) { return p->n_slots - 2; }

/* The decoder layer (main, or the MTP block's) holding pointer x inside its weights, or -1. */
static int td_prof_layer_of(const td_prof *p, const void *lo_field, size_t offset)
{
    const td_model *m = p->model;
    for (int l = 0; l < m->hp.n_layers; l++)
        if ((const char *)&m->layers[l] + offset == (const char *)lo_field) return l;
    if (m->mtp && (const char *)&m->mtp->layer + offset == (const char *)lo_field) return td_prof_mtp_slot(p);
    return -1;
}

static const td_layer_weights *td_prof_layer(const td_prof *p, int slot)
{
    return slot == td_prof_mtp_slot(p) ? &p->model->mtp->layer : &p->model->layers[slot];
}

static void td_prof_book(td_prof *p, int slot, td_prof_kind k, double t0)
{
    if (slot < 0) slot = p->cur;
    else p->cur = slot;
    if (p->on) p->t[slot * TD_PROF_KIND_COUNT + k] += td_now() - t0;
}

/* ------------------------------------------------------------------ the wrapped operations */

#define TD_PROF_CALL(op, ...) td_prof_active->orig->op(__VA_ARGS__)

static td_status td_prof_copy(td_backend *b, td_view src, td_view dst, int64_t n, int64_t width)
{
    double t0 = td_now();
    td_status st = TD_PROF_CALL(copy, b, src, dst, n, width);
    td_prof_book(td_prof_active, -1, TD_PROF_OTHER, t0);
    return st;
}

static td_status td_prof_embed(td_backend *b, const td_matrix *table, const int32_t *tokens, int64_t n, td_view out)
{
    td_prof *p = td_prof_active;
    double t0 = td_now();
    td_status st = TD_PROF_CALL(embed, b, table, tokens, n, out);
    bool mtp = p->model->mtp && table == &p->model->mtp->embed;
    td_prof_book(p, mtp ? td_prof_mtp_slot(p) : td_prof_outside(p), mtp ? TD_PROF_MTP : TD_PROF_EMBED, t0);
    return st;
}

static td_status td_prof_rmsnorm(td_backend *b, const float *w, int64_t width, td_view in, td_view out, int64_t n)
{
    td_prof *p = td_prof_active;
    const td_model *m = p->model;
    double t0 = td_now();
    td_status st = TD_PROF_CALL(rmsnorm, b, w, width, in, out, n);
    int slot = -1;
    td_prof_kind k = TD_PROF_OTHER;
    if (w == m->norm) {
        slot = td_prof_outside(p), k = TD_PROF_HEAD;
    } else if (m->mtp && (w == m->mtp->enorm || w == m->mtp->hnorm || w == m->mtp->head_norm)) {
        slot = td_prof_mtp_slot(p), k = TD_PROF_MTP;
    } else {
        for (int s = 0; s < p->n_slots - 1 && slot < 0; s++) {
            if (s == td_prof_mtp_slot(p) && !m->mtp) break;
            const td_layer_weights *l = td_prof_layer(p, s);
            if (w == l->ffn_norm) slot = s, k = l->is_moe ? TD_PROF_ROUTER : TD_PROF_DENSE;
        }
    }
    td_prof_book(p, slot, k, t0);
    return st;
}

static td_status td_prof_linear(td_backend *b, const td_matrix *w, td_view in, td_view out, int64_t n)
{
    td_prof *p = td_prof_active;
    const td_model *m = p->model;
    double t0 = td_now();
    td_status st = TD_PROF_CALL(linear, b, w, in, out, n);
    if (m->mtp && (w == &m->mtp->eh_proj || w == &m->mtp->head)) td_prof_book(p, td_prof_mtp_slot(p), TD_PROF_MTP, t0);
    else if (w == &m->head) td_prof_book(p, td_prof_outside(p), TD_PROF_HEAD, t0);
    else td_prof_book(p, -1, TD_PROF_OTHER, t0);
    return st;
}

static td_status td_prof_ffn(td_backend *b, const td_ffn_weights *f, td_view in, td_view acc, int64_t n)
{
    td_prof *p = td_prof_active;
    double t0 = td_now();
    td_status st = TD_PROF_CALL(ffn, b, f, in, acc, n);
    int dense = td_prof_layer_of(p, f, offsetof(td_layer_weights, dense));
    int shared = dense < 0 ? td_prof_layer_of(p, f, offsetof(td_layer_weights, moe.shared)) : -1;
    td_prof_book(p, dense >= 0 ? dense : shared, dense >= 0 ? TD_PROF_DENSE : TD_PROF_SHARED, t0);
    return st;
}

static td_status td_prof_attention(td_backend *b, const td_attn_weights *w, td_view x, const td_attn_seq *seqs,
                                   int n_seqs)
{
    td_prof *p = td_prof_active;
    double t0 = td_now();
    td_status st = TD_PROF_CALL(attention, b, w, x, seqs, n_seqs);
    td_prof_book(p, td_prof_layer_of(p, w, offsetof(td_layer_weights, attn)), TD_PROF_ATTN, t0);
    return st;
}

static td_status td_prof_route(td_backend *b, const td_moe_weights *moe, td_view xn, td_view ids, td_view weights,
                               int64_t n)
{
    td_prof *p = td_prof_active;
    double t0 = td_now();
    td_status st = TD_PROF_CALL(route, b, moe, xn, ids, weights, n);
    td_prof_book(p, td_prof_layer_of(p, moe, offsetof(td_layer_weights, moe)), TD_PROF_ROUTER, t0);
    return st;
}

/* Distinct experts among the n x k ids of a call, read from the backend's host memory. */
static int64_t td_prof_distinct(td_prof *p, td_backend *b, td_view ids, int64_t n)
{
    int k = p->model->hp.n_experts_per_tok, E = p->model->hp.n_routed_experts;
    const float *base = b->host_memory ? b->i->buf_host(b, ids.buf) : NULL;
    if (!base || E <= 0 || E > 65536) return 0;
    uint64_t seen[1024] = {0};
    int64_t distinct = 0;
    for (int64_t t = 0; t < n; t++) {
        const int32_t *row = (const int32_t *)(base + ids.off + t * ids.stride);
        for (int j = 0; j < k; j++) {
            uint32_t e = (uint32_t)row[j];
            if (e >= (uint32_t)E || (seen[e >> 6] >> (e & 63) & 1)) continue;
            seen[e >> 6] |= 1ull << (e & 63);
            distinct++;
        }
    }
    return distinct;
}

static td_status td_prof_moe_submit(td_backend *b, const td_moe_weights *moe, td_view xn, td_view ids, td_view weights,
                                    td_view out, int64_t n)
{
    td_prof *p = td_prof_active;
    int slot = td_prof_layer_of(p, moe, offsetof(td_layer_weights, moe));
    if (slot >= 0 && p->on) {
        p->moe_calls[slot]++;
        p->moe_rows[slot] += n;
        p->moe_distinct[slot] += td_prof_distinct(p, b, ids, n);
    }
    double t0 = td_now();
    td_status st = TD_PROF_CALL(moe_submit, b, moe, xn, ids, weights, out, n);
    td_prof_book(p, slot, TD_PROF_EXPERTS, t0);
    p->moe_slot = p->cur;
    return st;
}

static td_status td_prof_moe_wait(td_backend *b)
{
    td_prof *p = td_prof_active;
    double t0 = td_now();
    td_status st = TD_PROF_CALL(moe_wait, b);
    td_prof_book(p, p->moe_slot, TD_PROF_EXPERTS, t0);
    return st;
}

static td_status td_prof_add(td_backend *b, td_view dst, td_view src, int64_t n, int64_t width)
{
    double t0 = td_now();
    td_status st = TD_PROF_CALL(add, b, dst, src, n, width);
    td_prof_book(td_prof_active, -1, TD_PROF_OTHER, t0);
    return st;
}

static td_status td_prof_to_host(td_backend *b, td_view src, int64_t n, int64_t width, void *dst)
{
    double t0 = td_now();
    td_status st = TD_PROF_CALL(to_host, b, src, n, width, dst);
    td_prof_book(td_prof_active, -1, TD_PROF_OTHER, t0);
    return st;
}

static td_status td_prof_from_host(td_backend *b, const void *src, int64_t n, int64_t width, td_view dst)
{
    double t0 = td_now();
    td_status st = TD_PROF_CALL(from_host, b, src, n, width, dst);
    td_prof_book(td_prof_active, -1, TD_PROF_OTHER, t0);
    return st;
}

/* ------------------------------------------------------------------ life */

td_status td_prof_attach(td_prof *p, td_engine *e)
{
    if (td_prof_active) return td_fail(TD_E_ARG, "bench: one profiled engine per process");
    td_backend *const *bs;
    if (td_engine_backends(e, &bs) != 1) return td_fail(TD_E_UNSUPPORTED, "bench: profiling covers the CPU backend only");
    *p = (td_prof){.model = td_engine_model(e), .b = bs[0]};
    p->n_slots = p->model->hp.n_layers + 2;
    p->t = td_calloc((size_t)p->n_slots * TD_PROF_KIND_COUNT, sizeof *p->t);
    p->moe_calls = td_calloc((size_t)p->n_slots, sizeof *p->moe_calls);
    p->moe_distinct = td_calloc((size_t)p->n_slots, sizeof *p->moe_distinct);
    p->moe_rows = td_calloc((size_t)p->n_slots, sizeof *p->moe_rows);
    if (!p->t || !p->moe_calls || !p->moe_distinct || !p->moe_rows) {
        td_prof_detach(p);
        return td_fail(TD_E_NOMEM, "out of memory");
    }
    p->cur = p->moe_slot = td_prof_outside(p);
    p->orig = p->b->i;
    p->table = *p->orig;
    p->table.copy = td_prof_copy;
    p->table.embed = td_prof_embed;
    p->table.rmsnorm = td_prof_rmsnorm;
    p->table.linear = td_prof_linear;
    p->table.ffn = td_prof_ffn;
    p->table.attention = td_prof_attention;
    p->table.route = td_prof_route;
    p->table.moe_submit = td_prof_moe_submit;
    p->table.moe_wait = td_prof_moe_wait;
    p->table.add = td_prof_add;
    p->table.to_host = td_prof_to_host;
    p->table.from_host = td_prof_from_host;
    td_prof_active = p;
    p->b->i = &p->table;
    return TD_OK;
}

void td_prof_detach(td_prof *p)
{
    if (p->orig && p->b) p->b->i = p->orig;
    if (td_prof_active == p) td_prof_active = NULL;
    td_free(p->t);
    td_free(p->moe_calls);
    td_free(p->moe_distinct);
    td_free(p->moe_rows);
    *p = (td_prof){0};
}

void td_prof_reset(td_prof *p)
{
    memset(p->t, 0, (size_t)p->n_slots * TD_PROF_KIND_COUNT * sizeof *p->t);
    memset(p->moe_calls, 0, (size_t)p->n_slots * sizeof *p->moe_calls);
    memset(p->moe_distinct, 0, (size_t)p->n_slots * sizeof *p->moe_distinct);
    memset(p->moe_rows, 0, (size_t)p->n_slots * sizeof *p->moe_rows);
}

td_status td_prof_snapshot(const td_prof *p, td_prof *out)
{
    size_t nt = (size_t)p->n_slots * TD_PROF_KIND_COUNT, ns = (size_t)p->n_slots;
    *out = (td_prof){.model = p->model, .n_slots = p->n_slots};
    out->t = td_malloc(nt * sizeof *out->t);
    out->moe_calls = td_malloc(ns * sizeof *out->moe_calls);
    out->moe_distinct = td_malloc(ns * sizeof *out->moe_distinct);
    out->moe_rows = td_malloc(ns * sizeof *out->moe_rows);
    if (!out->t || !out->moe_calls || !out->moe_distinct || !out->moe_rows) {
        td_prof_detach(out);
        return td_fail(TD_E_NOMEM, "out of memory");
    }
    memcpy(out->t, p->t, nt * sizeof *out->t);
    memcpy(out->moe_calls, p->moe_calls, ns * sizeof *out->moe_calls);
    memcpy(out->moe_distinct, p->moe_distinct, ns * sizeof *out->moe_distinct);
    memcpy(out->moe_rows, p->moe_rows, ns * sizeof *out->moe_rows);
    return TD_OK;
}

void td_prof_enable(td_prof *p, bool on) { p->on = on; }

double td_prof_slot_total(const td_prof *p, int slot)
{
    double s = 0;
    for (int k = 0; k < TD_PROF_KIND_COUNT; k++) s += td_prof_at(p, slot, (td_prof_kind)k);
    return s;
}

bool td_prof_layer_mean(const td_prof *p, bool moe, double kinds[TD_PROF_KIND_COUNT], double *total)
{
    const td_model *m = p->model;
    int n = 0;
    memset(kinds, 0, TD_PROF_KIND_COUNT * sizeof *kinds);
    *total = 0;
    for (int l = 0; l < m->hp.n_layers; l++) {
        if (m->layers[l].is_moe != moe) continue;
        n++;
        for (int k = 0; k < TD_PROF_KIND_COUNT; k++) kinds[k] += td_prof_at(p, l, (td_prof_kind)k);
    }
    if (!n) return false;
    for (int k = 0; k < TD_PROF_KIND_COUNT; k++) {
        kinds[k] /= n;
        *total += kinds[k];
    }
    return true;
}
