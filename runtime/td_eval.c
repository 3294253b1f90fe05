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

static void td_row_compare(td_row_stats *st, const float *ours, const float *ref, int64_t V)
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
}

static double td_stats_rel(const td_row_stats *st)
{
    return st->max_ref > 0 ? st->max_diff / st->max_ref : st->max_diff;
}

td_status td_eval_run(td_session *s, const char *ref_path, const td_eval_params *p, td_eval_result *out)
{
    memset(out, 0, sizeof *out);
    out->decode_max_rel_err = out->mtp_max_rel_err = out->min_greedy_margin = -1;
    td_model *m = td_session_model(s);
    int64_t V = m->hp.vocab_size, H = m->hp.hidden_size;
    if (td_session_pos(s) != 0) return td_fail(TD_E_ARG, "evaluation needs a fresh session");

    td_tensor_dir *dir;
    TD_TRY(td_tensor_dir_create(&dir));
    td_status st = td_st_load(ref_path, dir, NULL);
    float *ref_logits = NULL, *ours = NULL, *hidden = NULL, *row = NULL, *mtp = NULL;
    int32_t *ids = NULL, *greedy = NULL;
    const td_tensor *t_ids, *t_logits, *t_greedy, *t_glog = NULL, *t_mtp = NULL;
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

    ids = td_malloc((size_t)T * sizeof *ids);
    greedy = td_malloc((size_t)(G ? G : 1) * sizeof *greedy);
    ours = td_malloc((size_t)(T * V) * sizeof *ours);
    hidden = td_malloc((size_t)(T * H) * sizeof *hidden);
    ref_logits = td_ref_floats(t_logits);
    if (!ids || !greedy || !ours || !hidden || !ref_logits) {
        st = td_fail(TD_E_NOMEM, "out of memory");
        goto done;
    }
    memcpy(ids, t_ids->data, (size_t)T * sizeof *ids);
    memcpy(greedy, t_greedy->data, (size_t)G * sizeof *greedy);

    /* 1. one prefill over the prompt */
    td_attn_path saved = td_session_attn_path(s);
    td_session_set_attn_path(s, p ? p->attn : TD_ATTN_AUTO);
    st = td_session_forward(s, ids, T, ours, hidden);
    td_session_set_attn_path(s, saved);
    if (st != TD_OK) goto done;
    td_row_stats pre = {0}, dec = {0}, all = {0};
    for (int64_t t = 0; t < T; t++) {
        td_row_compare(&pre, ours + t * V, ref_logits + t * V, V);
        td_row_compare(&all, ours + t * V, ref_logits + t * V, V);
    }
    out->prefill_max_rel_err = td_stats_rel(&pre);

    /* 2. greedy decode with teacher forcing: step k's logits come from the prompt plus greedy[0..k) */
    float *glog = t_glog ? td_ref_floats(t_glog) : NULL;
    row = td_malloc((size_t)V * sizeof *row);
    if (!row || (t_glog && !glog)) {
        td_free(glog);
        st = td_fail(TD_E_NOMEM, "out of memory");
        goto done;
    }
    memcpy(row, ours + (T - 1) * V, (size_t)V * sizeof *row);
    for (int64_t k = 0; k < G; k++) {
        if (k > 0) {
            if ((st = td_session_forward(s, &greedy[k - 1], 1, NULL, NULL)) != TD_OK) break;
            memcpy(row, td_session_logits(s), (size_t)V * sizeof *row);
        }
        out->greedy_match += td_argmax_f32(row, V) == greedy[k];
        if (glog) {
            td_row_compare(&dec, row, glog + k * V, V);
            td_row_compare(&all, row, glog + k * V, V);
        }
        if (p && p->progress) fputc('.', stderr);
    }
    td_free(glog);
    if (st != TD_OK) goto done;
    if (t_glog) out->decode_max_rel_err = td_stats_rel(&dec);
    out->logits_max_rel_err = td_stats_rel(&all);
    out->top1_agree = all.rows ? (double)all.top1 / (double)all.rows : 0;
    out->kld_mean = all.rows ? all.kld_sum / (double)all.rows : 0;
    out->kld_max = all.kld_max;

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
    td_free(ids);
    td_free(greedy);
    td_free(ours);
    td_free(hidden);
    td_free(ref_logits);
    td_free(row);
    td_free(mtp);
    td_tensor_dir_free(dir);
    return st;
}
