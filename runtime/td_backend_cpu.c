/* The CPU backend: buffers in host memory, latent caches (f32 or bf16), and the dense operations on
 * td_cpu. Attention is in td_backend_cpu_attn.c, the routed experts in td_backend_cpu_moe.c.
 * Every operation computes exactly what the engine computed before the seam, in the same order, so the
 * CPU results are bit-identical to it. */
#include "td_alloc.h"
#include "td_backend_cpu_impl.h"
#include "td_dequant.h"
#include "td_float.h"
#include "td_ops.h"
#include "td_rope.h"
#include "td_router.h"
#include "td_rules.h"

#include <stdio.h>
#include <string.h>

static const char *td_cpu_be_name(const td_backend *b)
{
    (void)b;
    return "cpu";
}

static void td_cpu_be_scratch_free(td_cpu_backend *c)
{
    float *all[] = {c->xn,     c->qa,     c->q,   c->kva,    c->attn_out, c->qn_h,     c->qlat,
                    c->olat,   c->o_h,    c->tmp, c->scores, c->k_h,      c->v_h,      c->ckv_f,
                    c->krope_f, c->rope_cos, c->rope_sin, c->router, c->choice};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) td_free(all[i]);
}

static void td_cpu_be_free(td_backend *b)
{
    td_cpu_backend *c = td_cpu_be(b);
    if (!c) return;
    td_cpu_be_driver_stop(c);
    td_cpu_be_scratch_free(c);
    td_free(c->home);
    td_free(c->home_node);
    td_cpu_free(c->cpu);
    td_free(c);
}

static bool td_cpu_be_supports(const td_backend *b, const td_module *m, td_type type, char *why, size_t cap)
{
    (void)b;
    (void)m;
    if (type >= TD_TYPE_COUNT || !td_type_computable(type)) {
        snprintf(why, cap, "the CPU kernels cannot compute on %s weights", td_type_name(type));
        return false;
    }
    return true;
}

static td_status td_cpu_be_prepare(td_backend *b, const td_model *model, const td_module *m,
                                   const struct td_placement *place)
{
    td_cpu_backend *c = td_cpu_be(b);
    if (m->kind != TD_MODULE_EXPERTS) return TD_OK;
    /* routed experts onto the NUMA nodes the rule's numa: field names (split by default) */
    td_expert_home home = TD_HOME_SPLIT;
    int node = 0;
    if (place && place->numa == TD_NUMA_INTERLEAVE) home = TD_HOME_INTERLEAVE;
    if (place && place->numa == TD_NUMA_NODE) {
        home = TD_HOME_NODE;
        node = place->numa_node;
    }
    c->home[m->layer] = home;
    c->home_node[m->layer] = node;
    const td_layer_weights *l = m->layer < model->hp.n_layers ? &model->layers[m->layer] : &model->mtp->layer;
    td_status st = td_cpu_moe_place(c->cpu, l->moe.experts, model->hp.n_routed_experts, home, node);
    if (st != TD_OK) td_err_context("%s", m->name);
    return st;
}

int td_backend_cpu_expert_home(td_backend *b, int layer, int e)
{
    td_cpu_backend *c = td_cpu_be(b);
    return td_cpu_expert_home(c->cpu, c->home[layer], c->home_node[layer], e, c->hp->n_routed_experts);
}

static td_status td_cpu_be_floats(float **p, size_t n)
{
    td_free(*p);
    *p = td_malloc_aligned((n ? n : 1) * sizeof(float), 64);
    return *p ? TD_OK : td_fail(TD_E_NOMEM, "out of memory for the CPU backend's scratch (%zu floats)", n);
}

static td_status td_cpu_be_reserve(td_backend *b, int64_t max_rows, int64_t max_ctx)
{
    td_cpu_backend *c = td_cpu_be(b);
    const td_hparams *hp = c->hp;
    if (max_rows <= c->max_rows && max_ctx <= c->max_ctx) return TD_OK;
    if (max_rows > c->p_max_rows)
        return td_fail(TD_E_ARG, "the CPU backend was made for batches of %lld rows, not %lld", (long long)c->p_max_rows,
                       (long long)max_rows);
    TD_TRY(td_cpu_be_join(c));
    if (max_rows < c->max_rows) max_rows = c->max_rows;
    if (max_ctx < c->max_ctx) max_ctx = c->max_ctx;
    size_t H = (size_t)hp->hidden_size, nh = (size_t)hp->n_heads, r = (size_t)hp->kv_lora_rank;
    size_t dn = (size_t)hp->qk_nope_head_dim, dr = (size_t)hp->qk_rope_head_dim, dv = (size_t)hp->v_head_dim;
    size_t E = (size_t)(hp->n_routed_experts ? hp->n_routed_experts : 1), b_ = (size_t)max_rows, C = (size_t)max_ctx;
    size_t ql = (size_t)(hp->q_lora_rank ? hp->q_lora_rank : 1);
    TD_TRY(td_cpu_be_floats(&c->xn, b_ * H));
    TD_TRY(td_cpu_be_floats(&c->qa, b_ * ql));
    TD_TRY(td_cpu_be_floats(&c->q, b_ * nh * (dn + dr)));
    TD_TRY(td_cpu_be_floats(&c->kva, b_ * (r + dr)));
    TD_TRY(td_cpu_be_floats(&c->attn_out, b_ * nh * dv));
    TD_TRY(td_cpu_be_floats(&c->qn_h, b_ * dn));
    TD_TRY(td_cpu_be_floats(&c->qlat, b_ * r));
    TD_TRY(td_cpu_be_floats(&c->olat, b_ * r));
    TD_TRY(td_cpu_be_floats(&c->o_h, b_ * dv));
    TD_TRY(td_cpu_be_floats(&c->tmp, b_ * H));
    TD_TRY(td_cpu_be_floats(&c->scores, b_ * C));
    TD_TRY(td_cpu_be_floats(&c->k_h, C * dn));
    TD_TRY(td_cpu_be_floats(&c->v_h, C * dv));
    TD_TRY(td_cpu_be_floats(&c->ckv_f, C * r));
    TD_TRY(td_cpu_be_floats(&c->krope_f, C * dr));
    TD_TRY(td_cpu_be_floats(&c->rope_cos, C * (dr / 2)));
    TD_TRY(td_cpu_be_floats(&c->rope_sin, C * (dr / 2)));
    TD_TRY(td_cpu_be_floats(&c->router, b_ * E));
    TD_TRY(td_cpu_be_floats(&c->choice, E));
    TD_TRY(td_rope_tables(hp, max_ctx, c->rope_cos, c->rope_sin));
    c->max_rows = max_rows;
    c->max_ctx = max_ctx;
    return TD_OK;
}

/* ------------------------------------------------------------------ buffers and caches */

static td_status td_cpu_be_buf_new(td_backend *b, size_t bytes, td_buf **out)
{
    (void)b;
    td_buf *buf = td_calloc(1, sizeof *buf);
    if (buf) buf->p = td_malloc_aligned(bytes ? bytes : 1, 64);
    if (!buf || !buf->p) {
        td_free(buf);
        return td_fail(TD_E_NOMEM, "out of memory for an activation buffer of %zu bytes", bytes);
    }
    buf->bytes = bytes;
    buf->owned = true;
    *out = buf;
    return TD_OK;
}

static td_status td_cpu_be_buf_wrap(td_backend *b, void *host, size_t bytes, td_buf **out)
{
    (void)b;
    td_buf *buf = td_calloc(1, sizeof *buf);
    if (!buf) return td_fail(TD_E_NOMEM, "out of memory");
    buf->p = host;
    buf->bytes = bytes;
    *out = buf;
    return TD_OK;
}

static void td_cpu_be_buf_free(td_backend *b, td_buf *buf)
{
    (void)b;
    if (!buf) return;
    if (buf->owned) td_free(buf->p);
    td_free(buf);
}

static void *td_cpu_be_buf_host(td_backend *b, td_buf *buf)
{
    (void)b;
    return buf->p;
}

static td_status td_cpu_be_kv_new(td_backend *b, int64_t n_ctx, td_kv_type type, td_kv **out)
{
    const td_hparams *hp = td_cpu_be(b)->hp;
    if ((unsigned)type >= TD_KV_TYPE_COUNT) return td_fail(TD_E_ARG, "unknown KV cache type %d", (int)type);
    size_t el = (size_t)td_kv_type_bytes(type);
    td_kv *kv = td_calloc(1, sizeof *kv);
    if (!kv) return td_fail(TD_E_NOMEM, "out of memory");
    kv->type = type;
    kv->n_ctx = n_ctx;
    /* zeroed: rows an MTP rewind skips are read but never written, and must stay finite */
    kv->ckv = td_calloc((size_t)(n_ctx * hp->kv_lora_rank), el);
    kv->krope = td_calloc((size_t)(n_ctx * hp->qk_rope_head_dim), el);
    if (!kv->ckv || !kv->krope) {
        td_free(kv->ckv);
        td_free(kv->krope);
        td_free(kv);
        return td_fail(TD_E_NOMEM, "out of memory for a KV cache of %lld positions (%s)", (long long)n_ctx,
                       td_kv_type_name(type));
    }
    *out = kv;
    return TD_OK;
}

static void td_cpu_be_kv_free(td_backend *b, td_kv *kv)
{
    (void)b;
    if (!kv) return;
    td_free(kv->ckv);
    td_free(kv->krope);
    td_free(kv);
}

static td_status td_cpu_be_to_host(td_backend *b, td_view src, int64_t n, int64_t width, void *dst)
{
    TD_TRY(td_cpu_be_join(td_cpu_be(b)));
    for (int64_t t = 0; t < n; t++)
        memcpy((float *)dst + t * width, td_cpu_row(src, t), (size_t)width * sizeof(float));
    return TD_OK;
}

static td_status td_cpu_be_from_host(td_backend *b, const void *src, int64_t n, int64_t width, td_view dst)
{
    TD_TRY(td_cpu_be_join(td_cpu_be(b)));
    for (int64_t t = 0; t < n; t++)
        memcpy(td_cpu_row(dst, t), (const float *)src + t * width, (size_t)width * sizeof(float));
    return TD_OK;
}

static td_status td_cpu_be_sync(td_backend *b) { return td_cpu_be_join(td_cpu_be(b)); }

/* ------------------------------------------------------------------ dense operations */

static td_status td_cpu_be_embed(td_backend *b, const td_matrix *table, const int32_t *tokens, int64_t n, td_view out)
{
    TD_TRY(td_cpu_be_join(td_cpu_be(b)));
    for (int64_t t = 0; t < n; t++) td_matrix_dequant_row(table, tokens[t], td_cpu_row(out, t));
    return TD_OK;
}

static td_status td_cpu_be_rmsnorm(td_backend *b, const float *w, int64_t width, td_view in, td_view out, int64_t n)
{
    td_cpu_backend *c = td_cpu_be(b);
    TD_TRY(td_cpu_be_join(c));
    for (int64_t t = 0; t < n; t++) td_rmsnorm(td_cpu_row(out, t), td_cpu_row(in, t), w, width, c->hp->rms_norm_eps);
    return TD_OK;
}

/* Contiguous rows for the kernels: the view itself when its rows are packed, else a gathered copy. */
static const float *td_cpu_be_packed(td_cpu_backend *c, td_view v, int64_t n, int64_t width, float *scratch)
{
    if (v.stride == width) return td_cpu_row(v, 0);
    for (int64_t t = 0; t < n; t++) memcpy(scratch + t * width, td_cpu_row(v, t), (size_t)width * sizeof(float));
    (void)c;
    return scratch;
}

static td_status td_cpu_be_linear(td_backend *b, const td_matrix *w, td_view in, td_view out, int64_t n)
{
    td_cpu_backend *c = td_cpu_be(b);
    TD_TRY(td_cpu_be_join(c));
    TD_ASSERT(in.stride == w->cols && out.stride == w->rows); /* the forward pass passes packed rows */
    td_cpu_linear(c->cpu, w, td_cpu_row(in, 0), n, td_cpu_row(out, 0));
    return TD_OK;
}

static td_status td_cpu_be_ffn(td_backend *b, const td_ffn_weights *f, td_view in, td_view acc, int64_t n)
{
    td_cpu_backend *c = td_cpu_be(b);
    TD_TRY(td_cpu_be_join(c));
    int64_t H = f->down.rows;
    TD_ASSERT(n <= c->max_rows);
    td_cpu_ffn(c->cpu, f, td_cpu_be_packed(c, in, n, f->gate.cols, c->xn), n, c->tmp);
    for (int64_t t = 0; t < n; t++) {
        float *a = td_cpu_row(acc, t);
        const float *y = c->tmp + t * H;
        for (int64_t i = 0; i < H; i++) a[i] += y[i];
    }
    return TD_OK;
}

static td_status td_cpu_be_copy(td_backend *b, td_view src, td_view dst, int64_t n, int64_t width)
{
    TD_TRY(td_cpu_be_join(td_cpu_be(b)));
    for (int64_t t = 0; t < n; t++) memmove(td_cpu_row(dst, t), td_cpu_row(src, t), (size_t)width * sizeof(float));
    return TD_OK;
}

static td_status td_cpu_be_add(td_backend *b, td_view dst, td_view src, int64_t n, int64_t width)
{
    TD_TRY(td_cpu_be_join(td_cpu_be(b)));
    for (int64_t t = 0; t < n; t++) {
        float *d = td_cpu_row(dst, t);
        const float *s = td_cpu_row(src, t);
        for (int64_t i = 0; i < width; i++) d[i] += s[i];
    }
    return TD_OK;
}

static td_status td_cpu_be_route(td_backend *b, const td_moe_weights *moe, td_view xn, td_view ids, td_view weights,
                                 int64_t n)
{
    td_cpu_backend *c = td_cpu_be(b);
    TD_TRY(td_cpu_be_join(c));
    int k = c->hp->n_experts_per_tok;
    TD_ASSERT(xn.stride == moe->router.cols && ids.stride == k && weights.stride == k && n <= c->max_rows);
    td_cpu_linear(c->cpu, &moe->router, td_cpu_row(xn, 0), n, c->router);
    td_route_rows(c->hp, moe->bias, c->router, n, c->choice, (int32_t *)td_cpu_row(ids, 0), td_cpu_row(weights, 0));
    return TD_OK;
}

static void td_cpu_be_stats(const td_backend *b, td_backend_stats *out) { *out = ((const td_cpu_backend *)b)->stats; }

static const td_backend_i td_cpu_backend_i = {
    .name = td_cpu_be_name,
    .free = td_cpu_be_free,
    .supports = td_cpu_be_supports,
    .prepare = td_cpu_be_prepare,
    .reserve = td_cpu_be_reserve,
    .buf_new = td_cpu_be_buf_new,
    .buf_wrap = td_cpu_be_buf_wrap,
    .buf_free = td_cpu_be_buf_free,
    .buf_host = td_cpu_be_buf_host,
    .kv_new = td_cpu_be_kv_new,
    .kv_free = td_cpu_be_kv_free,
    .to_host = td_cpu_be_to_host,
    .from_host = td_cpu_be_from_host,
    .sync = td_cpu_be_sync,
    .embed = td_cpu_be_embed,
    .rmsnorm = td_cpu_be_rmsnorm,
    .linear = td_cpu_be_linear,
    .copy = td_cpu_be_copy,
    .ffn = td_cpu_be_ffn,
    .attention = td_cpu_be_attention,
    .route = td_cpu_be_route,
    .moe_submit = td_cpu_be_moe_submit,
    .moe_wait = td_cpu_be_moe_wait,
    .add = td_cpu_be_add,
    .stats = td_cpu_be_stats,
};

td_status td_backend_cpu_create(const td_model *model, const td_backend_cpu_params *p, int64_t max_rows,
                                td_backend **out)
{
    *out = NULL;
    const td_hparams *hp = &model->hp;
    td_backend_cpu_params params = p ? *p : (td_backend_cpu_params){0};
    int64_t ffn = hp->intermediate_size;
    int64_t shared = hp->moe_intermediate_size * (hp->n_shared_experts > 1 ? hp->n_shared_experts : 1);
    if (shared > ffn) ffn = shared;
    int64_t max_cols = model->max_cols > hp->hidden_size * 2 ? model->max_cols : hp->hidden_size * 2;
    td_cpu_params cp = {.kernels = params.kernels, .n_threads = params.n_threads, .max_tokens = max_rows,
                        .max_cols = max_cols, .hidden = hp->hidden_size, .ffn_width = ffn,
                        .expert_width = hp->moe_intermediate_size, .n_experts = hp->n_routed_experts,
                        .top_k = hp->n_experts_per_tok, .topology = params.topology};
    td_cpu_backend *c = td_calloc(1, sizeof *c);
    if (!c) return td_fail(TD_E_NOMEM, "out of memory");
    c->base.i = &td_cpu_backend_i;
    c->base.model = model;
    c->base.host_memory = true;
    c->p = params;
    c->hp = hp;
    c->p_max_rows = max_rows;
    c->moe_async = params.moe_async;
    c->home = td_calloc((size_t)hp->n_layers + 1, sizeof *c->home);
    c->home_node = td_calloc((size_t)hp->n_layers + 1, sizeof *c->home_node);
    td_status st = c->home && c->home_node ? td_cpu_create(&cp, &c->cpu) : td_fail(TD_E_NOMEM, "out of memory");
    if (st == TD_OK && c->moe_async) st = td_cpu_be_driver_start(c);
    if (st == TD_OK) st = td_cpu_be_reserve(&c->base, max_rows, 1); /* the row scratch at once: ffn and route use it */
    if (st != TD_OK) {
        td_cpu_be_free(&c->base);
        return st;
    }
    *out = &c->base;
    return TD_OK;
}

td_cpu *td_backend_cpu_context(td_backend *b) { return td_cpu_be(b)->cpu; }
