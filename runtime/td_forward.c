/* The forward pass: the layer loop, the MLP/MoE orchestration and the head, over the backend table only.
 *
 * Every module runs on the backend its placement chose (td_engine.c). Activations move between
 * backends only when the next module sits elsewhere (td_fwd_need). One MoE layer, with the router and
 * the shared expert on the GPU and the routed experts on the CPU:
 *     GPU  rmsnorm -> route ------------------------> shared ffn into x -> add routed into x
 *     CPU                     moe_submit (returns) ~~ experts on the pool ~~ moe_wait
 * With everything on one backend the same calls run one after another, and the sum is formed as the
 * engine always formed it: routed, plus shared, then into the residual. */
#include "td_session_impl.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ moving activations */

static td_view td_fwd_view(td_engine *e, td_act_id id, int be)
{
    return td_view_rows(e->act[id].on[be], e->act[id].width);
}

static void td_fwd_wrote(td_engine *e, td_act_id id, int be) { e->act[id].valid = 1u << be; }

/* Makes rows [0, n) of an activation valid on backend `be`, copying them from a backend that holds them. */
static td_status td_fwd_need(td_engine *e, td_act_id id, int be, int64_t n)
{
    td_act *a = &e->act[id];
    if (a->valid & (1u << be)) return TD_OK;
    TD_ASSERT(a->valid != 0);
    int src = __builtin_ctz(a->valid);
    td_backend *from = e->backends[src], *to = e->backends[be];
    td_view sv = td_fwd_view(e, id, src), dv = td_fwd_view(e, id, be);
    if (from->host_memory) {
        TD_TRY(to->i->from_host(to, from->i->buf_host(from, sv.buf), n, a->width, dv));
    } else if (to->host_memory) {
        TD_TRY(from->i->to_host(from, sv, n, a->width, to->i->buf_host(to, dv.buf)));
    } else {
        TD_TRY(from->i->to_host(from, sv, n, a->width, e->stage));
        TD_TRY(to->i->from_host(to, e->stage, n, a->width, dv));
    }
    a->valid |= 1u << be;
    return TD_OK;
}

/* ------------------------------------------------------------------ non-finite probes */

/* While the engine's probes are on (a call being run again to find a NaN or Inf), checks the rows of an
 * activation where they are. */
static td_status td_fwd_probe(td_engine *e, int64_t rows, int layer, td_site site, td_act_id id)
{
    if (!e->finite.on || e->finite.found) return TD_OK;
    td_act *a = &e->act[id];
    int be = __builtin_ctz(a->valid);
    td_backend *b = e->backends[be];
    const float *p = e->stage;
    if (b->host_memory) p = b->i->buf_host(b, a->on[be]);
    else TD_TRY(b->i->to_host(b, td_fwd_view(e, id, be), rows, a->width, e->stage));
    td_probe_rows(&e->finite, layer, site, p, rows, a->width);
    return TD_OK;
}

/* After the routed experts' sum tripped a probe: which expert of the failing row gives a non-finite
 * output, each run alone on that row through the experts' backend. */
static td_status td_fwd_find_expert(td_engine *e, const td_moe_weights *moe, int be)
{
    const td_hparams *hp = &e->model->hp;
    int64_t H = hp->hidden_size, t = e->finite.row;
    int k = hp->n_experts_per_tok;
    td_backend *b = e->backends[be];
    int32_t ids[64], one[64];
    float w[64], *x = e->stage, *y = e->stage + H;
    TD_ASSERT(k <= 64);
    TD_TRY(b->i->to_host(b, td_view_from(td_fwd_view(e, TD_ACT_IDS, be), t), 1, k, ids));
    TD_TRY(b->i->to_host(b, td_view_from(td_fwd_view(e, TD_ACT_XN, be), t), 1, H, x));
    TD_TRY(b->i->from_host(b, x, 1, H, td_fwd_view(e, TD_ACT_XN, be)));
    for (int j = 0; j < k; j++) {
        for (int q = 0; q < k; q++) {
            one[q] = ids[j];
            w[q] = 1.0f / (float)k;
        }
        TD_TRY(b->i->from_host(b, one, 1, k, td_fwd_view(e, TD_ACT_IDS, be)));
        TD_TRY(b->i->from_host(b, w, 1, k, td_fwd_view(e, TD_ACT_W, be)));
        TD_TRY(b->i->moe_submit(b, moe, td_fwd_view(e, TD_ACT_XN, be), td_fwd_view(e, TD_ACT_IDS, be),
                                td_fwd_view(e, TD_ACT_W, be), td_fwd_view(e, TD_ACT_ACC, be), 1));
        TD_TRY(b->i->moe_wait(b));
        TD_TRY(b->i->to_host(b, td_fwd_view(e, TD_ACT_ACC, be), 1, H, y));
        if (!td_floats_finite(y, H)) {
            e->finite.expert = ids[j];
            return TD_OK;
        }
    }
    return TD_OK;
}

/* ------------------------------------------------------------------ one decoder layer */

typedef struct td_fwd_call {
    const td_forward_item *items;
    int n_items;
    int64_t rows;
    int64_t row0[TD_FWD_MAX_SEQS];
    int64_t pos0[TD_FWD_MAX_SEQS]; /* each item's first position (main or MTP cache) */
    bool mtp;                      /* the MTP block's layer and caches */
    const float *mtp_hidden;       /* [rows][H] the MTP block's input hidden rows (host) */
} td_fwd_call;

static td_kv *td_fwd_kv(const td_fwd_call *c, int i, int layer)
{
    td_session *s = c->items[i].s;
    return c->mtp ? s->mtp_kv : s->kv[layer];
}

static int td_cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Distinct experts among n tokens' k choices (a pairwise scan: n*k is small for the batches counted). */
static void td_count_experts(td_expert_counts *c, const int32_t *ids, int64_t n, int k)
{
    int64_t distinct = 0;
    for (int64_t i = 0; i < n * k; i++) {
        int64_t j = 0;
        while (j < i && ids[j] != ids[i]) j++;
        distinct += j == i;
    }
    c->calls[n]++;
    c->distinct[n] += distinct;
}

/* Expert counters and traces need the chosen ids on the host. */
static td_status td_fwd_observe_routing(td_engine *e, const td_fwd_call *c, int layer_index, int be)
{
    int k = e->model->hp.n_experts_per_tok;
    bool engine_count = e->expert_counts && !c->mtp && c->rows <= TD_EXPERT_COUNT_MAX_BATCH;
    bool want = engine_count;
    for (int i = 0; i < c->n_items; i++) {
        td_session *s = c->items[i].s;
        want |= (s->expert_counts && c->items[i].n <= TD_EXPERT_COUNT_MAX_BATCH) ||
                (!c->mtp && s->trace && s->trace->topk && s->trace->topk[layer_index]);
    }
    if (!want) return TD_OK;
    td_backend *b = e->backends[be];
    TD_TRY(b->i->to_host(b, td_fwd_view(e, TD_ACT_IDS, be), c->rows, k, e->ids_host));
    if (engine_count) td_count_experts(&e->expert_counts[layer_index], e->ids_host, c->rows, k);
    for (int i = 0; i < c->n_items; i++) {
        td_session *s = c->items[i].s;
        int64_t n = c->items[i].n;
        const int32_t *ids = e->ids_host + c->row0[i] * k;
        if (s->expert_counts && n <= TD_EXPERT_COUNT_MAX_BATCH) td_count_experts(&s->expert_counts[layer_index], ids, n, k);
        int32_t *topk = !c->mtp && s->trace && s->trace->topk ? s->trace->topk[layer_index] : NULL;
        if (topk) {
            memcpy(topk, ids, (size_t)(n * k) * sizeof(int32_t));
            for (int64_t t = 0; t < n; t++) qsort(topk + t * k, (size_t)k, sizeof(int32_t), td_cmp_i32);
        }
    }
    return TD_OK;
}

static td_status td_fwd_probe_experts(td_engine *e, int64_t n, int layer, const td_moe_weights *moe, int be)
{
    TD_TRY(td_fwd_probe(e, n, layer, TD_SITE_EXPERTS, TD_ACT_ACC));
    if (e->finite.found && e->finite.site == TD_SITE_EXPERTS && e->finite.layer == layer && e->finite.expert < 0)
        TD_TRY(td_fwd_find_expert(e, moe, be));
    return TD_OK;
}

static td_status td_fwd_moe(td_engine *e, const td_fwd_call *c, const td_layer_weights *l, const td_layer_backends *lb)
{
    int64_t n = c->rows;
    td_backend *br = e->backends[lb->router], *bx = e->backends[lb->experts];
    TD_TRY(td_fwd_need(e, TD_ACT_X, lb->router, n));
    TD_TRY(br->i->rmsnorm(br, l->ffn_norm, e->model->hp.hidden_size, td_fwd_view(e, TD_ACT_X, lb->router),
                          td_fwd_view(e, TD_ACT_XN, lb->router), n));
    td_fwd_wrote(e, TD_ACT_XN, lb->router);
    TD_TRY(br->i->route(br, &l->moe, td_fwd_view(e, TD_ACT_XN, lb->router), td_fwd_view(e, TD_ACT_IDS, lb->router),
                        td_fwd_view(e, TD_ACT_W, lb->router), n));
    td_fwd_wrote(e, TD_ACT_IDS, lb->router);
    td_fwd_wrote(e, TD_ACT_W, lb->router);
    int layer = c->mtp ? e->model->hp.n_layers : l->index;
    TD_TRY(td_fwd_probe(e, n, layer, TD_SITE_ROUTER, TD_ACT_W));
    TD_TRY(td_fwd_observe_routing(e, c, layer, lb->router));

    TD_TRY(td_fwd_need(e, TD_ACT_XN, lb->experts, n));
    TD_TRY(td_fwd_need(e, TD_ACT_IDS, lb->experts, n));
    TD_TRY(td_fwd_need(e, TD_ACT_W, lb->experts, n));
    TD_TRY(bx->i->moe_submit(bx, &l->moe, td_fwd_view(e, TD_ACT_XN, lb->experts), td_fwd_view(e, TD_ACT_IDS, lb->experts),
                             td_fwd_view(e, TD_ACT_W, lb->experts), td_fwd_view(e, TD_ACT_ACC, lb->experts), n));
    td_fwd_wrote(e, TD_ACT_ACC, lb->experts);

    if (l->moe.has_shared && lb->shared != lb->experts) {
        /* the overlap: the shared expert goes straight into the residual while the experts run */
        td_backend *bs = e->backends[lb->shared];
        TD_TRY(td_fwd_need(e, TD_ACT_XN, lb->shared, n));
        TD_TRY(td_fwd_need(e, TD_ACT_X, lb->shared, n));
        TD_TRY(bs->i->ffn(bs, &l->moe.shared, td_fwd_view(e, TD_ACT_XN, lb->shared), td_fwd_view(e, TD_ACT_X, lb->shared), n));
        td_fwd_wrote(e, TD_ACT_X, lb->shared);
        TD_TRY(bx->i->moe_wait(bx));
        TD_TRY(td_fwd_probe(e, n, layer, TD_SITE_SHARED, TD_ACT_X));
        TD_TRY(td_fwd_probe_experts(e, n, layer, &l->moe, lb->experts));
        TD_TRY(td_fwd_need(e, TD_ACT_ACC, lb->shared, n));
        TD_TRY(bs->i->add(bs, td_fwd_view(e, TD_ACT_X, lb->shared), td_fwd_view(e, TD_ACT_ACC, lb->shared), n,
                          e->model->hp.hidden_size));
        return TD_OK;
    }
    TD_TRY(bx->i->moe_wait(bx));
    TD_TRY(td_fwd_probe_experts(e, n, layer, &l->moe, lb->experts));
    if (l->moe.has_shared) {
        TD_TRY(bx->i->ffn(bx, &l->moe.shared, td_fwd_view(e, TD_ACT_XN, lb->experts), td_fwd_view(e, TD_ACT_ACC, lb->experts), n));
        TD_TRY(td_fwd_probe(e, n, layer, TD_SITE_SHARED, TD_ACT_ACC));
    }
    /* the sum joins the residual where the residual is */
    int at = lb->router;
    TD_TRY(td_fwd_need(e, TD_ACT_ACC, at, n));
    td_backend *ba = e->backends[at];
    TD_TRY(ba->i->add(ba, td_fwd_view(e, TD_ACT_X, at), td_fwd_view(e, TD_ACT_ACC, at), n, e->model->hp.hidden_size));
    td_fwd_wrote(e, TD_ACT_X, at);
    return TD_OK;
}

static td_status td_fwd_layer(td_engine *e, const td_fwd_call *c, const td_layer_weights *l, const td_layer_backends *lb)
{
    int64_t n = c->rows, H = e->model->hp.hidden_size;
    td_attn_seq seqs[TD_FWD_MAX_SEQS];
    for (int i = 0; i < c->n_items; i++)
        seqs[i] = (td_attn_seq){.row0 = c->row0[i], .n = c->items[i].n, .pos0 = c->pos0[i],
                                .kv = td_fwd_kv(c, i, l->index), .path = (int)c->items[i].s->p.attn};
    td_backend *ba = e->backends[lb->attn];
    TD_TRY(td_fwd_need(e, TD_ACT_X, lb->attn, n));
    TD_TRY(ba->i->attention(ba, &l->attn, td_fwd_view(e, TD_ACT_X, lb->attn), seqs, c->n_items));
    td_fwd_wrote(e, TD_ACT_X, lb->attn);
    int layer = c->mtp ? e->model->hp.n_layers : l->index;
    TD_TRY(td_fwd_probe(e, n, layer, TD_SITE_ATTN, TD_ACT_X));
    if (l->is_moe) return td_fwd_moe(e, c, l, lb);
    td_backend *bd = e->backends[lb->mlp];
    TD_TRY(td_fwd_need(e, TD_ACT_X, lb->mlp, n));
    TD_TRY(bd->i->rmsnorm(bd, l->ffn_norm, H, td_fwd_view(e, TD_ACT_X, lb->mlp), td_fwd_view(e, TD_ACT_XN, lb->mlp), n));
    TD_TRY(bd->i->ffn(bd, &l->dense, td_fwd_view(e, TD_ACT_XN, lb->mlp), td_fwd_view(e, TD_ACT_X, lb->mlp), n));
    td_fwd_wrote(e, TD_ACT_X, lb->mlp);
    td_fwd_wrote(e, TD_ACT_XN, lb->mlp);
    return td_fwd_probe(e, n, layer, TD_SITE_DENSE, TD_ACT_X);
}

/* ------------------------------------------------------------------ final norm and head */

typedef struct td_head_out {
    float *logits_all;  /* [n][V] or NULL */
    float *hidden_all;  /* [n][H] or NULL */
    float *last_logits; /* [V] */
    float *last_hidden; /* [H] or NULL */
} td_head_out;

static td_status td_fwd_head(td_engine *e, const td_fwd_call *c, const float *norm, int bn, const td_matrix *head,
                             int bh, const td_head_out *out)
{
    const td_hparams *hp = &e->model->hp;
    int64_t H = hp->hidden_size, V = hp->vocab_size, n = c->rows;
    td_backend *nb = e->backends[bn], *hb = e->backends[bh];
    TD_TRY(td_fwd_need(e, TD_ACT_X, bn, n));
    TD_TRY(nb->i->rmsnorm(nb, norm, H, td_fwd_view(e, TD_ACT_X, bn), td_fwd_view(e, TD_ACT_XN, bn), n));
    td_fwd_wrote(e, TD_ACT_XN, bn);
    for (int i = 0; i < c->n_items; i++) {
        td_view rows = td_view_from(td_fwd_view(e, TD_ACT_XN, bn), c->row0[i]);
        int64_t m = c->items[i].n;
        if (out[i].hidden_all) TD_TRY(nb->i->to_host(nb, rows, m, H, out[i].hidden_all));
        if (out[i].last_hidden) TD_TRY(nb->i->to_host(nb, td_view_from(rows, m - 1), 1, H, out[i].last_hidden));
    }
    TD_TRY(td_fwd_need(e, TD_ACT_XN, bh, n));
    td_view xn = td_fwd_view(e, TD_ACT_XN, bh), lg = td_fwd_view(e, TD_ACT_LOGITS, bh);
    /* every row of the items that want them all; the last row of the others, gathered into one product */
    int gathered = 0;
    for (int i = 0; i < c->n_items; i++) {
        int64_t m = c->items[i].n;
        if (out[i].logits_all && hb->host_memory) {
            td_buf *wrap;
            TD_TRY(hb->i->buf_wrap(hb, out[i].logits_all, (size_t)(m * V) * sizeof(float), &wrap));
            td_status st = hb->i->linear(hb, head, td_view_from(xn, c->row0[i]), td_view_rows(wrap, V), m);
            hb->i->buf_free(hb, wrap);
            TD_TRY(st);
            memcpy(out[i].last_logits, out[i].logits_all + (m - 1) * V, (size_t)V * sizeof(float));
        } else if (out[i].logits_all) {
            for (int64_t r0 = 0; r0 < m; r0 += TD_FWD_MAX_SEQS) {
                int64_t k = m - r0 < TD_FWD_MAX_SEQS ? m - r0 : TD_FWD_MAX_SEQS;
                TD_TRY(hb->i->linear(hb, head, td_view_from(xn, c->row0[i] + r0), lg, k));
                TD_TRY(hb->i->to_host(hb, lg, k, V, out[i].logits_all + r0 * V));
            }
            memcpy(out[i].last_logits, out[i].logits_all + (m - 1) * V, (size_t)V * sizeof(float));
        } else {
            TD_TRY(hb->i->copy(hb, td_view_from(xn, c->row0[i] + m - 1), td_view_from(td_fwd_view(e, TD_ACT_TMP, bh), gathered),
                               1, H));
            gathered++;
        }
    }
    if (!gathered) return TD_OK;
    td_fwd_wrote(e, TD_ACT_TMP, bh);
    TD_TRY(hb->i->linear(hb, head, td_fwd_view(e, TD_ACT_TMP, bh), lg, gathered));
    for (int i = 0, g = 0; i < c->n_items; i++)
        if (!out[i].logits_all) TD_TRY(hb->i->to_host(hb, td_view_from(lg, g++), 1, V, out[i].last_logits));
    return TD_OK;
}

/* ------------------------------------------------------------------ the main model and the MTP block */

static td_status td_fwd_trace_hidden(td_engine *e, const td_fwd_call *c, int k)
{
    td_trace *tr = c->items[0].s->trace;
    if (c->mtp || e->finite.on || !tr || !tr->hidden || !tr->hidden[k]) return TD_OK;
    int be = __builtin_ctz(e->act[TD_ACT_X].valid);
    td_backend *b = e->backends[be];
    return b->i->to_host(b, td_fwd_view(e, TD_ACT_X, be), c->rows, e->model->hp.hidden_size, tr->hidden[k]);
}

/* The head's outputs, probed: the final norm's rows and the logits computed. */
static td_status td_fwd_probe_head(td_engine *e, const td_fwd_call *c, int layer, const td_head_out *out)
{
    const td_hparams *hp = &e->model->hp;
    if (!e->finite.on) return TD_OK;
    TD_TRY(td_fwd_probe(e, c->rows, layer, TD_SITE_FINAL_NORM, TD_ACT_XN));
    for (int i = 0; i < c->n_items && !e->finite.found; i++) {
        int64_t m = c->items[i].n;
        bool all = out[i].logits_all != NULL;
        td_probe_rows(&e->finite, layer, TD_SITE_HEAD, all ? out[i].logits_all : out[i].last_logits, all ? m : 1,
                      hp->vocab_size);
        if (e->finite.found) e->finite.row += c->row0[i] + (all ? 0 : m - 1);
    }
    return TD_OK;
}

/* Embedding, decoder layers and head of the main model; positions do not advance. */
static td_status td_fwd_main_compute(td_engine *e, const td_fwd_call *c, const td_head_out *out)
{
    const td_model *m = e->model;
    td_backend *be = e->backends[e->embed];
    TD_TRY(be->i->embed(be, &m->embed, e->tokens, c->rows, td_fwd_view(e, TD_ACT_X, e->embed)));
    td_fwd_wrote(e, TD_ACT_X, e->embed);
    TD_TRY(td_fwd_probe(e, c->rows, -1, TD_SITE_EMBED, TD_ACT_X));
    TD_TRY(td_fwd_trace_hidden(e, c, 0));
    for (int l = 0; l < m->hp.n_layers; l++) {
        TD_TRY(td_fwd_layer(e, c, &m->layers[l], &e->layer[l]));
        TD_TRY(td_fwd_trace_hidden(e, c, l + 1));
    }
    TD_TRY(td_fwd_head(e, c, m->norm, e->norm, &m->head, e->head, out));
    return td_fwd_probe_head(e, c, -1, out);
}

/* The MTP block: x = eh_proj([enorm(emb(t+1)); hnorm(h_t)]), the embedding first, then its decoder layer
 * and head; mtp_pos does not advance. */
static td_status td_fwd_mtp_compute(td_engine *e, const td_fwd_call *c, const td_head_out *out)
{
    const td_model *m = e->model;
    const td_mtp_weights *w = m->mtp;
    int64_t H = m->hp.hidden_size, n = c->rows;
    int mb = e->mtp, L = m->hp.n_layers;
    td_backend *b = e->backends[mb];
    td_view emb2 = td_fwd_view(e, TD_ACT_EMB2, mb);
    TD_TRY(b->i->embed(b, &w->embed, c->items[0].tokens, n, td_fwd_view(e, TD_ACT_TMP, mb)));
    td_fwd_wrote(e, TD_ACT_TMP, mb);
    TD_TRY(td_fwd_probe(e, n, L, TD_SITE_EMBED, TD_ACT_TMP));
    TD_TRY(b->i->from_host(b, c->mtp_hidden, n, H, td_fwd_view(e, TD_ACT_XN, mb)));
    TD_TRY(b->i->rmsnorm(b, w->enorm, H, td_fwd_view(e, TD_ACT_TMP, mb), emb2, n));
    TD_TRY(b->i->rmsnorm(b, w->hnorm, H, td_fwd_view(e, TD_ACT_XN, mb), (td_view){emb2.buf, H, emb2.stride}, n));
    TD_TRY(b->i->linear(b, &w->eh_proj, emb2, td_fwd_view(e, TD_ACT_X, mb), n));
    td_fwd_wrote(e, TD_ACT_X, mb);
    td_fwd_wrote(e, TD_ACT_XN, mb);
    TD_TRY(td_fwd_probe(e, n, L, TD_SITE_MTP_PROJ, TD_ACT_X));
    TD_TRY(td_fwd_layer(e, c, &w->layer, &e->layer[L]));
    TD_TRY(td_fwd_head(e, c, w->head_norm, mb, &w->head, mb, out));
    return td_fwd_probe_head(e, c, L, out);
}

typedef td_status (*td_fwd_compute_fn)(td_engine *e, const td_fwd_call *c, const td_head_out *out);

/* Runs a call and checks what it hands on: every row of the outputs given, else the last row's logits
 * and hidden (what decoding reads). On a NaN or Inf the call runs again with the probes on, to name the
 * module where it first appears; positions have not advanced, so the sessions stay usable. */
static td_status td_fwd_run_checked(td_engine *e, const td_fwd_call *c, td_fwd_compute_fn compute,
                                    const td_head_out *out, const char *what)
{
    const td_hparams *hp = &e->model->hp;
    TD_TRY(compute(e, c, out));
    bool bad = false;
    for (int i = 0; i < c->n_items && !bad; i++) {
        int64_t m = c->items[i].n;
        const float *lg = out[i].logits_all ? out[i].logits_all : out[i].last_logits;
        const float *hd = out[i].hidden_all ? out[i].hidden_all : out[i].last_hidden;
        bad = !td_floats_finite(lg, (out[i].logits_all ? m : 1) * hp->vocab_size) ||
              (hd && !td_floats_finite(hd, (out[i].hidden_all ? m : 1) * hp->hidden_size));
    }
    if (!bad) return TD_OK;
    e->finite = (td_finite_probe){.on = true};
    td_status st = compute(e, c, out);
    if (st != TD_OK) {
        e->finite = (td_finite_probe){0};
        return st;
    }
    int i = 0; /* the item holding the failing row, for its position */
    while (e->finite.found && i + 1 < c->n_items && e->finite.row >= c->row0[i + 1]) i++;
    return td_finite_error(e, c->pos0[i] - c->row0[i], what);
}

td_status td_forward_main(td_engine *e, const td_forward_item *items, int n_items)
{
    const td_model *m = e->model;
    td_fwd_call c = {.items = items, .n_items = n_items};
    TD_ASSERT(n_items >= 1 && n_items <= TD_FWD_MAX_SEQS);
    td_head_out out[TD_FWD_MAX_SEQS] = {{0}};
    for (int i = 0; i < n_items; i++) {
        td_session *s = items[i].s;
        c.row0[i] = c.rows;
        c.pos0[i] = s->pos;
        memcpy(e->tokens + c.rows, items[i].tokens, (size_t)items[i].n * sizeof(int32_t));
        memcpy(s->tokens + s->pos, items[i].tokens, (size_t)items[i].n * sizeof(int32_t));
        c.rows += items[i].n;
        float *hidden_all = items[i].hidden_all;
        if (m->mtp && !hidden_all) hidden_all = s->mtp.chunk_hidden; /* the MTP rows need every position's hidden */
        out[i] = (td_head_out){.logits_all = items[i].logits_all, .hidden_all = hidden_all, .last_logits = s->logits,
                               .last_hidden = s->hidden};
    }
    TD_ASSERT(c.rows <= e->p.max_batch);
    TD_TRY(td_fwd_run_checked(e, &c, td_fwd_main_compute, out, "the model's output"));
    for (int i = 0; i < n_items; i++) {
        td_session *s = items[i].s;
        int64_t p0 = s->pos;
        s->pos += items[i].n;
        if (m->mtp) TD_TRY(td_mtp_after_chunk(s, items[i].tokens, p0, items[i].n, out[i].hidden_all));
    }
    return TD_OK;
}

td_status td_forward_mtp(td_session *s, const float *hidden, const int32_t *next_tokens, int64_t n,
                         float *logits_all, float *mtp_hidden)
{
    td_forward_item item = {.s = s, .tokens = next_tokens, .n = n};
    td_fwd_call c = {.items = &item, .n_items = 1, .rows = n, .pos0 = {s->mtp_pos}, .mtp = true, .mtp_hidden = hidden};
    td_head_out out = {.logits_all = logits_all, .hidden_all = mtp_hidden, .last_logits = s->mtp_logits};
    TD_TRY(td_fwd_run_checked(s->e, &c, td_fwd_mtp_compute, &out, "the MTP block's output"));
    s->mtp_pos += n;
    return TD_OK;
}
