/* MLA attention over the latent cache, in its two equivalent forms:
 *  decompressed: K_nope and V of every cached position are expanded per head (the prefill form);
 *  absorbed:     W_UK is folded into the query and W_UV applied after attending over c_kv (decode form).
 * Both read the same cache of normalized c_kv [r] and the roped shared key [dr] per position. */
#include "td_ops.h"
#include "td_session_impl.h"

#include <math.h>
#include <string.h>

/* The per-head pieces of the up-projection, whichever way the file stores them. */

/* out[j] = W_UK_h c[j]  (m vectors of r -> dn) */
static void td_uk_decompress(td_cpu *cpu, const td_hparams *hp, const td_attn_weights *a, int64_t h, const float *c,
                             int64_t m, float *out)
{
    int64_t dn = hp->qk_nope_head_dim, dv = hp->v_head_dim, r = hp->kv_lora_rank;
    if (!a->split_kv_b) {
        td_matrix uk = td_matrix_rows(&a->kv_b, h * (dn + dv), dn);
        td_cpu_linear(cpu, &uk, c, m, out);
    } else {
        td_matrix ukt = td_matrix_rows(&a->k_b, h * r, r); /* [r][dn] */
        for (int64_t j = 0; j < m; j++) td_cpu_linear_t(cpu, &ukt, c + j * r, out + j * dn);
    }
}

/* out[t] = W_UK_h^T q[t]  (n vectors of dn -> r) */
static void td_uk_absorb(td_cpu *cpu, const td_hparams *hp, const td_attn_weights *a, int64_t h, const float *q,
                         int64_t n, float *out)
{
    int64_t dn = hp->qk_nope_head_dim, dv = hp->v_head_dim, r = hp->kv_lora_rank;
    if (!a->split_kv_b) {
        td_matrix uk = td_matrix_rows(&a->kv_b, h * (dn + dv), dn);
        for (int64_t t = 0; t < n; t++) td_cpu_linear_t(cpu, &uk, q + t * dn, out + t * r);
    } else {
        td_matrix ukt = td_matrix_rows(&a->k_b, h * r, r);
        td_cpu_linear(cpu, &ukt, q, n, out);
    }
}

/* out[j] = W_UV_h c[j]  (m vectors of r -> dv) */
static void td_uv_apply(td_cpu *cpu, const td_hparams *hp, const td_attn_weights *a, int64_t h, const float *c,
                        int64_t m, float *out)
{
    int64_t dn = hp->qk_nope_head_dim, dv = hp->v_head_dim;
    td_matrix uv = a->split_kv_b ? td_matrix_rows(&a->v_b, h * dv, dv) : td_matrix_rows(&a->kv_b, h * (dn + dv) + dn, dv);
    td_cpu_linear(cpu, &uv, c, m, out);
}

/* q [n][nh*(dn+dr)] with roped tails; fills kv rows pos0..pos0+n-1. */
static void td_project(td_session *s, const td_attn_weights *a, td_kv_layer *kv, int64_t pos0, int64_t n)
{
    const td_hparams *hp = &s->e->model->hp;
    td_cpu *cpu = s->e->cpu;
    td_scratch *sc = &s->s;
    int64_t H = hp->hidden_size, nh = hp->n_heads, r = hp->kv_lora_rank;
    int64_t dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dq = dn + dr;
    for (int64_t t = 0; t < n; t++) td_rmsnorm(sc->xn + t * H, sc->x + t * H, a->norm, H, hp->rms_norm_eps);
    if (hp->q_lora_rank) {
        int64_t qr = hp->q_lora_rank;
        td_cpu_linear(cpu, &a->q_a, sc->xn, n, sc->qa);
        for (int64_t t = 0; t < n; t++) td_rmsnorm(sc->qa + t * qr, sc->qa + t * qr, a->q_a_norm, qr, hp->rms_norm_eps);
        td_cpu_linear(cpu, &a->q_b, sc->qa, n, sc->q);
    } else {
        td_cpu_linear(cpu, &a->q, sc->xn, n, sc->q);
    }
    td_cpu_linear(cpu, &a->kv_a, sc->xn, n, sc->kva);
    for (int64_t t = 0; t < n; t++) {
        int64_t pos = pos0 + t;
        const float *row = sc->kva + t * (r + dr);
        td_rmsnorm(kv->ckv + pos * r, row, a->kv_a_norm, r, hp->rms_norm_eps);
        memcpy(kv->krope + pos * dr, row + r, (size_t)dr * sizeof(float));
        td_rope_apply(s, kv->krope + pos * dr, pos);
        for (int64_t h = 0; h < nh; h++) td_rope_apply(s, sc->q + t * nh * dq + h * dq + dn, pos);
    }
}

/* Softmax over the causal window of token t and the weighted sum of `vals` rows (width w) into out. */
static void td_attend_row(const td_cpu *cpu, float *scores, int64_t len, const float *vals, int64_t w, float *out)
{
    td_softmax(scores, len);
    memset(out, 0, (size_t)w * sizeof(float));
    for (int64_t j = 0; j < len; j++) td_cpu_axpy(cpu, out, scores[j], vals + j * w, w);
}

static void td_attention_decompressed(td_session *s, const td_attn_weights *a, td_kv_layer *kv, int64_t pos0,
                                      int64_t n)
{
    const td_hparams *hp = &s->e->model->hp;
    td_cpu *cpu = s->e->cpu;
    td_scratch *sc = &s->s;
    int64_t nh = hp->n_heads, dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim;
    int64_t dq = dn + dr, total = pos0 + n;
    float scale = (float)td_hparams_softmax_scale(hp);
    int64_t r = hp->kv_lora_rank, slice = s->max_batch;
    for (int64_t h = 0; h < nh; h++) {
        /* every cached position is expanded, in slices of at most one batch: the kernels' scratch holds
         * max_batch activation rows, and a context is longer than that from the second chunk on */
        for (int64_t j0 = 0; j0 < total; j0 += slice) {
            int64_t m = total - j0 < slice ? total - j0 : slice;
            td_uk_decompress(cpu, hp, a, h, kv->ckv + j0 * r, m, sc->k_h + j0 * dn);
            td_uv_apply(cpu, hp, a, h, kv->ckv + j0 * r, m, sc->v_h + j0 * dv);
        }
        for (int64_t t = 0; t < n; t++) {
            const float *qh = sc->q + t * nh * dq + h * dq;
            int64_t len = pos0 + t + 1;
            float *sr = sc->scores + t * s->n_ctx;
            for (int64_t j = 0; j < len; j++)
                sr[j] = (td_cpu_dot(cpu, qh, sc->k_h + j * dn, dn) + td_cpu_dot(cpu, qh + dn, kv->krope + j * dr, dr)) *
                        scale;
            td_attend_row(cpu, sr, len, sc->v_h, dv, sc->attn_out + t * nh * dv + h * dv);
        }
    }
}

static void td_attention_absorbed(td_session *s, const td_attn_weights *a, td_kv_layer *kv, int64_t pos0, int64_t n)
{
    const td_hparams *hp = &s->e->model->hp;
    td_cpu *cpu = s->e->cpu;
    td_scratch *sc = &s->s;
    int64_t nh = hp->n_heads, dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim;
    int64_t r = hp->kv_lora_rank, dq = dn + dr;
    float scale = (float)td_hparams_softmax_scale(hp);
    for (int64_t h = 0; h < nh; h++) {
        for (int64_t t = 0; t < n; t++) memcpy(sc->qn_h + t * dn, sc->q + t * nh * dq + h * dq, (size_t)dn * sizeof(float));
        td_uk_absorb(cpu, hp, a, h, sc->qn_h, n, sc->qlat);
        for (int64_t t = 0; t < n; t++) {
            const float *qr = sc->q + t * nh * dq + h * dq + dn;
            const float *ql = sc->qlat + t * r;
            int64_t len = pos0 + t + 1;
            float *sr = sc->scores + t * s->n_ctx;
            for (int64_t j = 0; j < len; j++)
                sr[j] = (td_cpu_dot(cpu, ql, kv->ckv + j * r, r) + td_cpu_dot(cpu, qr, kv->krope + j * dr, dr)) * scale;
            td_attend_row(cpu, sr, len, kv->ckv, r, sc->olat + t * r);
        }
        td_uv_apply(cpu, hp, a, h, sc->olat, n, sc->o_h);
        for (int64_t t = 0; t < n; t++)
            memcpy(sc->attn_out + t * nh * dv + h * dv, sc->o_h + t * dv, (size_t)dv * sizeof(float));
    }
}

void td_attention_forward(td_session *s, const td_attn_weights *a, td_kv_layer *kv, int64_t pos0, int64_t n)
{
    const td_hparams *hp = &s->e->model->hp;
    td_scratch *sc = &s->s;
    int64_t H = hp->hidden_size;
    td_project(s, a, kv, pos0, n);
    td_attn_path path = s->p.attn;
    if (path == TD_ATTN_AUTO) path = n >= 16 ? TD_ATTN_DECOMPRESSED : TD_ATTN_ABSORBED;
    if (path == TD_ATTN_DECOMPRESSED) td_attention_decompressed(s, a, kv, pos0, n);
    else td_attention_absorbed(s, a, kv, pos0, n);
    td_cpu_linear(s->e->cpu, &a->o, sc->attn_out, n, sc->tmp);
    for (int64_t i = 0; i < n * H; i++) sc->x[i] += sc->tmp[i];
}
