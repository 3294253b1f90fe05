/* MLA attention on the CPU backend, over the latent cache, in its two equivalent forms:
 *  decompressed: K_nope and V of every cached position are expanded per head (the prefill form);
 *  absorbed:     W_UK is folded into the query and W_UV applied after attending over c_kv (decode form).
 * Both read the same cache of normalized c_kv [r] and the roped shared key [dr] per position. The
 * projections run on every row of the call at once; attending runs per session. */
#include "td_backend_cpu_impl.h"
#include "td_engine.h"
#include "td_float.h"
#include "td_ops.h"
#include "td_rope.h"

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

/* Stores one position's normalized latent and roped key in the cache, in its type. */
static void td_kv_store(td_cpu_backend *c, td_kv *kv, int64_t pos, const float *row, const float *a_norm)
{
    const td_hparams *hp = c->hp;
    int64_t r = hp->kv_lora_rank, dr = hp->qk_rope_head_dim, half = dr / 2;
    const float *cs = c->rope_cos + pos * half, *sn = c->rope_sin + pos * half;
    if (kv->type == TD_KV_F32) {
        float *ckv = (float *)kv->ckv + pos * r, *kr = (float *)kv->krope + pos * dr;
        td_rmsnorm(ckv, row, a_norm, r, hp->rms_norm_eps);
        memcpy(kr, row + r, (size_t)dr * sizeof(float));
        td_rope_rotate(cs, sn, half, kr);
        return;
    }
    float lat[1024], rope[256];
    TD_ASSERT(r <= 1024 && dr <= 256);
    td_rmsnorm(lat, row, a_norm, r, hp->rms_norm_eps);
    memcpy(rope, row + r, (size_t)dr * sizeof(float));
    td_rope_rotate(cs, sn, half, rope);
    uint16_t *ckv = (uint16_t *)kv->ckv + pos * r, *kr = (uint16_t *)kv->krope + pos * dr;
    for (int64_t i = 0; i < r; i++) ckv[i] = td_f32_to_bf16(lat[i]);
    for (int64_t i = 0; i < dr; i++) kr[i] = td_f32_to_bf16(rope[i]);
}

/* The cache's positions [0, len) as floats: the cache itself, or a bf16 cache widened into scratch. */
static void td_kv_floats(td_cpu_backend *c, const td_kv *kv, int64_t len, const float **ckv, const float **krope)
{
    if (kv->type == TD_KV_F32) {
        *ckv = kv->ckv;
        *krope = kv->krope;
        return;
    }
    int64_t r = c->hp->kv_lora_rank, dr = c->hp->qk_rope_head_dim;
    const uint16_t *a = kv->ckv, *b = kv->krope;
    for (int64_t i = 0; i < len * r; i++) c->ckv_f[i] = td_bf16_to_f32(a[i]);
    for (int64_t i = 0; i < len * dr; i++) c->krope_f[i] = td_bf16_to_f32(b[i]);
    *ckv = c->ckv_f;
    *krope = c->krope_f;
}

/* q [n][nh*(dn+dr)] with roped tails for rows [0, n_rows); appends every sequence's rows to its cache. */
static void td_project(td_cpu_backend *c, const td_attn_weights *a, td_view x, int64_t n_rows, const td_attn_seq *seqs,
                       int n_seqs)
{
    const td_hparams *hp = c->hp;
    td_cpu *cpu = c->cpu;
    int64_t H = hp->hidden_size, nh = hp->n_heads, r = hp->kv_lora_rank;
    int64_t dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dq = dn + dr, half = dr / 2;
    for (int64_t t = 0; t < n_rows; t++) td_rmsnorm(c->xn + t * H, td_cpu_row(x, t), a->norm, H, hp->rms_norm_eps);
    if (hp->q_lora_rank) {
        int64_t qr = hp->q_lora_rank;
        td_cpu_linear(cpu, &a->q_a, c->xn, n_rows, c->qa);
        for (int64_t t = 0; t < n_rows; t++) td_rmsnorm(c->qa + t * qr, c->qa + t * qr, a->q_a_norm, qr, hp->rms_norm_eps);
        td_cpu_linear(cpu, &a->q_b, c->qa, n_rows, c->q);
    } else {
        td_cpu_linear(cpu, &a->q, c->xn, n_rows, c->q);
    }
    td_cpu_linear(cpu, &a->kv_a, c->xn, n_rows, c->kva);
    for (int i = 0; i < n_seqs; i++) {
        const td_attn_seq *sq = &seqs[i];
        for (int64_t j = 0; j < sq->n; j++) {
            int64_t t = sq->row0 + j, pos = sq->pos0 + j;
            td_kv_store(c, sq->kv, pos, c->kva + t * (r + dr), a->kv_a_norm);
            for (int64_t h = 0; h < nh; h++)
                td_rope_rotate(c->rope_cos + pos * half, c->rope_sin + pos * half, half, c->q + t * nh * dq + h * dq + dn);
        }
    }
}

/* Softmax over the causal window of a row and the weighted sum of `vals` rows (width w) into out. */
static void td_attend_row(const td_cpu *cpu, float *scores, int64_t len, const float *vals, int64_t w, float *out)
{
    td_softmax(scores, len);
    memset(out, 0, (size_t)w * sizeof(float));
    for (int64_t j = 0; j < len; j++) td_cpu_axpy(cpu, out, scores[j], vals + j * w, w);
}

static void td_attention_decompressed(td_cpu_backend *c, const td_attn_weights *a, const td_attn_seq *sq)
{
    const td_hparams *hp = c->hp;
    td_cpu *cpu = c->cpu;
    int64_t nh = hp->n_heads, dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim;
    int64_t dq = dn + dr, total = sq->pos0 + sq->n, r = hp->kv_lora_rank, slice = c->p_max_rows;
    float scale = (float)td_hparams_softmax_scale(hp);
    const float *ckv, *krope;
    td_kv_floats(c, sq->kv, total, &ckv, &krope);
    for (int64_t h = 0; h < nh; h++) {
        /* every cached position is expanded, in slices of at most one batch: the kernels' scratch holds
         * that many activation rows, and a context is longer than that from the second chunk on */
        for (int64_t j0 = 0; j0 < total; j0 += slice) {
            int64_t m = total - j0 < slice ? total - j0 : slice;
            td_uk_decompress(cpu, hp, a, h, ckv + j0 * r, m, c->k_h + j0 * dn);
            td_uv_apply(cpu, hp, a, h, ckv + j0 * r, m, c->v_h + j0 * dv);
        }
        for (int64_t j = 0; j < sq->n; j++) {
            int64_t t = sq->row0 + j;
            const float *qh = c->q + t * nh * dq + h * dq;
            int64_t len = sq->pos0 + j + 1;
            float *sr = c->scores + t * c->max_ctx;
            for (int64_t p = 0; p < len; p++)
                sr[p] = (td_cpu_dot(cpu, qh, c->k_h + p * dn, dn) + td_cpu_dot(cpu, qh + dn, krope + p * dr, dr)) * scale;
            td_attend_row(cpu, sr, len, c->v_h, dv, c->attn_out + t * nh * dv + h * dv);
        }
    }
}

static void td_attention_absorbed(td_cpu_backend *c, const td_attn_weights *a, const td_attn_seq *sq)
{
    const td_hparams *hp = c->hp;
    td_cpu *cpu = c->cpu;
    int64_t nh = hp->n_heads, dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim;
    int64_t r = hp->kv_lora_rank, dq = dn + dr, n = sq->n;
    float scale = (float)td_hparams_softmax_scale(hp);
    const float *ckv, *krope;
    td_kv_floats(c, sq->kv, sq->pos0 + n, &ckv, &krope);
    const float *q = c->q + sq->row0 * nh * dq;
    float *attn_out = c->attn_out + sq->row0 * nh * dv;
    for (int64_t h = 0; h < nh; h++) {
        for (int64_t t = 0; t < n; t++) memcpy(c->qn_h + t * dn, q + t * nh * dq + h * dq, (size_t)dn * sizeof(float));
        td_uk_absorb(cpu, hp, a, h, c->qn_h, n, c->qlat);
        for (int64_t t = 0; t < n; t++) {
            const float *qr = q + t * nh * dq + h * dq + dn;
            const float *ql = c->qlat + t * r;
            int64_t len = sq->pos0 + t + 1;
            float *sr = c->scores + (sq->row0 + t) * c->max_ctx;
            for (int64_t j = 0; j < len; j++)
                sr[j] = (td_cpu_dot(cpu, ql, ckv + j * r, r) + td_cpu_dot(cpu, qr, krope + j * dr, dr)) * scale;
            td_attend_row(cpu, sr, len, ckv, r, c->olat + t * r);
        }
        td_uv_apply(cpu, hp, a, h, c->olat, n, c->o_h);
        for (int64_t t = 0; t < n; t++)
            memcpy(attn_out + t * nh * dv + h * dv, c->o_h + t * dv, (size_t)dv * sizeof(float));
    }
}

td_status td_cpu_be_attention(td_backend *b, const td_attn_weights *w, td_view x, const td_attn_seq *seqs, int n_seqs)
{
    td_cpu_backend *c = td_cpu_be(b);
    TD_TRY(td_cpu_be_join(c));
    const td_hparams *hp = c->hp;
    int64_t H = hp->hidden_size, n_rows = 0;
    for (int i = 0; i < n_seqs; i++) {
        const td_attn_seq *sq = &seqs[i];
        if (sq->row0 + sq->n > n_rows) n_rows = sq->row0 + sq->n;
        TD_ASSERT(sq->pos0 + sq->n <= sq->kv->n_ctx && sq->pos0 + sq->n <= c->max_ctx);
    }
    TD_ASSERT(n_rows <= c->max_rows && x.stride == H);
    td_project(c, w, x, n_rows, seqs, n_seqs);
    for (int i = 0; i < n_seqs; i++) {
        td_attn_path path = (td_attn_path)seqs[i].path;
        if (path == TD_ATTN_AUTO) path = seqs[i].n >= 16 ? TD_ATTN_DECOMPRESSED : TD_ATTN_ABSORBED;
        if (path == TD_ATTN_DECOMPRESSED) td_attention_decompressed(c, w, &seqs[i]);
        else td_attention_absorbed(c, w, &seqs[i]);
    }
    td_cpu_linear(c->cpu, &w->o, c->attn_out, n_rows, c->tmp);
    for (int64_t t = 0; t < n_rows; t++) {
        float *xr = td_cpu_row(x, t);
        const float *y = c->tmp + t * H;
        for (int64_t i = 0; i < H; i++) xr[i] += y[i];
    }
    return TD_OK;
}
