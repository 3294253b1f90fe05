/* The CUDA backend's operations: each one queues kernels on the backend's stream and returns.
 * Products of up to 8 rows take the matrix-vector kernels (exact weights, fp32 sums); larger batches
 * take cuBLAS, in bf16 on tensor cores when the backend was made with bf16_gemm. MLA runs in the
 * absorbed form for every batch (td_cuda_attn.cu says why). */
#include "td_backend_cuda.h"

#ifdef TANDEM_HAVE_CUDA

#include "td_backend_cuda_impl.h"

#include <string.h>

#define TD_CU_GEMV_ROWS 8 /* up to this many rows, the matrix-vector kernels */

static td_cuda_gemv td_cu_plain_gemv(const td_cuda_mat *w, const float *x, int64_t ldx, float *y, int64_t ldy, int n,
                                     bool accumulate)
{
    return (td_cuda_gemv){.w = *w, .out_rows = w->rows, .grp = w->rows, .x = x, .ldx = ldx, .x_div = 1, .y = y,
                          .ldy = ldy, .n = n, .batches = 1, .accumulate = accumulate};
}

/* y[t] (+)= W x[t] for n rows. exact: never round to bf16 (the router's logits). */
static td_status td_cu_product(td_cuda_backend *c, const char *op, const td_matrix *m, const float *x, int64_t ldx,
                               float *y, int64_t ldy, int64_t n, bool accumulate, bool exact)
{
    td_cuda_mat w;
    TD_TRY(td_cu_mat(c, m, &w));
    td_cu_issue(c, op, m);
    if (n <= TD_CU_GEMV_ROWS) {
        td_cuda_gemv g = td_cu_plain_gemv(&w, x, ldx, y, ldy, (int)n, accumulate);
        return td_cu_fail(c, td_cuda_gemv_run(c->cu, &g));
    }
    return td_cu_fail(c, td_cuda_gemm(c->cu, &w, x, ldx, y, ldy, n, accumulate, c->p.bf16_gemm && !exact));
}

td_status td_cu_embed(td_backend *b, const td_matrix *table, const int32_t *tokens, int64_t n, td_view out)
{
    td_cuda_backend *c = td_cu_be(b);
    td_cuda_mat w;
    TD_TRY(td_cu_mat(c, table, &w));
    for (int64_t t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= table->rows)
            return td_fail(TD_E_ARG, "token %d is outside the vocabulary of %lld", tokens[t], (long long)table->rows);
    /* the ids through a staging slot, as rows of one "float" each */
    td_buf ids = {.p = c->tokens, .bytes = (size_t)n * sizeof(int32_t)};
    TD_TRY(b->i->from_host(b, tokens, 1, n, td_view_rows(&ids, n)));
    td_cu_issue(c, "embedding", table);
    return td_cu_fail(c, td_cuda_embed(c->cu, &w, c->tokens, n, td_cu_row(out, 0), out.stride));
}

td_status td_cu_rmsnorm(td_backend *b, const float *w, int64_t width, td_view in, td_view out, int64_t n)
{
    td_cuda_backend *c = td_cu_be(b);
    const float *dw;
    TD_TRY(td_cu_floats(c, w, &dw));
    c->op = "rmsnorm";
    return td_cu_fail(c, td_cuda_rmsnorm(c->cu, td_cu_row(in, 0), in.stride, dw, td_cu_row(out, 0), out.stride, n, width,
                                         c->hp->rms_norm_eps));
}

td_status td_cu_linear(td_backend *b, const td_matrix *w, td_view in, td_view out, int64_t n)
{
    td_cuda_backend *c = td_cu_be(b);
    return td_cu_product(c, "product", w, td_cu_row(in, 0), in.stride, td_cu_row(out, 0), out.stride, n, false, false);
}

td_status td_cu_ffn(td_backend *b, const td_ffn_weights *f, td_view in, td_view acc, int64_t n)
{
    td_cuda_backend *c = td_cu_be(b);
    int64_t I = f->gate.rows;
    TD_ASSERT(n <= c->max_rows);
    const float *x = td_cu_row(in, 0);
    TD_TRY(td_cu_product(c, "ffn gate", &f->gate, x, in.stride, c->h_gate, I, n, false, false));
    TD_TRY(td_cu_product(c, "ffn up", &f->up, x, in.stride, c->h_up, I, n, false, false));
    TD_TRY(td_cu_fail(c, td_cuda_silu_mul(c->cu, c->h_gate, c->h_up, I, n, I)));
    return td_cu_product(c, "ffn down", &f->down, c->h_gate, I, td_cu_row(acc, 0), acc.stride, n, true, false);
}

td_status td_cu_add(td_backend *b, td_view dst, td_view src, int64_t n, int64_t width)
{
    td_cuda_backend *c = td_cu_be(b);
    return td_cu_fail(c, td_cuda_add(c->cu, td_cu_row(dst, 0), dst.stride, td_cu_row(src, 0), src.stride, n, width));
}

td_status td_cu_copy(td_backend *b, td_view src, td_view dst, int64_t n, int64_t width)
{
    td_cuda_backend *c = td_cu_be(b);
    return td_cu_fail(c, td_cuda_d2d(c->cu, td_cu_row(dst, 0), (size_t)dst.stride * sizeof(float), td_cu_row(src, 0),
                                     (size_t)src.stride * sizeof(float), (size_t)width * sizeof(float), (size_t)n));
}

/* ------------------------------------------------------------------ attention */

/* qlat[t][h] = W_UK_h^T q_nope[t][h] for rows [t0, t0 + m) */
static td_status td_cu_absorb(td_cuda_backend *c, const td_attn_weights *a, const float *q, int64_t m)
{
    const td_hparams *hp = c->hp;
    int64_t nh = hp->n_heads, dn = hp->qk_nope_head_dim, dq = dn + hp->qk_rope_head_dim, dv = hp->v_head_dim;
    int64_t r = hp->kv_lora_rank;
    td_cuda_mat w;
    if (a->split_kv_b) { /* k_b [nh*r][dn] holds W_UK_h^T: a plain product per head */
        TD_TRY(td_cu_mat(c, &a->k_b, &w));
        td_cu_issue(c, "attention (absorb)", &a->k_b);
        td_cuda_gemv g = {.w = w, .out_rows = nh * r, .grp = r, .grp_stride = r, .x = q, .ldx = nh * dq,
                          .x_gstride = dq, .x_div = 1, .y = c->qlat, .ldy = nh * r, .n = (int)m, .batches = 1};
        return td_cu_fail(c, td_cuda_gemv_run(c->cu, &g));
    }
    TD_TRY(td_cu_mat(c, &a->kv_b, &w)); /* kv_b [nh*(dn+dv)][r]: W_UK_h is rows h*(dn+dv) .. +dn, transposed */
    td_cu_issue(c, "attention (absorb)", &a->kv_b);
    td_cuda_gemv_t g = {.w = w, .groups = nh, .k = dn, .grp_stride = dn + dv, .x = q, .ldx = nh * dq, .x_gstride = dq,
                        .y = c->qlat, .ldy = nh * r, .y_gstride = r, .n = (int)m};
    return td_cu_fail(c, td_cuda_gemv_t_run(c->cu, &g));
}

/* out[t][h] = W_UV_h olat[t][h] */
static td_status td_cu_unabsorb(td_cuda_backend *c, const td_attn_weights *a, int64_t m, float *out)
{
    const td_hparams *hp = c->hp;
    int64_t nh = hp->n_heads, dn = hp->qk_nope_head_dim, dv = hp->v_head_dim, r = hp->kv_lora_rank;
    const td_matrix *uv = a->split_kv_b ? &a->v_b : &a->kv_b;
    td_cuda_mat w;
    TD_TRY(td_cu_mat(c, uv, &w));
    td_cu_issue(c, "attention (values)", uv);
    td_cuda_gemv g = {.w = w, .out_rows = nh * dv, .grp = dv, .grp_stride = a->split_kv_b ? dv : dn + dv,
                      .grp_off = a->split_kv_b ? 0 : dn, .x = c->olat, .ldx = nh * r, .x_gstride = r, .x_div = 1,
                      .y = out, .ldy = nh * dv, .n = (int)m, .batches = 1};
    return td_cu_fail(c, td_cuda_gemv_run(c->cu, &g));
}

td_status td_cu_attention(td_backend *b, const td_attn_weights *w, td_view x, const td_attn_seq *seqs, int n_seqs)
{
    td_cuda_backend *c = td_cu_be(b);
    const td_hparams *hp = c->hp;
    int64_t H = hp->hidden_size, nh = hp->n_heads, r = hp->kv_lora_rank, dr = hp->qk_rope_head_dim;
    int64_t dn = hp->qk_nope_head_dim, dq = dn + dr, dv = hp->v_head_dim, n_rows = 0;
    for (int i = 0; i < n_seqs; i++) {
        const td_attn_seq *sq = &seqs[i];
        if (sq->row0 + sq->n > n_rows) n_rows = sq->row0 + sq->n;
        TD_ASSERT(sq->pos0 + sq->n <= sq->kv->n_ctx && sq->pos0 + sq->n <= c->max_ctx);
    }
    TD_ASSERT(n_rows <= c->max_rows);
    const float *dnorm, *da_norm;
    TD_TRY(td_cu_floats(c, w->norm, &dnorm));
    TD_TRY(td_cu_floats(c, w->kv_a_norm, &da_norm));
    c->op = "attention (norm)";
    TD_TRY(td_cu_fail(c, td_cuda_rmsnorm(c->cu, td_cu_row(x, 0), x.stride, dnorm, c->xn, H, n_rows, H, hp->rms_norm_eps)));
    if (hp->q_lora_rank) {
        int64_t ql = hp->q_lora_rank;
        const float *dq_norm;
        TD_TRY(td_cu_floats(c, w->q_a_norm, &dq_norm));
        TD_TRY(td_cu_product(c, "attention (q_a)", &w->q_a, c->xn, H, c->qa, ql, n_rows, false, false));
        TD_TRY(td_cu_fail(c, td_cuda_rmsnorm(c->cu, c->qa, ql, dq_norm, c->qa, ql, n_rows, ql, hp->rms_norm_eps)));
        TD_TRY(td_cu_product(c, "attention (q_b)", &w->q_b, c->qa, ql, c->q, nh * dq, n_rows, false, false));
    } else {
        TD_TRY(td_cu_product(c, "attention (q)", &w->q, c->xn, H, c->q, nh * dq, n_rows, false, false));
    }
    TD_TRY(td_cu_product(c, "attention (kv_a)", &w->kv_a, c->xn, H, c->kva, r + dr, n_rows, false, false));
    float scale = (float)td_hparams_softmax_scale(hp);
    for (int i = 0; i < n_seqs; i++) {
        const td_attn_seq *sq = &seqs[i];
        float *q = c->q + sq->row0 * nh * dq;
        c->op = "attention (cache)";
        TD_TRY(td_cu_fail(c, td_cuda_kv_store(c->cu, &sq->kv->dev, c->kva + sq->row0 * (r + dr), r + dr, da_norm,
                                              hp->rms_norm_eps, c->rope_cos, c->rope_sin, sq->pos0, sq->n, q, nh * dq,
                                              nh, dq, dn)));
        for (int64_t t0 = 0; t0 < sq->n; t0 += TD_CU_GEMV_ROWS) {
            int64_t m = sq->n - t0 < TD_CU_GEMV_ROWS ? sq->n - t0 : TD_CU_GEMV_ROWS;
            const float *qt = q + t0 * nh * dq;
            TD_TRY(td_cu_absorb(c, w, qt, m));
            td_cuda_mla mla = {.kv = sq->kv->dev, .nh = nh, .qlat = c->qlat, .ldql = nh * r, .q = qt, .ldq = nh * dq,
                               .q_hstride = dq, .q_rope_off = dn, .olat = c->olat, .ldol = nh * r, .n = (int)m,
                               .pos0 = sq->pos0 + t0, .scale = scale, .part = c->part,
                               .tensor_cores = c->p.bf16_gemm};
            c->op = "attention (scores)";
            TD_TRY(td_cu_fail(c, td_cuda_mla_attend(c->cu, &mla)));
            TD_TRY(td_cu_unabsorb(c, w, m, c->attn_out + (sq->row0 + t0) * nh * dv));
        }
    }
    return td_cu_product(c, "attention (o)", &w->o, c->attn_out, nh * dv, td_cu_row(x, 0), x.stride, n_rows, true, false);
}

/* ------------------------------------------------------------------ the router and the routed experts */

td_status td_cu_route(td_backend *b, const td_moe_weights *moe, td_view xn, td_view ids, td_view weights, int64_t n)
{
    td_cuda_backend *c = td_cu_be(b);
    const td_hparams *hp = c->hp;
    int64_t E = hp->n_routed_experts;
    TD_ASSERT(n <= c->max_rows);
    TD_TRY(td_cu_product(c, "router", &moe->router, td_cu_row(xn, 0), xn.stride, c->logits, E, n, false, true));
    td_cuda_router rp = {.n_experts = hp->n_routed_experts, .k = hp->n_experts_per_tok, .n_group = hp->n_group,
                         .topk_group = hp->topk_group, .norm_topk = hp->norm_topk_prob,
                         .scaling = hp->routed_scaling_factor,
                         .method = hp->topk_method == TD_TOPK_NOAUX_TC ? 0 : hp->topk_method == TD_TOPK_GREEDY ? 2 : 1,
                         .scoring = hp->scoring == TD_SCORING_SIGMOID ? 0 : 1};
    if (moe->bias) TD_TRY(td_cu_floats(c, moe->bias, &rp.bias));
    return td_cu_fail(c, td_cuda_route(c->cu, &rp, c->logits, E, n, (int32_t *)td_cu_row(ids, 0), ids.stride,
                                       td_cu_row(weights, 0), weights.stride));
}

td_status td_cu_moe_submit(td_backend *b, const td_moe_weights *moe, td_view xn, td_view ids, td_view weights,
                           td_view out, int64_t n)
{
    td_cuda_backend *c = td_cu_be(b);
    const td_hparams *hp = c->hp;
    int k = hp->n_experts_per_tok;
    int64_t H = hp->hidden_size, Im = hp->moe_intermediate_size;
    TD_ASSERT(ids.stride == k && n <= c->max_rows);
    const td_cu_experts *x;
    TD_TRY(td_cu_layer_experts(c, moe, &x));
    c->stats.moe_submits++;
    td_cu_issue(c, "routed experts", &moe->experts[0].gate);
    for (int64_t t0 = 0; t0 < n; t0 += TD_CU_MOE_ROWS) {
        int64_t m = n - t0 < TD_CU_MOE_ROWS ? n - t0 : TD_CU_MOE_ROWS;
        const int32_t *id = (const int32_t *)td_cu_row(ids, t0);
        /* one batch per (row, choice): the expert's gate and up, silu(gate) * up, then its down */
        td_cuda_gemv g = {.out_rows = Im, .grp = Im, .x = td_cu_row(xn, t0), .x_bstride = xn.stride, .x_div = k,
                          .y_bstride = Im, .ldy = Im, .n = 1, .batches = (int)(m * k), .ids = id};
        for (int p = 0; p < 2; p++) {
            g.w = x->proto[p];
            g.table = (const void *const *)x->table[p];
            g.scale_table = (const float *const *)x->scales[p];
            g.y = p == 0 ? c->moe_g : c->moe_u;
            TD_TRY(td_cu_fail(c, td_cuda_gemv_run(c->cu, &g)));
        }
        TD_TRY(td_cu_fail(c, td_cuda_silu_mul(c->cu, c->moe_g, c->moe_u, Im, m * k, Im)));
        td_cuda_gemv d = {.w = x->proto[2], .out_rows = H, .grp = H, .x = c->moe_g, .x_bstride = Im, .x_div = 1,
                          .y = c->moe_y, .y_bstride = H, .ldy = H, .n = 1, .batches = (int)(m * k), .ids = id,
                          .table = (const void *const *)x->table[2], .scale_table = (const float *const *)x->scales[2]};
        TD_TRY(td_cu_fail(c, td_cuda_gemv_run(c->cu, &d)));
        TD_TRY(td_cu_fail(c, td_cuda_moe_combine(c->cu, c->moe_y, td_cu_row(weights, t0), weights.stride,
                                                 td_cu_row(out, t0), out.stride, m, k, H)));
    }
    return TD_OK;
}

/* The experts were queued on the stream: every later operation runs after them. */
td_status td_cu_moe_wait(td_backend *b)
{
    td_cuda_backend *c = td_cu_be(b);
    return td_cu_fail(c, td_cuda_check(c->cu));
}

#endif
