/* The CUDA backend: device buffers and caches, copies through page-locked staging, the weights uploaded
 * once at `prepare`, and the scratch of forward calls. The operations are in td_backend_cuda_ops.c. */
#include "td_backend_cuda.h"

/* The CUDA context with its kernels and cuBLAS's handle and workspace: the driver's used memory less the
 * backend's allocations, measured on the H200 (driver 580, CUDA 13) after a generation. */
#define TD_CU_CONTEXT_BYTES ((uint64_t)600 << 20)
/* td_cuda_gemm's slab of dequantized weights (td_cuda_gemv.cu) */
#define TD_CU_SLAB_BYTES ((uint64_t)64 << 20)

/* Mirrors td_cu_reserve and the engine's activations (td_engine_alloc_acts); kept beside them. */
uint64_t td_backend_cuda_reserve_bytes(const td_hparams *hp, int64_t max_rows, int64_t max_ctx)
{
    int64_t B = max_rows, H = hp->hidden_size, nh = hp->n_heads, r = hp->kv_lora_rank, dr = hp->qk_rope_head_dim;
    int64_t dq = hp->qk_nope_head_dim + dr, dv = hp->v_head_dim, ql = hp->q_lora_rank ? hp->q_lora_rank : 1;
    int64_t E = hp->n_routed_experts ? hp->n_routed_experts : 1, k = hp->n_experts_per_tok ? hp->n_experts_per_tok : 1;
    int64_t Im = hp->moe_intermediate_size, I = hp->intermediate_size, V = hp->vocab_size;
    int64_t shared = Im * (hp->n_shared_experts > 1 ? hp->n_shared_experts : 1);
    if (shared > I) I = shared;
    if (Im > I) I = Im;
    int64_t cols = 2 * H;
    if (nh * dv > cols) cols = nh * dv;
    if (I > cols) cols = I;
    int64_t floats = B * H + B * ql + B * nh * dq + B * (r + dr) + 2 * 8 * nh * r + B * nh * dv + 2 * B * I + B * E +
                     8 * nh * 32 * (r + 2) + (hp->n_routed_experts ? 64 * k * (2 * Im + H) : 0) + max_ctx * dr;
    floats += 4 * B * H + 2 * B * k + 2 * B * H + (B < 64 ? B : 64) * V; /* X XN ACC TMP, IDS W, EMB2, LOGITS */
    return TD_CU_CONTEXT_BYTES + TD_CU_SLAB_BYTES + (uint64_t)floats * 4u + (uint64_t)B * 4u + (uint64_t)(B * cols) * 2u;
}

#ifndef TANDEM_HAVE_CUDA

td_status td_backend_cuda_create(const td_model *model, const td_backend_cuda_params *p, int64_t max_rows,
                                 td_backend **out)
{
    (void)model, (void)max_rows;
    *out = NULL;
    return td_fail(TD_E_DEVICE, "cuda:%d: this tandem was built without CUDA (install the CUDA toolkit and rebuild)",
                   p ? p->device : 0);
}

uint64_t td_backend_cuda_allocated(const td_backend *b)
{
    (void)b;
    return 0;
}

td_status td_backend_cuda_inject_fault(td_backend *b)
{
    (void)b;
    return td_fail(TD_E_DEVICE, "this tandem was built without CUDA");
}

#else

#include "td_alloc.h"
#include "td_backend_cuda_impl.h"
#include "td_dequant.h"
#include "td_float.h"
#include "td_rope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TD_CU_STAGE_SLOT_BYTES ((size_t)4 << 20)

/* ------------------------------------------------------------------ errors */

/* "model.layers.3.self_attn" from "model.layers.3.self_attn.q_a_proj.weight" */
static void td_cu_module_of(const char *tensor, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", tensor ? tensor : "?");
    char *dot = strrchr(buf, '.');
    if (dot && strcmp(dot, ".weight") == 0) *dot = '\0';
    if ((dot = strrchr(buf, '.'))) *dot = '\0';
    if ((dot = strrchr(buf, '.')) && dot[1] >= '0' && dot[1] <= '9') *dot = '\0'; /* experts.17 -> experts */
}

void td_cu_issue(td_cuda_backend *c, const char *op, const td_matrix *m)
{
    c->op = op;
    if (m) c->op_tensor = m->name;
}

td_status td_cu_fail(td_cuda_backend *c, td_status st)
{
    if (st != TD_E_DEVICE || !c->op) return st;
    char mod[128];
    td_cu_module_of(c->op_tensor, mod, sizeof mod);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", td_errmsg());
    return td_fail(st, "%s; raised by the work queued up to the %s of %s on %s", msg, c->op, mod, c->name);
}

/* ------------------------------------------------------------------ weights */

static size_t td_cu_hash(const void *p, size_t cap) { return ((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull & (cap - 1); }

static td_status td_cu_hash_rebuild(td_cuda_backend *c, size_t cap)
{
    int *h = td_calloc(cap, sizeof *h);
    if (!h) return td_fail(TD_E_NOMEM, "out of memory");
    for (int i = 0; i < c->n_w; i++) {
        size_t k = td_cu_hash(c->w[i].host, cap);
        while (h[k]) k = (k + 1) & (cap - 1);
        h[k] = i + 1;
    }
    td_free(c->w_hash);
    c->w_hash = h;
    c->w_hash_cap = cap;
    return TD_OK;
}

/* The entry whose range starts at host, or NULL. */
static td_cu_weight *td_cu_exact(td_cuda_backend *c, const void *host)
{
    if (!c->w_hash) return NULL;
    for (size_t k = td_cu_hash(host, c->w_hash_cap); c->w_hash[k]; k = (k + 1) & (c->w_hash_cap - 1))
        if (c->w[c->w_hash[k] - 1].host == host) return &c->w[c->w_hash[k] - 1];
    return NULL;
}

static td_status td_cu_add_entry(td_cuda_backend *c, const td_cu_weight *e)
{
    if (c->n_w == c->cap_w) {
        int cap = c->cap_w ? 2 * c->cap_w : 256;
        td_cu_weight *w = td_realloc(c->w, (size_t)cap * sizeof *w);
        if (!w) return td_fail(TD_E_NOMEM, "out of memory");
        c->w = w;
        c->cap_w = cap;
    }
    c->w[c->n_w++] = *e;
    c->w_sorted = false;
    if ((size_t)c->n_w * 2 > c->w_hash_cap) return td_cu_hash_rebuild(c, c->w_hash_cap ? 2 * c->w_hash_cap : 1024);
    size_t k = td_cu_hash(e->host, c->w_hash_cap);
    while (c->w_hash[k]) k = (k + 1) & (c->w_hash_cap - 1);
    c->w_hash[k] = c->n_w;
    return TD_OK;
}

static int td_cu_cmp_weight(const void *a, const void *b)
{
    const uint8_t *x = ((const td_cu_weight *)a)->host, *y = ((const td_cu_weight *)b)->host;
    return (x > y) - (x < y);
}

/* The entry holding host address p (views of a matrix prepared whole), or NULL. */
static const td_cu_weight *td_cu_find(td_cuda_backend *c, const void *p)
{
    const td_cu_weight *e = td_cu_exact(c, p);
    if (e) return e;
    if (!c->w_sorted) {
        qsort(c->w, (size_t)c->n_w, sizeof *c->w, td_cu_cmp_weight);
        if (td_cu_hash_rebuild(c, c->w_hash_cap ? c->w_hash_cap : 1024) != TD_OK) return NULL;
        c->w_sorted = true;
    }
    int lo = 0, hi = c->n_w - 1, at = -1;
    while (lo <= hi) { /* the last entry starting at or before p */
        int mid = (lo + hi) / 2;
        if (c->w[mid].host <= (const uint8_t *)p) at = mid, lo = mid + 1;
        else hi = mid - 1;
    }
    if (at < 0 || (const uint8_t *)p >= c->w[at].host + c->w[at].host_bytes) return NULL;
    return &c->w[at];
}

/* Copies bytes of host memory to the device once (the same range prepared again is shared). */
static td_status td_cu_put(td_cuda_backend *c, const void *host, size_t bytes, size_t row_bytes, int type)
{
    if (!host || !bytes || td_cu_exact(c, host)) return TD_OK;
    td_cu_weight e = {.host = host, .host_bytes = bytes, .host_row_bytes = row_bytes, .dev_row_bytes = row_bytes,
                      .dev_type = type};
    TD_TRY(td_cuda_alloc(c->cu, bytes, &e.dev));
    td_status st = td_cuda_upload(c->cu, e.dev, host, bytes);
    if (st == TD_OK) st = td_cu_add_entry(c, &e);
    if (st != TD_OK) td_cuda_release(c->cu, e.dev);
    return st;
}

/* A matrix of a type the kernels do not read in place, dequantized to F16 on the host, then copied. */
static td_status td_cu_put_f16(td_cuda_backend *c, const td_matrix *m)
{
    size_t row_bytes = (size_t)m->cols * 2, bytes = row_bytes * (size_t)m->rows;
    td_cu_weight e = {.host = m->data, .host_bytes = m->row_bytes * (size_t)m->rows, .host_row_bytes = m->row_bytes,
                      .dev_row_bytes = row_bytes, .dev_type = TD_TYPE_F16};
    float *row = td_malloc((size_t)m->cols * sizeof *row);
    uint16_t *half = td_malloc(bytes);
    td_status st = row && half ? TD_OK : td_fail(TD_E_NOMEM, "out of memory converting %s to f16", m->name);
    for (int64_t r = 0; st == TD_OK && r < m->rows; r++) {
        td_matrix_dequant_row(m, r, row);
        for (int64_t j = 0; j < m->cols; j++) half[r * m->cols + j] = td_f32_to_f16(row[j]);
    }
    if (st == TD_OK) st = td_cuda_alloc(c->cu, bytes, &e.dev);
    if (st == TD_OK) {
        st = td_cuda_upload(c->cu, e.dev, half, bytes);
        if (st == TD_OK) st = td_cu_add_entry(c, &e);
        if (st != TD_OK) td_cuda_release(c->cu, e.dev);
    }
    td_free(row);
    td_free(half);
    return st;
}

static td_status td_cu_put_matrix(td_cuda_backend *c, const td_matrix *m)
{
    if (!m->data || m->rows <= 0 || td_cu_exact(c, m->data)) return TD_OK;
    td_cuda_mat probe = {.type = m->type, .rows = m->rows, .cols = m->cols, .row_bytes = m->row_bytes,
                         .scale = (const float *)m->scale_inv, .scale_block = {m->scale_block[0], m->scale_block[1]}};
    char why[160];
    if (!td_cuda_type_supported(m->type)) {
        if (!td_type_computable(m->type) || m->cols % 8)
            return td_fail(TD_E_UNSUPPORTED, "%s (%s, %lld columns) cannot go to %s", m->name, td_type_name(m->type),
                           (long long)m->cols, c->name);
        return td_cu_put_f16(c, m);
    }
    if (!td_cuda_mat_ok(&probe, why, sizeof why)) return td_fail(TD_E_UNSUPPORTED, "%s on %s: %s", m->name, c->name, why);
    TD_TRY(td_cu_put(c, m->data, m->row_bytes * (size_t)m->rows, m->row_bytes, m->type));
    if (m->scale_inv)
        TD_TRY(td_cu_put(c, m->scale_inv, (size_t)(m->scale_rows * m->scale_cols) * 4u, (size_t)m->scale_cols * 4u,
                         TD_TYPE_F32));
    return TD_OK;
}

static td_status td_cu_put_floats(td_cuda_backend *c, const float *v, int64_t n)
{
    return td_cu_put(c, v, (size_t)n * sizeof(float), (size_t)n * sizeof(float), TD_TYPE_F32);
}

td_status td_cu_mat(td_cuda_backend *c, const td_matrix *m, td_cuda_mat *out)
{
    const td_cu_weight *e = td_cu_find(c, m->data);
    if (!e) return td_fail(TD_E_ARG, "%s was not prepared on %s (a module placed elsewhere reached it)", m->name, c->name);
    size_t row = (size_t)(m->data - e->host) / e->host_row_bytes;
    *out = (td_cuda_mat){.type = e->dev_type, .rows = m->rows, .cols = m->cols,
                         .data = (const uint8_t *)e->dev + row * e->dev_row_bytes, .row_bytes = e->dev_row_bytes,
                         .scale_cols = m->scale_cols, .scale_row0 = m->scale_row0,
                         .scale_block = {m->scale_block[0], m->scale_block[1]}};
    if (m->scale_inv && e->dev_type == TD_TYPE_F8_E4M3) {
        const td_cu_weight *s = td_cu_find(c, m->scale_inv);
        if (!s) return td_fail(TD_E_ARG, "the scales of %s were not prepared on %s", m->name, c->name);
        out->scale = (const float *)s->dev;
    }
    return TD_OK;
}

td_status td_cu_floats(td_cuda_backend *c, const float *host, const float **out)
{
    const td_cu_weight *e = td_cu_find(c, host);
    if (!e) return td_fail(TD_E_ARG, "a norm or bias vector was not prepared on %s", c->name);
    *out = (const float *)((const uint8_t *)e->dev + ((const uint8_t *)host - e->host));
    return TD_OK;
}

static td_status td_cu_put_ffn(td_cuda_backend *c, const td_ffn_weights *f)
{
    TD_TRY(td_cu_put_matrix(c, &f->gate));
    TD_TRY(td_cu_put_matrix(c, &f->up));
    return td_cu_put_matrix(c, &f->down);
}

static td_status td_cu_put_attn(td_cuda_backend *c, const td_attn_weights *a)
{
    const td_hparams *hp = c->hp;
    const td_matrix *ms[] = {&a->q_a, &a->q_b, &a->q, &a->kv_a, &a->kv_b, &a->k_b, &a->v_b, &a->o};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) TD_TRY(td_cu_put_matrix(c, ms[i]));
    TD_TRY(td_cu_put_floats(c, a->norm, hp->hidden_size));
    if (a->q_a_norm) TD_TRY(td_cu_put_floats(c, a->q_a_norm, hp->q_lora_rank));
    return td_cu_put_floats(c, a->kv_a_norm, hp->kv_lora_rank);
}

/* Every expert's matrices, then the device tables the batched products index by expert id. */
static td_status td_cu_put_experts(td_cuda_backend *c, int layer, const td_moe_weights *moe)
{
    int E = c->hp->n_routed_experts;
    td_cu_experts *x = &c->experts[layer];
    const void **data = td_calloc((size_t)E, sizeof *data);
    const float **scales = td_calloc((size_t)E, sizeof *scales);
    td_status st = data && scales ? TD_OK : td_fail(TD_E_NOMEM, "out of memory");
    for (int e = 0; st == TD_OK && e < E; e++) st = td_cu_put_ffn(c, &moe->experts[e]);
    for (int p = 0; st == TD_OK && p < 3; p++) {
        bool fp8 = false;
        for (int e = 0; st == TD_OK && e < E; e++) {
            const td_ffn_weights *f = &moe->experts[e];
            const td_matrix *m = p == 0 ? &f->gate : p == 1 ? &f->up : &f->down;
            td_cuda_mat dm;
            st = td_cu_mat(c, m, &dm);
            if (st != TD_OK) break;
            if (e == 0) x->proto[p] = dm;
            else if (dm.type != x->proto[p].type || dm.rows != x->proto[p].rows || dm.cols != x->proto[p].cols ||
                     dm.row_bytes != x->proto[p].row_bytes)
                st = td_fail(TD_E_UNSUPPORTED, "%s differs in type or shape from expert 0's (%s): the GPU runs a layer's "
                                               "experts as one batch",
                             m->name, td_type_name(x->proto[p].type));
            data[e] = dm.data;
            scales[e] = dm.scale;
            fp8 |= dm.scale != NULL;
        }
        if (st == TD_OK) st = td_cuda_alloc(c->cu, (size_t)E * sizeof(void *), (void **)&x->table[p]);
        if (st == TD_OK) st = td_cuda_upload(c->cu, (void *)x->table[p], data, (size_t)E * sizeof(void *));
        if (st == TD_OK && fp8) st = td_cuda_alloc(c->cu, (size_t)E * sizeof(float *), (void **)&x->scales[p]);
        if (st == TD_OK && fp8) st = td_cuda_upload(c->cu, (void *)x->scales[p], scales, (size_t)E * sizeof(float *));
    }
    td_free(data);
    td_free(scales);
    if (st == TD_OK) {
        x->ready = true;
        c->has_experts = true;
    }
    return st;
}

td_status td_cu_layer_experts(td_cuda_backend *c, const td_moe_weights *moe, const td_cu_experts **out)
{
    const td_model *m = c->base.model;
    int layer = -1;
    for (int l = 0; l < m->hp.n_layers && layer < 0; l++)
        if (&m->layers[l].moe == moe) layer = l;
    if (layer < 0 && m->mtp && &m->mtp->layer.moe == moe) layer = m->hp.n_layers;
    if (layer < 0 || !c->experts[layer].ready)
        return td_fail(TD_E_ARG, "the routed experts of layer %d were not prepared on %s", layer, c->name);
    *out = &c->experts[layer];
    return TD_OK;
}

static td_status td_cu_prepare_module(td_cuda_backend *c, const td_model *model, const td_module *m)
{
    const td_hparams *hp = &model->hp;
    const td_layer_weights *l = NULL;
    if (m->layer >= 0) l = m->layer < hp->n_layers ? &model->layers[m->layer] : &model->mtp->layer;
    switch (m->kind) {
    case TD_MODULE_EMBED: return td_cu_put_matrix(c, &model->embed);
    case TD_MODULE_NORM: return td_cu_put_floats(c, model->norm, hp->hidden_size);
    case TD_MODULE_HEAD: return td_cu_put_matrix(c, &model->head);
    case TD_MODULE_ATTN: return td_cu_put_attn(c, &l->attn);
    case TD_MODULE_DENSE_MLP:
        TD_TRY(td_cu_put_floats(c, l->ffn_norm, hp->hidden_size));
        return td_cu_put_ffn(c, &l->dense);
    case TD_MODULE_ROUTER:
        TD_TRY(td_cu_put_floats(c, l->ffn_norm, hp->hidden_size));
        if (l->moe.bias) TD_TRY(td_cu_put_floats(c, l->moe.bias, hp->n_routed_experts));
        return td_cu_put_matrix(c, &l->moe.router);
    case TD_MODULE_SHARED_EXPERTS: return td_cu_put_ffn(c, &l->moe.shared);
    case TD_MODULE_EXPERTS: return td_cu_put_experts(c, m->layer, &l->moe);
    case TD_MODULE_MTP: {
        const td_mtp_weights *w = model->mtp;
        TD_TRY(td_cu_put_floats(c, w->enorm, hp->hidden_size));
        TD_TRY(td_cu_put_floats(c, w->hnorm, hp->hidden_size));
        TD_TRY(td_cu_put_floats(c, w->head_norm, hp->hidden_size));
        TD_TRY(td_cu_put_matrix(c, &w->eh_proj));
        TD_TRY(td_cu_put_matrix(c, &w->embed));
        return td_cu_put_matrix(c, &w->head);
    }
    default: return TD_OK;
    }
}

static td_status td_cu_prepare(td_backend *b, const td_model *model, const td_module *m, const struct td_placement *place)
{
    (void)place;
    td_cuda_backend *c = td_cu_be(b);
    td_status st = td_cu_prepare_module(c, model, m);
    if (st != TD_OK) td_err_context("%s onto %s", m->name, c->name);
    return st;
}

/* ------------------------------------------------------------------ what it runs */

static const char *td_cu_name(const td_backend *b) { return ((const td_cuda_backend *)b)->name; }

static bool td_cu_supports(const td_backend *b, const td_module *m, td_type type, char *why, size_t cap)
{
    const td_cuda_backend *c = (const td_cuda_backend *)b;
    const td_hparams *hp = c->hp;
    if (type >= TD_TYPE_COUNT || (!td_cuda_type_supported(type) && !td_type_computable(type))) {
        snprintf(why, cap, "the GPU kernels cannot read %s weights (nor can they be converted to f16)",
                 type < TD_TYPE_COUNT ? td_type_name(type) : "unknown");
        return false;
    }
    if (m->kind == TD_MODULE_ATTN &&
        (hp->kv_lora_rank > TD_CUDA_MLA_MAX_R || hp->qk_rope_head_dim > TD_CUDA_MLA_MAX_DR || hp->qk_rope_head_dim % 2)) {
        snprintf(why, cap, "MLA on the GPU holds a latent of up to %d and an even rope key of up to %d; this model has "
                           "%lld and %lld",
                 TD_CUDA_MLA_MAX_R, TD_CUDA_MLA_MAX_DR, (long long)hp->kv_lora_rank, (long long)hp->qk_rope_head_dim);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ scratch */

static void td_cu_scratch_free(td_cuda_backend *c)
{
    float **all[] = {&c->xn,     &c->qa,   &c->q,     &c->kva,   &c->qlat,  &c->olat,     &c->attn_out,
                     &c->h_gate, &c->h_up, &c->logits, &c->part, &c->moe_g, &c->moe_u,   &c->moe_y,
                     &c->rope_cos, &c->rope_sin};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        td_cuda_release(c->cu, *all[i]);
        *all[i] = NULL;
    }
    td_cuda_release(c->cu, c->tokens);
    c->tokens = NULL;
}

static td_status td_cu_floats_new(td_cuda_backend *c, float **p, int64_t n)
{
    return td_cuda_alloc(c->cu, (size_t)(n > 0 ? n : 1) * sizeof(float), (void **)p);
}

static td_status td_cu_reserve(td_backend *b, int64_t max_rows, int64_t max_ctx)
{
    td_cuda_backend *c = td_cu_be(b);
    const td_hparams *hp = c->hp;
    if (max_rows <= c->max_rows && max_ctx <= c->max_ctx) return TD_OK;
    if (max_rows > c->p_max_rows)
        return td_fail(TD_E_ARG, "%s was made for batches of %lld rows, not %lld", c->name, (long long)c->p_max_rows,
                       (long long)max_rows);
    if (max_rows < c->max_rows) max_rows = c->max_rows;
    if (max_ctx < c->max_ctx) max_ctx = c->max_ctx;
    TD_TRY(td_cu_fail(c, td_cuda_sync(c->cu))); /* queued work may still read the old scratch */
    td_cu_scratch_free(c);
    int64_t B = max_rows, H = hp->hidden_size, nh = hp->n_heads, r = hp->kv_lora_rank, dr = hp->qk_rope_head_dim;
    int64_t dq = hp->qk_nope_head_dim + dr, dv = hp->v_head_dim, ql = hp->q_lora_rank ? hp->q_lora_rank : 1;
    int64_t E = hp->n_routed_experts ? hp->n_routed_experts : 1, k = hp->n_experts_per_tok ? hp->n_experts_per_tok : 1;
    int64_t Im = hp->moe_intermediate_size, I = hp->intermediate_size;
    int64_t shared = Im * (hp->n_shared_experts > 1 ? hp->n_shared_experts : 1);
    if (shared > I) I = shared;
    if (Im > I) I = Im;
    int64_t qc = 8; /* attention runs its rows in groups of 8 */
    TD_TRY(td_cu_floats_new(c, &c->xn, B * H));
    TD_TRY(td_cu_floats_new(c, &c->qa, B * ql));
    TD_TRY(td_cu_floats_new(c, &c->q, B * nh * dq));
    TD_TRY(td_cu_floats_new(c, &c->kva, B * (r + dr)));
    TD_TRY(td_cu_floats_new(c, &c->qlat, qc * nh * r));
    TD_TRY(td_cu_floats_new(c, &c->olat, qc * nh * r));
    TD_TRY(td_cu_floats_new(c, &c->attn_out, B * nh * dv));
    TD_TRY(td_cu_floats_new(c, &c->h_gate, B * I));
    TD_TRY(td_cu_floats_new(c, &c->h_up, B * I));
    TD_TRY(td_cu_floats_new(c, &c->logits, B * E));
    TD_TRY(td_cu_floats_new(c, &c->part, td_cuda_mla_part_floats(qc, nh, r)));
    if (c->has_experts) {
        int64_t pairs = TD_CU_MOE_ROWS * k;
        TD_TRY(td_cu_floats_new(c, &c->moe_g, pairs * Im));
        TD_TRY(td_cu_floats_new(c, &c->moe_u, pairs * Im));
        TD_TRY(td_cu_floats_new(c, &c->moe_y, pairs * H));
    }
    TD_TRY(td_cuda_alloc(c->cu, (size_t)B * sizeof(int32_t), (void **)&c->tokens));
    int64_t max_cols = c->base.model->max_cols > 2 * H ? c->base.model->max_cols : 2 * H;
    TD_TRY(td_cuda_gemm_reserve(c->cu, B, max_cols));
    /* the rope tables, computed on the host as the CPU computes them */
    int64_t half = dr / 2, cells = max_ctx * (half ? half : 1);
    float *tab = td_malloc((size_t)(2 * cells) * sizeof(float));
    if (!tab) return td_fail(TD_E_NOMEM, "out of memory for the rope tables");
    td_status st = td_rope_tables(hp, max_ctx, tab, tab + cells);
    if (st == TD_OK) st = td_cu_floats_new(c, &c->rope_cos, cells);
    if (st == TD_OK) st = td_cu_floats_new(c, &c->rope_sin, cells);
    if (st == TD_OK) st = td_cuda_upload(c->cu, c->rope_cos, tab, (size_t)cells * sizeof(float));
    if (st == TD_OK) st = td_cuda_upload(c->cu, c->rope_sin, tab + cells, (size_t)cells * sizeof(float));
    td_free(tab);
    TD_TRY(st);
    c->max_rows = max_rows;
    c->max_ctx = max_ctx;
    return TD_OK;
}

/* ------------------------------------------------------------------ buffers, caches, copies */

static td_status td_cu_buf_new(td_backend *b, size_t bytes, td_buf **out)
{
    td_cuda_backend *c = td_cu_be(b);
    td_buf *buf = td_calloc(1, sizeof *buf);
    if (!buf) return td_fail(TD_E_NOMEM, "out of memory");
    td_status st = td_cuda_alloc(c->cu, bytes, &buf->p);
    if (st != TD_OK) {
        td_free(buf);
        return st;
    }
    buf->bytes = bytes;
    *out = buf;
    return TD_OK;
}

static td_status td_cu_buf_wrap(td_backend *b, void *host, size_t bytes, td_buf **out)
{
    (void)host, (void)bytes, (void)out;
    return td_fail(TD_E_UNSUPPORTED, "%s computes in device memory, not in host memory", td_cu_be(b)->name);
}

static void td_cu_buf_free(td_backend *b, td_buf *buf)
{
    if (!buf) return;
    td_cuda_backend *c = td_cu_be(b);
    (void)td_cuda_sync(c->cu); /* queued work may still use it */
    td_cuda_release(c->cu, buf->p);
    td_free(buf);
}

static void *td_cu_buf_host(td_backend *b, td_buf *buf)
{
    (void)b, (void)buf;
    return NULL;
}

static td_status td_cu_kv_new(td_backend *b, int64_t n_ctx, td_kv_type type, td_kv **out)
{
    td_cuda_backend *c = td_cu_be(b);
    const td_hparams *hp = c->hp;
    if (type != TD_KV_F32 && type != TD_KV_BF16) return td_fail(TD_E_ARG, "unknown KV cache type %d", (int)type);
    size_t el = (size_t)td_kv_type_bytes(type);
    td_kv *kv = td_calloc(1, sizeof *kv);
    if (!kv) return td_fail(TD_E_NOMEM, "out of memory");
    kv->type = type;
    kv->n_ctx = n_ctx;
    kv->dev = (td_cuda_kv){.bf16 = type == TD_KV_BF16, .r = hp->kv_lora_rank, .dr = hp->qk_rope_head_dim};
    size_t ckv = (size_t)(n_ctx * hp->kv_lora_rank) * el, krope = (size_t)(n_ctx * hp->qk_rope_head_dim) * el;
    td_status st = td_cuda_alloc(c->cu, ckv, &kv->dev.ckv);
    if (st == TD_OK) st = td_cuda_alloc(c->cu, krope, &kv->dev.krope);
    /* zeroed: rows an MTP rewind skips are read but never written, and must stay finite */
    if (st == TD_OK) st = td_cuda_memset(c->cu, kv->dev.ckv, 0, ckv);
    if (st == TD_OK) st = td_cuda_memset(c->cu, kv->dev.krope, 0, krope);
    if (st != TD_OK) {
        td_cuda_release(c->cu, kv->dev.ckv);
        td_cuda_release(c->cu, kv->dev.krope);
        td_free(kv);
        td_err_context("a KV cache of %lld positions (%s) on %s", (long long)n_ctx, td_kv_type_name(type), c->name);
        return st;
    }
    *out = kv;
    return TD_OK;
}

static void td_cu_kv_free(td_backend *b, td_kv *kv)
{
    if (!kv) return;
    td_cuda_backend *c = td_cu_be(b);
    (void)td_cuda_sync(c->cu);
    td_cuda_release(c->cu, kv->dev.ckv);
    td_cuda_release(c->cu, kv->dev.krope);
    td_free(kv);
}

/* The next staging slot, once the copy that last used it has left. */
static td_status td_cu_stage_slot(td_cuda_backend *c, int *slot)
{
    int s = c->stage_next;
    c->stage_next = (s + 1) % TD_CU_STAGE_SLOTS;
    if (c->stage_used[s]) TD_TRY(td_cu_fail(c, td_cuda_event_wait_host(c->stage_ev[s])));
    *slot = s;
    return TD_OK;
}

static td_status td_cu_to_host(td_backend *b, td_view src, int64_t n, int64_t width, void *dst)
{
    td_cuda_backend *c = td_cu_be(b);
    size_t row = (size_t)width * sizeof(float);
    int64_t per = (int64_t)(c->stage_slot / (row ? row : 1));
    if (per < 1) { /* rows wider than a slot: straight into the (pageable) destination */
        TD_TRY(td_cu_fail(c, td_cuda_d2h(c->cu, dst, row, td_cu_row(src, 0), (size_t)src.stride * sizeof(float), row, (size_t)n)));
        return td_cu_fail(c, td_cuda_sync(c->cu));
    }
    for (int64_t t0 = 0; t0 < n; t0 += per) {
        int64_t m = n - t0 < per ? n - t0 : per;
        TD_TRY(td_cu_fail(c, td_cuda_d2h(c->cu, c->stage, row, td_cu_row(src, t0), (size_t)src.stride * sizeof(float), row,
                                         (size_t)m)));
        TD_TRY(td_cu_fail(c, td_cuda_sync(c->cu)));
        memcpy((uint8_t *)dst + (size_t)t0 * row, c->stage, (size_t)m * row);
    }
    return TD_OK;
}

static td_status td_cu_from_host(td_backend *b, const void *src, int64_t n, int64_t width, td_view dst)
{
    td_cuda_backend *c = td_cu_be(b);
    size_t row = (size_t)width * sizeof(float);
    int64_t per = (int64_t)(c->stage_slot / (row ? row : 1));
    if (per < 1) /* a pageable source is read before the call returns */
        return td_cu_fail(c, td_cuda_h2d(c->cu, td_cu_row(dst, 0), (size_t)dst.stride * sizeof(float), src, row, row, (size_t)n));
    for (int64_t t0 = 0; t0 < n; t0 += per) {
        int64_t m = n - t0 < per ? n - t0 : per;
        int s;
        TD_TRY(td_cu_stage_slot(c, &s));
        uint8_t *slot = c->stage + (size_t)s * c->stage_slot;
        memcpy(slot, (const uint8_t *)src + (size_t)t0 * row, (size_t)m * row);
        TD_TRY(td_cu_fail(c, td_cuda_h2d(c->cu, td_cu_row(dst, t0), (size_t)dst.stride * sizeof(float), slot, row, row,
                                         (size_t)m)));
        TD_TRY(td_cu_fail(c, td_cuda_event_record(c->cu, c->stage_ev[s])));
        c->stage_used[s] = true;
    }
    return TD_OK;
}

static td_status td_cu_sync(td_backend *b)
{
    td_cuda_backend *c = td_cu_be(b);
    return td_cu_fail(c, td_cuda_sync(c->cu));
}

static void td_cu_stats(const td_backend *b, td_backend_stats *out)
{
    const td_cuda_backend *c = (const td_cuda_backend *)b;
    *out = c->stats;
    out->busy_s = td_cuda_busy_seconds(c->cu);
}

/* ------------------------------------------------------------------ life */

static void td_cu_free(td_backend *b)
{
    td_cuda_backend *c = td_cu_be(b);
    if (!c) return;
    if (c->cu) {
        (void)td_cuda_sync(c->cu);
        td_cu_scratch_free(c);
        for (int i = 0; i < c->n_w; i++) td_cuda_release(c->cu, c->w[i].dev);
        for (int l = 0; c->experts && l <= c->hp->n_layers; l++)
            for (int p = 0; p < 3; p++) {
                td_cuda_release(c->cu, (void *)c->experts[l].table[p]);
                td_cuda_release(c->cu, (void *)c->experts[l].scales[p]);
            }
        for (int s = 0; s < TD_CU_STAGE_SLOTS; s++) td_cuda_event_free(c->stage_ev[s]);
        td_cuda_free(c->cu);
    }
    td_cuda_host_release(c->stage);
    td_free(c->w);
    td_free(c->w_hash);
    td_free(c->experts);
    td_free(c);
}

static const td_backend_i td_cuda_backend_i = {
    .name = td_cu_name,
    .free = td_cu_free,
    .supports = td_cu_supports,
    .prepare = td_cu_prepare,
    .reserve = td_cu_reserve,
    .buf_new = td_cu_buf_new,
    .buf_wrap = td_cu_buf_wrap,
    .buf_free = td_cu_buf_free,
    .buf_host = td_cu_buf_host,
    .kv_new = td_cu_kv_new,
    .kv_free = td_cu_kv_free,
    .to_host = td_cu_to_host,
    .from_host = td_cu_from_host,
    .sync = td_cu_sync,
    .copy = td_cu_copy,
    .embed = td_cu_embed,
    .rmsnorm = td_cu_rmsnorm,
    .linear = td_cu_linear,
    .ffn = td_cu_ffn,
    .attention = td_cu_attention,
    .route = td_cu_route,
    .moe_submit = td_cu_moe_submit,
    .moe_wait = td_cu_moe_wait,
    .add = td_cu_add,
    .stats = td_cu_stats,
};

td_status td_backend_cuda_create(const td_model *model, const td_backend_cuda_params *p, int64_t max_rows,
                                 td_backend **out)
{
    *out = NULL;
    td_cuda_backend *c = td_calloc(1, sizeof *c);
    if (!c) return td_fail(TD_E_NOMEM, "out of memory");
    c->base.i = &td_cuda_backend_i;
    c->base.model = model;
    c->base.host_memory = false;
    c->p = *p;
    c->hp = &model->hp;
    c->p_max_rows = max_rows;
    snprintf(c->name, sizeof c->name, "cuda:%d", p->device);
    c->experts = td_calloc((size_t)model->hp.n_layers + 1, sizeof *c->experts);
    td_status st = c->experts ? td_cuda_create(p->device, p->budget, &c->cu) : td_fail(TD_E_NOMEM, "out of memory");
    c->stage_slot = TD_CU_STAGE_SLOT_BYTES;
    if (st == TD_OK) st = td_cuda_host_alloc(c->stage_slot * TD_CU_STAGE_SLOTS, (void **)&c->stage);
    for (int s = 0; st == TD_OK && s < TD_CU_STAGE_SLOTS; s++) st = td_cuda_event_create(c->cu, &c->stage_ev[s]);
    if (st == TD_OK) st = td_cu_hash_rebuild(c, 1024);
    if (st != TD_OK) {
        td_cu_free(&c->base);
        return st;
    }
    *out = &c->base;
    return TD_OK;
}

uint64_t td_backend_cuda_allocated(const td_backend *b) { return td_cuda_allocated(((const td_cuda_backend *)b)->cu); }

td_status td_backend_cuda_inject_fault(td_backend *b)
{
    td_cuda_backend *c = td_cu_be(b);
    if (!c->op) td_cu_issue(c, "test fault", NULL);
    return td_cu_fail(c, td_cuda_inject_fault(c->cu));
}

#endif
