/* Arranges a filled tensor directory into per-layer weights and the module tree, checking every
 * tensor's presence, type and shape against the hyperparameters. */
#include "td_model.h"

#include "td_alloc.h"
#include "td_dequant.h"
#include "td_finite.h"
#include "td_gguf_model.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct td_builder {
    td_model *m;
    const char *src; /* model path, for messages */
    td_module *mod;  /* module whose bytes are being counted, or NULL */
} td_builder;

static const td_tensor *td_b_find(td_builder *b, const char *name)
{
    return td_tensor_dir_find(b->m->dir, name);
}

static void td_b_count(td_builder *b, const td_tensor *t)
{
    if (!b->mod) return;
    b->mod->bytes += t->nbytes;
    b->mod->params += td_tensor_numel(t);
}

static td_status td_b_missing(td_builder *b, const char *name)
{
    return td_fail(TD_E_NOT_FOUND, "%s: tensor '%s' is missing (the checkpoint is incomplete or not DeepSeek-V3 shaped)",
                   b->src, name);
}

static bool td_b_is_gguf(const td_builder *b)
{
    return strcmp(b->m->format, "gguf") == 0;
}

/* A tensor as the user's file names it: a GGUF's own name first ("blk.2.ffn_norm.weight
 * (model.layers.2.post_attention_layernorm.weight)"), the checkpoint's name otherwise. */
static const char *td_b_shown(const td_builder *b, const char *name, char *buf, size_t cap)
{
    char gguf[256];
    int expert;
    if (!td_b_is_gguf(b) || !td_gguf_name_from_hf(name, gguf, sizeof gguf, &expert)) return name;
    if (expert >= 0) snprintf(buf, cap, "%s, expert %d (%s)", gguf, expert, name);
    else snprintf(buf, cap, "%s (%s)", gguf, name);
    return buf;
}

static td_status td_b_shape_error(td_builder *b, const td_tensor *t, const char *want)
{
    char got[96], shown[600];
    const char *hint = td_b_is_gguf(b) ? "the file's deepseek2.* metadata disagrees with its tensors: a corrupt or "
                                         "mis-converted GGUF?"
                                       : "does config.json match the weights?";
    return td_fail(TD_E_FORMAT, "%s: tensor '%s' has shape %s, expected %s (%s)", b->src,
                   td_b_shown(b, t->name, shown, sizeof shown), td_tensor_shape_str(t, got, sizeof got), want, hint);
}

static td_status td_b_fp8_scale(td_builder *b, const td_tensor *t, td_matrix *out)
{
    char sname[256];
    snprintf(sname, sizeof sname, "%s_scale_inv", t->name);
    const td_tensor *s = td_b_find(b, sname);
    if (!s)
        return td_fail(TD_E_NOT_FOUND, "%s: FP8 tensor '%s' has no '%s' (block scales are required)", b->src, t->name,
                       sname);
    int br = b->m->hp.quant.present ? b->m->hp.quant.weight_block_size[0] : 128;
    int bc = b->m->hp.quant.present ? b->m->hp.quant.weight_block_size[1] : 128;
    int64_t rows = t->shape[0], cols = t->shape[t->ndim - 1];
    for (int i = 1; i < t->ndim - 1; i++) rows *= t->shape[i];
    int64_t want_r = (rows + br - 1) / br, want_c = (cols + bc - 1) / bc;
    if (s->type != TD_TYPE_F32 || s->ndim != 2 || s->shape[0] != want_r || s->shape[1] != want_c) {
        char want[64];
        snprintf(want, sizeof want, "F32 [%lld, %lld] (one scale per %dx%d block)", (long long)want_r,
                 (long long)want_c, br, bc);
        return td_b_shape_error(b, s, want);
    }
    out->scale_inv = s->data;
    out->scale_rows = want_r;
    out->scale_cols = want_c;
    out->scale_row0 = 0;
    out->scale_block[0] = br;
    out->scale_block[1] = bc;
    td_b_count(b, s);
    return TD_OK;
}

/* A weight of `rows` x `cols`; 3-D tensors [a, b, cols] are taken as (a*b) x cols. */
static td_status td_b_matrix(td_builder *b, const char *name, int64_t rows, int64_t cols, td_matrix *out)
{
    const td_tensor *t = td_b_find(b, name);
    if (!t) return td_b_missing(b, name);
    int64_t r = t->ndim >= 1 ? t->shape[0] : 1;
    for (int i = 1; i < t->ndim - 1; i++) r *= t->shape[i];
    int64_t c = t->ndim >= 2 ? t->shape[t->ndim - 1] : 0;
    if (t->ndim < 2 || t->ndim > 3 || r != rows || c != cols) {
        char want[64];
        snprintf(want, sizeof want, "[%lld, %lld]", (long long)rows, (long long)cols);
        return td_b_shape_error(b, t, want);
    }
    if (!td_type_computable(t->type))
        return td_fail(TD_E_UNSUPPORTED, "%s: tensor '%s' is stored as %s, which tandem cannot compute with", b->src,
                       name, td_type_name(t->type));
    if (!td_type_row_ok(t->type, cols))
        return td_fail(TD_E_FORMAT, "%s: tensor '%s': rows of %lld elements are not whole %s blocks", b->src, name,
                       (long long)cols, td_type_name(t->type));
    memset(out, 0, sizeof *out);
    out->type = t->type;
    out->rows = rows;
    out->cols = cols;
    out->data = t->data;
    out->row_bytes = td_type_row_bytes(t->type, cols);
    out->name = t->name;
    if ((uint64_t)out->row_bytes * (uint64_t)rows != t->nbytes)
        return td_fail(TD_E_FORMAT, "%s: tensor '%s' holds %llu bytes, its shape needs %llu", b->src, name,
                       (unsigned long long)t->nbytes, (unsigned long long)out->row_bytes * (unsigned long long)rows);
    td_b_count(b, t);
    if (t->type == TD_TYPE_F8_E4M3) TD_TRY(td_b_fp8_scale(b, t, out));
    if (cols > b->m->max_cols) b->m->max_cols = cols;
    return TD_OK;
}

static td_status td_b_own(td_builder *b, void *p)
{
    td_model *m = b->m;
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **n = td_realloc(m->owned, (size_t)cap * sizeof *n);
        if (!n) {
            td_free(p);
            return td_fail(TD_E_NOMEM, "out of memory");
        }
        m->owned = n;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return TD_OK;
}

/* Norms, biases and the router are small and every token passes through them, so one NaN or Inf there
 * (a damaged file) is refused at load, by name, rather than met as empty output later. */
static td_status td_b_finite(td_builder *b, const char *name, const float *v, int64_t n, int64_t first_index)
{
    int64_t i = td_first_nonfinite(v, n);
    if (i < 0) return TD_OK;
    char shown[600];
    return td_fail(TD_E_FORMAT,
                   "%s: tensor '%s' holds non-finite (NaN/Inf) values (element %lld is %g): the file is damaged; "
                   "download or convert it again",
                   b->src, td_b_shown(b, name, shown, sizeof shown), (long long)(first_index + i), (double)v[i]);
}

static td_status td_b_finite_matrix(td_builder *b, const td_matrix *w)
{
    float *row = td_malloc((size_t)w->cols * sizeof *row);
    if (!row) return td_fail(TD_E_NOMEM, "out of memory");
    td_status st = TD_OK;
    for (int64_t r = 0; r < w->rows && st == TD_OK; r++) {
        td_matrix_dequant_row(w, r, row);
        st = td_b_finite(b, w->name, row, w->cols, r * w->cols);
    }
    td_free(row);
    return st;
}

/* A 1-D float vector of n elements, converted to an owned float32 copy. */
static td_status td_b_vector(td_builder *b, const char *name, int64_t n, const float **out)
{
    const td_tensor *t = td_b_find(b, name);
    if (!t) return td_b_missing(b, name);
    if (t->ndim != 1 || t->shape[0] != n) {
        char want[32];
        snprintf(want, sizeof want, "[%lld]", (long long)n);
        return td_b_shape_error(b, t, want);
    }
    td_to_float_fn f = td_to_float(t->type);
    if (!f || !td_type_row_ok(t->type, n))
        return td_fail(TD_E_UNSUPPORTED, "%s: vector '%s' is stored as %s; expected a float type", b->src, name,
                       td_type_name(t->type));
    float *v = td_malloc((size_t)n * sizeof *v);
    if (!v) return td_fail(TD_E_NOMEM, "out of memory");
    f(t->data, v, n);
    TD_TRY(td_b_own(b, v));
    TD_TRY(td_b_finite(b, name, v, n, 0));
    td_b_count(b, t);
    *out = v;
    return TD_OK;
}

static td_module *td_b_module(td_builder *b, td_module_kind kind, int layer, const char *fmt, ...)
    TD_PRINTF(4, 5);
static td_module *td_b_module(td_builder *b, td_module_kind kind, int layer, const char *fmt, ...)
{
    td_module *mod = &b->m->modules[b->m->n_modules++];
    memset(mod, 0, sizeof *mod);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mod->name, sizeof mod->name, fmt, ap);
    va_end(ap);
    mod->kind = kind;
    mod->layer = layer;
    b->mod = mod;
    return mod;
}

static td_status td_b_ffn(td_builder *b, const char *prefix, int64_t width, td_ffn_weights *f)
{
    int64_t H = b->m->hp.hidden_size;
    char n[256];
    snprintf(n, sizeof n, "%s.gate_proj.weight", prefix);
    TD_TRY(td_b_matrix(b, n, width, H, &f->gate));
    snprintf(n, sizeof n, "%s.up_proj.weight", prefix);
    TD_TRY(td_b_matrix(b, n, width, H, &f->up));
    snprintf(n, sizeof n, "%s.down_proj.weight", prefix);
    TD_TRY(td_b_matrix(b, n, H, width, &f->down));
    return TD_OK;
}

static td_status td_b_attn(td_builder *b, const char *p, int layer, td_attn_weights *a)
{
    const td_hparams *hp = &b->m->hp;
    int64_t H = hp->hidden_size, nh = hp->n_heads, r = hp->kv_lora_rank;
    int64_t dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim;
    char n[256];
    td_b_module(b, TD_MODULE_ATTN, layer, "%s.self_attn", p);
    snprintf(n, sizeof n, "%s.input_layernorm.weight", p);
    TD_TRY(td_b_vector(b, n, H, &a->norm));
    if (hp->q_lora_rank) {
        snprintf(n, sizeof n, "%s.self_attn.q_a_proj.weight", p);
        TD_TRY(td_b_matrix(b, n, hp->q_lora_rank, H, &a->q_a));
        snprintf(n, sizeof n, "%s.self_attn.q_a_layernorm.weight", p);
        TD_TRY(td_b_vector(b, n, hp->q_lora_rank, &a->q_a_norm));
        snprintf(n, sizeof n, "%s.self_attn.q_b_proj.weight", p);
        TD_TRY(td_b_matrix(b, n, nh * (dn + dr), hp->q_lora_rank, &a->q_b));
    } else {
        snprintf(n, sizeof n, "%s.self_attn.q_proj.weight", p);
        TD_TRY(td_b_matrix(b, n, nh * (dn + dr), H, &a->q));
    }
    snprintf(n, sizeof n, "%s.self_attn.kv_a_proj_with_mqa.weight", p);
    TD_TRY(td_b_matrix(b, n, r + dr, H, &a->kv_a));
    snprintf(n, sizeof n, "%s.self_attn.kv_a_layernorm.weight", p);
    TD_TRY(td_b_vector(b, n, r, &a->kv_a_norm));
    snprintf(n, sizeof n, "%s.self_attn.kv_b_proj.weight", p);
    if (td_b_find(b, n)) {
        TD_TRY(td_b_matrix(b, n, nh * (dn + dv), r, &a->kv_b));
    } else {
        a->split_kv_b = true;
        snprintf(n, sizeof n, "%s.self_attn.k_b_proj.weight", p);
        if (!td_b_find(b, n)) {
            snprintf(n, sizeof n, "%s.self_attn.kv_b_proj.weight", p);
            return td_b_missing(b, n);
        }
        TD_TRY(td_b_matrix(b, n, nh * r, dn, &a->k_b));
        snprintf(n, sizeof n, "%s.self_attn.v_b_proj.weight", p);
        TD_TRY(td_b_matrix(b, n, nh * dv, r, &a->v_b));
    }
    snprintf(n, sizeof n, "%s.self_attn.o_proj.weight", p);
    TD_TRY(td_b_matrix(b, n, H, nh * dv, &a->o));
    return TD_OK;
}

static td_status td_b_mlp(td_builder *b, const char *p, int layer, td_layer_weights *l)
{
    const td_hparams *hp = &b->m->hp;
    int64_t H = hp->hidden_size;
    char n[256];
    snprintf(n, sizeof n, "%s.post_attention_layernorm.weight", p);
    TD_TRY(td_b_vector(b, n, H, &l->ffn_norm)); /* counted with the attention module */
    if (!l->is_moe) {
        td_b_module(b, TD_MODULE_DENSE_MLP, layer, "%s.mlp", p);
        snprintf(n, sizeof n, "%s.mlp", p);
        return td_b_ffn(b, n, hp->intermediate_size, &l->dense);
    }
    int E = hp->n_routed_experts;
    td_moe_weights *moe = &l->moe;
    td_b_module(b, TD_MODULE_ROUTER, layer, "%s.mlp.gate", p);
    snprintf(n, sizeof n, "%s.mlp.gate.weight", p);
    TD_TRY(td_b_matrix(b, n, E, H, &moe->router));
    TD_TRY(td_b_finite_matrix(b, &moe->router));
    if (hp->topk_method == TD_TOPK_NOAUX_TC) {
        snprintf(n, sizeof n, "%s.mlp.gate.e_score_correction_bias", p);
        TD_TRY(td_b_vector(b, n, E, &moe->bias));
    }
    moe->experts = td_calloc((size_t)E, sizeof *moe->experts);
    if (!moe->experts) return td_fail(TD_E_NOMEM, "out of memory");
    TD_TRY(td_b_own(b, moe->experts));
    td_b_module(b, TD_MODULE_EXPERTS, layer, "%s.mlp.experts", p);
    for (int e = 0; e < E; e++) {
        snprintf(n, sizeof n, "%s.mlp.experts.%d", p, e);
        TD_TRY(td_b_ffn(b, n, hp->moe_intermediate_size, &moe->experts[e]));
    }
    if (hp->n_shared_experts > 0) {
        td_b_module(b, TD_MODULE_SHARED_EXPERTS, layer, "%s.mlp.shared_experts", p);
        snprintf(n, sizeof n, "%s.mlp.shared_experts", p);
        TD_TRY(td_b_ffn(b, n, hp->moe_intermediate_size * hp->n_shared_experts, &moe->shared));
        moe->has_shared = true;
    }
    return TD_OK;
}

static td_status td_b_layer(td_builder *b, int layer, td_layer_weights *l)
{
    char p[64];
    snprintf(p, sizeof p, "model.layers.%d", layer);
    l->index = layer;
    l->is_moe = td_hparams_layer_is_moe(&b->m->hp, layer);
    TD_TRY(td_b_attn(b, p, layer, &l->attn));
    return td_b_mlp(b, p, layer, l);
}

static td_status td_b_mtp(td_builder *b)
{
    td_model *m = b->m;
    int L = m->hp.n_layers;
    int64_t H = m->hp.hidden_size, V = m->hp.vocab_size;
    char n[256];
    snprintf(n, sizeof n, "model.layers.%d.eh_proj.weight", L);
    if (!td_b_find(b, n)) {
        m->hp.n_nextn_layers = 0; /* the file dropped the block (most published GGUFs do) */
        return TD_OK;
    }
    td_mtp_weights *t = td_calloc(1, sizeof *t);
    if (!t) return td_fail(TD_E_NOMEM, "out of memory");
    TD_TRY(td_b_own(b, t));
    td_b_module(b, TD_MODULE_MTP, L, "model.layers.%d", L);
    snprintf(n, sizeof n, "model.layers.%d.enorm.weight", L);
    TD_TRY(td_b_vector(b, n, H, &t->enorm));
    snprintf(n, sizeof n, "model.layers.%d.hnorm.weight", L);
    TD_TRY(td_b_vector(b, n, H, &t->hnorm));
    snprintf(n, sizeof n, "model.layers.%d.eh_proj.weight", L);
    TD_TRY(td_b_matrix(b, n, H, 2 * H, &t->eh_proj));
    snprintf(n, sizeof n, "model.layers.%d.shared_head.norm.weight", L);
    TD_TRY(td_b_vector(b, n, H, &t->head_norm));
    snprintf(n, sizeof n, "model.layers.%d.embed_tokens.weight", L);
    if (td_b_find(b, n)) TD_TRY(td_b_matrix(b, n, V, H, &t->embed));
    else t->embed = m->embed;
    snprintf(n, sizeof n, "model.layers.%d.shared_head.head.weight", L);
    if (td_b_find(b, n)) TD_TRY(td_b_matrix(b, n, V, H, &t->head));
    else t->head = m->head;
    TD_TRY(td_b_layer(b, L, &t->layer));
    m->mtp = t;
    if (m->hp.n_nextn_layers < 1) m->hp.n_nextn_layers = 1;
    return TD_OK;
}

static td_status td_b_all(td_builder *b)
{
    td_model *m = b->m;
    const td_hparams *hp = &m->hp;
    int64_t H = hp->hidden_size, V = hp->vocab_size;
    /* embed + per layer (attn, mlp | router, experts, shared) + norm + head + MTP (5 more) */
    int cap = 3 + 4 * (hp->n_layers + 1) + 5;
    m->modules = td_calloc((size_t)cap, sizeof *m->modules);
    m->layers = td_calloc((size_t)hp->n_layers, sizeof *m->layers);
    if (!m->modules || !m->layers) return td_fail(TD_E_NOMEM, "out of memory");

    td_b_module(b, TD_MODULE_EMBED, -1, "model.embed_tokens");
    TD_TRY(td_b_matrix(b, "model.embed_tokens.weight", V, H, &m->embed));
    for (int l = 0; l < hp->n_layers; l++) TD_TRY(td_b_layer(b, l, &m->layers[l]));
    td_b_module(b, TD_MODULE_NORM, -1, "model.norm");
    TD_TRY(td_b_vector(b, "model.norm.weight", H, &m->norm));
    td_b_module(b, TD_MODULE_HEAD, -1, "lm_head");
    if (td_b_find(b, "lm_head.weight")) TD_TRY(td_b_matrix(b, "lm_head.weight", V, H, &m->head));
    else if (hp->tie_word_embeddings) m->head = m->embed;
    else return td_b_missing(b, "lm_head.weight");
    TD_TRY(td_b_mtp(b));
    b->mod = NULL;
    TD_ASSERT(m->n_modules <= cap);
    return TD_OK;
}

td_status td_model_build(td_hparams *hp, td_tensor_dir *dir, const char *path, const char *format, td_model **out)
{
    *out = NULL;
    td_model *m = td_calloc(1, sizeof *m);
    if (!m) {
        td_tensor_dir_free(dir);
        return td_fail(TD_E_NOMEM, "out of memory");
    }
    m->hp = *hp;
    m->dir = dir;
    m->path = td_strdup(path);
    snprintf(m->format, sizeof m->format, "%s", format);
    td_builder b = {.m = m, .src = path};
    td_status st = m->path ? td_b_all(&b) : td_fail(TD_E_NOMEM, "out of memory");
    if (st != TD_OK) {
        td_model_close(m);
        return st;
    }
    *hp = m->hp;
    *out = m;
    return TD_OK;
}

void td_model_close(td_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) td_free(m->owned[i]);
    td_free(m->owned);
    td_free(m->layers);
    td_free(m->modules);
    td_gguf_close(m->gguf); /* points into the directory's mappings: closed first */
    td_tensor_dir_free(m->dir);
    td_free(m->path);
    td_free(m);
}

const char *td_module_kind_name(td_module_kind k)
{
    static const char *const names[TD_MODULE_KIND_COUNT] = {
        [TD_MODULE_EMBED] = "embedding",     [TD_MODULE_ATTN] = "attention",
        [TD_MODULE_DENSE_MLP] = "dense",     [TD_MODULE_ROUTER] = "router",
        [TD_MODULE_EXPERTS] = "routed experts", [TD_MODULE_SHARED_EXPERTS] = "shared experts",
        [TD_MODULE_NORM] = "norm",           [TD_MODULE_HEAD] = "head",
        [TD_MODULE_MTP] = "mtp",
    };
    return (k >= 0 && k < TD_MODULE_KIND_COUNT) ? names[k] : "?";
}

int64_t td_model_kv_bytes_per_token(const td_model *m, int elem_bytes)
{
    return td_hparams_kv_elems_per_token(&m->hp) * elem_bytes;
}
