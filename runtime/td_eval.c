#include "td_eval.h"

#include "td_alloc.h"
#include "td_ops.h"
#include "td_safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double td_max_rel_err(const float *ours, const float *ref, int64_t n)
{
    double max_diff = 0.0, max_ref = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)ours[i] - (double)ref[i]);
        if (!(d <= max_diff)) max_diff = d; /* NaN propagates as a failure */
        if (fabs((double)ref[i]) > max_ref) max_ref = fabs((double)ref[i]);
    }
    return max_ref > 0 ? max_diff / max_ref : max_diff;
}

double td_kl_logits(const float *ref, const float *ours, int64_t n)
{
    double mr = -INFINITY, mo = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        mr = ref[i] > mr ? ref[i] : mr;
        mo = ours[i] > mo ? ours[i] : mo;
    }
    double zr = 0, zo = 0;
    for (int64_t i = 0; i < n; i++) {
        zr += exp(ref[i] - mr);
        zo += exp(ours[i] - mo);
    }
    double lzr = log(zr) + mr, lzo = log(zo) + mo, kl = 0;
    for (int64_t i = 0; i < n; i++) {
        double lr = ref[i] - lzr, lo = ours[i] - lzo;
        kl += exp(lr) * (lr - lo);
    }
    return kl < 0 ? 0 : kl;
}

/* A reference tensor of the expected type and shape, or an error naming it. */
static td_status td_ref_tensor(const td_tensor_dir *dir, const char *path, const char *name, td_type type, int64_t d0,
                               int64_t d1, const td_tensor **out)
{
    const td_tensor *t = td_tensor_dir_find(dir, name);
    *out = t;
    if (!t) return td_fail(TD_E_NOT_FOUND, "%s: reference has no '%s'", path, name);
    bool ok = t->type == type && t->ndim == (d1 ? 2 : 1) && (d0 < 0 || t->shape[0] == d0) &&
              (!d1 || t->shape[1] == d1);
    if (!ok) {
        char sh[64];
        return td_fail(TD_E_FORMAT, "%s: reference '%s' is %s %s; expected %s with %lld columns", path, name,
                       td_type_name(t->type), td_tensor_shape_str(t, sh, sizeof sh), td_type_name(type),
                       (long long)d1);
    }
    return TD_OK;
}

/* Copies a reference tensor's floats out (mapped data may be unaligned). */
static float *td_ref_floats(const td_tensor *t)
{
    float *f = td_malloc(t->nbytes ? (size_t)t->nbytes : 4);
    if (f) memcpy(f, t->data, (size_t)t->nbytes);
    return f;
}

typedef struct td_row_stats {
    double max_diff, max_ref, kld_sum, kld_max;
    int64_t rows, top1;
} td_row_stats;

/* Returns the row's KL divergence. */
static double td_row_compare(td_row_stats *st, const float *ours, const float *ref, int64_t V)
{
    for (int64_t i = 0; i < V; i++) {
        double d = fabs((double)ours[i] - ref[i]);
        if (!(d <= st->max_diff)) st->max_diff = d;
        if (fabs((double)ref[i]) > st->max_ref) st->max_ref = fabs((double)ref[i]);
    }
    double kl = td_kl_logits(ref, ours, V);
    if (!(kl <= st->kld_max)) st->kld_max = kl;
    st->kld_sum += kl;
    st->top1 += td_argmax_f32(ours, V) == td_argmax_f32(ref, V);
    st->rows++;
    return kl;
}

static double td_stats_rel(const td_row_stats *st)
{
    return st->max_ref > 0 ? st->max_diff / st->max_ref : st->max_diff;
}

/* ---- positions as the bf16 tier counts them, and their routing ---- */

typedef struct td_part_acc {
    int64_t positions, top1, kld_n, clean_n, flipped;
    double kld_sum, clean_sum;
} td_part_acc;

/* One position: `kl` < 0 when the reference has no logits there; flipped < 0 when routing is unknown. */
static void td_part_add(td_part_acc *a, bool top1, double kl, int flipped)
{
    a->positions++;
    a->top1 += top1;
    a->flipped += flipped > 0;
    if (kl < 0) return;
    a->kld_n++;
    a->kld_sum += kl;
    if (flipped == 0) {
        a->clean_n++;
        a->clean_sum += kl;
    }
}

static td_eval_part td_part_result(const td_part_acc *a, bool routing)
{
    return (td_eval_part){
        .positions = a->positions,
        .top1 = a->top1,
        .kld_positions = a->kld_n,
        .kld_mean = a->kld_n ? a->kld_sum / (double)a->kld_n : -1,
        .flipped = routing ? a->flipped : -1,
        .clean_kld_positions = routing ? a->clean_n : 0,
        .kld_mean_clean = routing && a->clean_n ? a->clean_sum / (double)a->clean_n : -1,
    };
}

static td_part_acc td_part_sum(const td_part_acc *a, const td_part_acc *b)
{
    return (td_part_acc){a->positions + b->positions, a->top1 + b->top1, a->kld_n + b->kld_n, a->clean_n + b->clean_n,
                         a->flipped + b->flipped, a->kld_sum + b->kld_sum, a->clean_sum + b->clean_sum};
}

double td_eval_part_top1(const td_eval_part *p) { return p->positions ? (double)p->top1 / (double)p->positions : 0; }

/* The experts one run chose: per MoE layer, [positions][k] ids sorted ascending (td_trace's layout), and
 * the trace that points each layer at the rows of the next forward call. */
typedef struct td_routes {
    int n_layers, k;
    int32_t **ids; /* [n_layers]; NULL for dense layers */
    int32_t **at;  /* [n_layers]: where the next call's rows go */
    td_trace trace;
} td_routes;

static void td_routes_free(td_routes *r)
{
    for (int l = 0; r->ids && l < r->n_layers; l++) td_free(r->ids[l]);
    td_free(r->ids);
    td_free(r->at);
    memset(r, 0, sizeof *r);
}

static td_status td_routes_alloc(td_routes *r, const td_model *m, int64_t positions)
{
    memset(r, 0, sizeof *r);
    r->n_layers = m->hp.n_layers;
    r->k = m->hp.n_experts_per_tok;
    r->ids = td_calloc((size_t)r->n_layers, sizeof *r->ids);
    r->at = td_calloc((size_t)r->n_layers, sizeof *r->at);
    bool ok = r->ids && r->at;
    for (int l = 0; ok && l < r->n_layers; l++)
        if (m->layers[l].is_moe) ok = (r->ids[l] = td_calloc((size_t)(positions * r->k), sizeof(int32_t))) != NULL;
    r->trace.topk = r->at;
    if (ok) return TD_OK;
    td_routes_free(r);
    return td_fail(TD_E_NOMEM, "out of memory for the routing of %lld positions", (long long)positions);
}

static bool td_routes_differ(const td_routes *a, const td_routes *b, int64_t pos)
{
    for (int l = 0; l < a->n_layers; l++)
        if (a->ids[l] && memcmp(a->ids[l] + pos * a->k, b->ids[l] + pos * a->k, (size_t)a->k * sizeof(int32_t)) != 0)
            return true;
    return false;
}

/* n tokens at positions pos0.. of the session. With routes: in calls of at most max_batch tokens (a trace
 * follows one call), each traced into its positions' rows; these are the calls td_session_forward makes. */
static td_status td_eval_forward(td_session *s, const int32_t *tok, int64_t n, float *logits, float *hidden,
                                 td_routes *r, int64_t pos0)
{
    if (!r) return td_session_forward(s, tok, n, logits, hidden);
    const td_hparams *hp = &td_session_model(s)->hp;
    int64_t B = td_engine_max_batch(td_session_engine(s));
    td_status st = TD_OK;
    for (int64_t i = 0; st == TD_OK && i < n; i += B) {
        int64_t c = n - i < B ? n - i : B;
        for (int l = 0; l < r->n_layers; l++) r->at[l] = r->ids[l] ? r->ids[l] + (pos0 + i) * r->k : NULL;
        td_session_set_trace(s, &r->trace);
        st = td_session_forward(s, tok + i, c, logits ? logits + i * hp->vocab_size : NULL,
                                hidden ? hidden + i * hp->hidden_size : NULL);
        td_session_set_trace(s, NULL);
    }
    return st;
}

/* The exact path beside the session under test: reference kernels and an f32 KV cache on the same model. */
typedef struct td_exact_path {
    td_engine *e;
    td_session *s;
    td_routes routes;
} td_exact_path;

static void td_exact_close(td_exact_path *x)
{
    td_routes_free(&x->routes);
    td_session_free(x->s);
    td_engine_close(x->e);
    memset(x, 0, sizeof *x);
}

static td_status td_exact_open(td_model *m, int threads, int64_t n_ctx, int64_t positions, td_exact_path *x)
{
    memset(x, 0, sizeof *x);
    td_engine_params ep = {.kernels = TD_KERNELS_REF, .n_threads = threads};
    td_session_params sp = {.n_ctx = n_ctx, .kv_type = TD_KV_F32};
    td_status st = td_engine_open(m, &ep, &x->e);
    if (st == TD_OK) st = td_session_create(x->e, &sp, &x->s);
    if (st == TD_OK) st = td_routes_alloc(&x->routes, m, positions);
    if (st != TD_OK) td_exact_close(x);
    return st;
}

/* Prompt positions where the exact path's experts differ from the reference file's topk.L (float64's);
 * -1 when the file lacks one of them. */
static td_status td_exact_vs_file(const td_tensor_dir *dir, const char *path, const td_routes *r, int64_t T,
                                  int64_t *out)
{
    *out = -1;
    bool *bad = td_calloc((size_t)T, sizeof *bad);
    if (!bad) return td_fail(TD_E_NOMEM, "out of memory");
    td_status st = TD_OK;
    for (int l = 0; l < r->n_layers; l++) {
        if (!r->ids[l]) continue;
        char name[32];
        snprintf(name, sizeof name, "topk.%d", l);
        const td_tensor *t;
        if (!td_tensor_dir_find(dir, name)) goto free_bad;
        if ((st = td_ref_tensor(dir, path, name, TD_TYPE_I32, T, r->k, &t)) != TD_OK) goto free_bad;
        for (int64_t i = 0; i < T; i++)
            bad[i] |= memcmp((const char *)t->data + (size_t)(i * r->k) * sizeof(int32_t), r->ids[l] + i * r->k,
                             (size_t)r->k * sizeof(int32_t)) != 0;
    }
    *out = 0;
    for (int64_t i = 0; i < T; i++) *out += bad[i];
free_bad:
    td_free(bad);
    return st;
}

td_status td_eval_run(td_session *s, const char *ref_path, const td_eval_params *p, td_eval_result *out)
{
    memset(out, 0, sizeof *out);
    out->decode_max_rel_err = out->mtp_max_rel_err = out->min_greedy_margin = -1;
    out->exact_route_mismatch = -1;
    td_model *m = td_session_model(s);
    int64_t V = m->hp.vocab_size, H = m->hp.hidden_size;
    if (td_session_pos(s) != 0) return td_fail(TD_E_ARG, "evaluation needs a fresh session");
    bool routing = p && p->routing;

    td_tensor_dir *dir;
    TD_TRY(td_tensor_dir_create(&dir));
    td_status st = td_st_load(ref_path, dir, NULL);
    float *ref_logits = NULL, *ours = NULL, *hidden = NULL, *row = NULL, *mtp = NULL, *glog = NULL;
    int32_t *ids = NULL, *greedy = NULL;
    const td_tensor *t_ids, *t_logits, *t_greedy, *t_glog = NULL, *t_mtp = NULL;
    td_routes routes = {0};
    td_exact_path exact = {0};
    if (st != TD_OK) goto done;
    if ((st = td_ref_tensor(dir, ref_path, "input_ids", TD_TYPE_I32, -1, 0, &t_ids)) != TD_OK) goto done;
    int64_t T = t_ids->shape[0];
    if ((st = td_ref_tensor(dir, ref_path, "logits", TD_TYPE_F32, T, V, &t_logits)) != TD_OK) goto done;
    if ((st = td_ref_tensor(dir, ref_path, "greedy_ids", TD_TYPE_I32, -1, 0, &t_greedy)) != TD_OK) goto done;
    int64_t G = t_greedy->shape[0];
    if (td_tensor_dir_find(dir, "greedy_logits") &&
        (st = td_ref_tensor(dir, ref_path, "greedy_logits", TD_TYPE_F32, G, V, &t_glog)) != TD_OK)
        goto done;
    if (td_tensor_dir_find(dir, "mtp_logits") &&
        (st = td_ref_tensor(dir, ref_path, "mtp_logits", TD_TYPE_F32, T - 1, V, &t_mtp)) != TD_OK)
        goto done;
    if (T < 2 || T + G > td_session_ctx(s)) {
        st = td_fail(TD_E_ARG, "%s: %lld prompt + %lld greedy tokens do not fit the session's %lld positions",
                     ref_path, (long long)T, (long long)G, (long long)td_session_ctx(s));
        goto done;
    }
    const char *margin = td_tensor_dir_meta(dir, "min_greedy_margin");
    if (margin) out->min_greedy_margin = atof(margin);
    out->prompt_tokens = T;
    out->greedy_steps = G;
    out->has_mtp_ref = t_mtp != NULL;
    out->has_mtp_model = m->mtp != NULL;
    out->routing_compared = routing;
    /* positions: the prompt's, then one per greedy step after the first */
    int64_t P = T + (G > 0 ? G - 1 : 0);

    ids = td_malloc((size_t)T * sizeof *ids);
    greedy = td_malloc((size_t)(G ? G : 1) * sizeof *greedy);
    ours = td_malloc((size_t)(T * V) * sizeof *ours);
    hidden = td_malloc((size_t)(T * H) * sizeof *hidden);
    ref_logits = td_ref_floats(t_logits);
    row = td_malloc((size_t)V * sizeof *row);
    glog = t_glog ? td_ref_floats(t_glog) : NULL;
    if (!ids || !greedy || !ours || !hidden || !ref_logits || !row || (t_glog && !glog)) {
        st = td_fail(TD_E_NOMEM, "out of memory");
        goto done;
    }
    memcpy(ids, t_ids->data, (size_t)T * sizeof *ids);
    memcpy(greedy, t_greedy->data, (size_t)G * sizeof *greedy);
    if (routing) {
        if ((st = td_routes_alloc(&routes, m, P)) != TD_OK) goto done;
        if ((st = td_exact_open(m, p->routing_threads, T + G, P, &exact)) != TD_OK) goto done;
    }
    td_routes *ours_routes = routing ? &routes : NULL, *exact_routes = routing ? &exact.routes : NULL;

    /* 1. one prefill over the prompt (the exact path beside it, in the same attention form) */
    td_attn_path saved = td_session_attn_path(s);
    td_attn_path prefill_attn = p ? p->attn : TD_ATTN_AUTO;
    td_session_set_attn_path(s, prefill_attn);
    st = td_eval_forward(s, ids, T, ours, hidden, ours_routes, 0);
    td_session_set_attn_path(s, saved);
    if (st == TD_OK && routing) {
        td_session_set_attn_path(exact.s, prefill_attn);
        st = td_eval_forward(exact.s, ids, T, NULL, NULL, exact_routes, 0);
        td_session_set_attn_path(exact.s, saved);
        if (st == TD_OK) st = td_exact_vs_file(dir, ref_path, exact_routes, T, &out->exact_route_mismatch);
    }
    if (st != TD_OK) goto done;
    td_row_stats pre = {0}, dec = {0}, all = {0};
    td_part_acc part_pre = {0}, part_dec = {0};
    for (int64_t t = 0; t < T; t++) {
        const float *o = ours + t * V, *r = ref_logits + t * V;
        double kl = td_row_compare(&pre, o, r, V);
        td_row_compare(&all, o, r, V);
        td_part_add(&part_pre, td_argmax_f32(o, V) == td_argmax_f32(r, V), kl,
                    routing ? td_routes_differ(&routes, &exact.routes, t) : -1);
    }
    out->prefill_max_rel_err = td_stats_rel(&pre);

    /* 2. greedy decode with teacher forcing: step k's logits come from the prompt plus greedy[0..k) */
    memcpy(row, ours + (T - 1) * V, (size_t)V * sizeof *row);
    for (int64_t k = 0; k < G; k++) {
        double kl = -1;
        if (k > 0) {
            int64_t pos = T + k - 1;
            if ((st = td_eval_forward(s, &greedy[k - 1], 1, NULL, NULL, ours_routes, pos)) != TD_OK) break;
            if (routing && (st = td_eval_forward(exact.s, &greedy[k - 1], 1, NULL, NULL, exact_routes, pos)) != TD_OK)
                break;
            memcpy(row, td_session_logits(s), (size_t)V * sizeof *row);
        }
        out->greedy_match += td_argmax_f32(row, V) == greedy[k];
        if (glog) {
            kl = td_row_compare(&dec, row, glog + k * V, V);
            td_row_compare(&all, row, glog + k * V, V);
        }
        if (k > 0) /* step 0 is the prompt's last position */
            td_part_add(&part_dec, td_argmax_f32(row, V) == greedy[k], kl,
                        routing ? td_routes_differ(&routes, &exact.routes, T + k - 1) : -1);
        if (p && p->progress) fputc('.', stderr);
    }
    if (st != TD_OK) goto done;
    if (t_glog) out->decode_max_rel_err = td_stats_rel(&dec);
    out->logits_max_rel_err = td_stats_rel(&all);
    out->top1_agree = all.rows ? (double)all.top1 / (double)all.rows : 0;
    out->kld_mean = all.rows ? all.kld_sum / (double)all.rows : 0;
    out->kld_max = all.kld_max;
    td_part_acc part_all = td_part_sum(&part_pre, &part_dec);
    out->prefill = td_part_result(&part_pre, routing);
    out->decode = td_part_result(&part_dec, routing);
    out->all = td_part_result(&part_all, routing);

    /* 3. MTP over the prompt: row i uses the main hidden at i and token i+1 */
    if (t_mtp && m->mtp) {
        float *ref_mtp = td_ref_floats(t_mtp);
        mtp = td_malloc((size_t)((T - 1) * V) * sizeof *mtp);
        if (!ref_mtp || !mtp) {
            td_free(ref_mtp);
            st = td_fail(TD_E_NOMEM, "out of memory");
            goto done;
        }
        st = td_session_mtp_forward(s, hidden, ids + 1, T - 1, mtp, NULL);
        if (st == TD_OK) {
            td_row_stats ms = {0};
            for (int64_t i = 0; i < T - 1; i++) td_row_compare(&ms, mtp + i * V, ref_mtp + i * V, V);
            out->mtp_max_rel_err = td_stats_rel(&ms);
            out->mtp_top1_agree = (double)ms.top1 / (double)ms.rows;
        }
        td_free(ref_mtp);
    }
done:
    td_exact_close(&exact);
    td_routes_free(&routes);
    td_free(ids);
    td_free(greedy);
    td_free(ours);
    td_free(hidden);
    td_free(ref_logits);
    td_free(row);
    td_free(glog);
    td_free(mtp);
    td_tensor_dir_free(dir);
    return st;
}
