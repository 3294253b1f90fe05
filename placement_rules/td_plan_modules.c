/* The module list of a plan, built from the hyperparameters alone: the tensors td_model_build expects, in
 * its order, each with a type from the model's headers (td_tensor_dir) or from --assume-type. No weight
 * byte is read. */
#include "td_plan_impl.h"

#include "td_alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

bool td_assume_type_from_name(const char *name, td_assume_type *out)
{
    for (int t = 1; t < TD_ASSUME_COUNT; t++)
        if (strcasecmp(name, td_assume_type_name((td_assume_type)t)) == 0) {
            *out = (td_assume_type)t;
            return true;
        }
    return false;
}

const char *td_assume_type_name(td_assume_type t)
{
    static const char *const names[TD_ASSUME_COUNT] = {
        [TD_ASSUME_NONE] = "none", [TD_ASSUME_Q4_K] = "q4_k", [TD_ASSUME_Q4_K_M] = "q4_k_m",
        [TD_ASSUME_Q8_0] = "q8_0", [TD_ASSUME_BF16] = "bf16", [TD_ASSUME_FP8] = "fp8",
    };
    return (t >= 0 && t < TD_ASSUME_COUNT) ? names[t] : "?";
}

typedef enum td_role {
    TD_ROLE_MATRIX = 0, /* a projection */
    TD_ROLE_EMBED = 1,
    TD_ROLE_HEAD = 2,
    TD_ROLE_ROUTER = 3, /* mlp.gate.weight */
    TD_ROLE_NORM = 4,
    TD_ROLE_BIAS = 5,
    TD_ROLE_COUNT
} td_role;

typedef struct td_mb {
    const td_plan_params *p;
    const td_hparams *hp;
    td_plan_module *mods;
    td_plan_extra *extra;
    int n, cap;
    td_plan_module *cur;
    td_plan_extra *cur_x;
    uint64_t cur_largest;
    int layer;      /* layer of the tensors being added */
    bool upgrade;   /* q4_k_m: this tensor gets more bits */
} td_mb;

static int64_t td_gcd(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* llama.cpp's Q4_K_M gives more bits to the first and last eighth of the layers and every third between. */
static bool td_more_bits(int layer, int n_layers)
{
    int e = n_layers / 8;
    return layer < e || layer >= 7 * n_layers / 8 || (layer - e) % 3 == 2;
}

static td_type td_assumed(const td_mb *b, td_role role, int64_t cols)
{
    td_type t;
    switch (b->p->assume_type) {
    case TD_ASSUME_Q4_K_M:
        if (role == TD_ROLE_HEAD || (role == TD_ROLE_MATRIX && b->upgrade)) t = TD_TYPE_Q6_K;
        else t = role <= TD_ROLE_HEAD ? TD_TYPE_Q4_K : TD_TYPE_F32;
        break;
    case TD_ASSUME_Q4_K: t = role <= TD_ROLE_HEAD ? TD_TYPE_Q4_K : TD_TYPE_F32; break;
    case TD_ASSUME_Q8_0: t = role <= TD_ROLE_HEAD ? TD_TYPE_Q8_0 : TD_TYPE_F32; break;
    case TD_ASSUME_BF16: t = role == TD_ROLE_BIAS ? TD_TYPE_F32 : TD_TYPE_BF16; break;
    case TD_ASSUME_FP8:
        t = role == TD_ROLE_MATRIX ? TD_TYPE_F8_E4M3 : role == TD_ROLE_BIAS ? TD_TYPE_F32 : TD_TYPE_BF16;
        break;
    default: t = TD_TYPE_F32; break;
    }
    /* rows that are not whole blocks fall back, as llama.cpp's quantizer does */
    while (!td_type_row_ok(t, cols)) {
        if (t == TD_TYPE_Q4_K || t == TD_TYPE_Q6_K) t = TD_TYPE_Q5_0;
        else if (t == TD_TYPE_Q5_0) t = TD_TYPE_Q8_0;
        else t = TD_TYPE_F16;
    }
    return t;
}

static td_status td_mb_module(td_mb *b, td_module_kind kind, int layer, const char *fmt, ...) TD_PRINTF(4, 5);
static td_status td_mb_module(td_mb *b, td_module_kind kind, int layer, const char *fmt, ...)
{
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 64;
        td_plan_module *m = td_realloc(b->mods, (size_t)cap * sizeof *m);
        if (!m) return td_fail(TD_E_NOMEM, "out of memory");
        b->mods = m;
        td_plan_extra *x = td_realloc(b->extra, (size_t)cap * sizeof *x);
        if (!x) return td_fail(TD_E_NOMEM, "out of memory");
        b->extra = x;
        b->cap = cap;
    }
    b->cur = &b->mods[b->n];
    b->cur_x = &b->extra[b->n];
    b->n++;
    memset(b->cur, 0, sizeof *b->cur);
    memset(b->cur_x, 0, sizeof *b->cur_x);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->cur->m.name, sizeof b->cur->m.name, fmt, ap);
    va_end(ap);
    b->cur->m.kind = kind;
    b->cur->m.layer = layer;
    b->cur->type = TD_TYPE_F32;
    b->cur_largest = 0;
    return TD_OK;
}

static td_status td_mb_count(td_mb *b, const char *name, td_type type, int64_t elems, bool matrix)
{
    uint64_t bytes;
    if (!td_type_nbytes(type, elems, &bytes))
        return td_fail(TD_E_FORMAT, "tensor '%s': %lld elements are not whole %s blocks", name, (long long)elems,
                       td_type_name(type));
    b->cur->m.bytes += bytes;
    b->cur->m.params += elems;
    if (matrix) {
        b->cur_x->type_bytes[type] += bytes;
        b->cur_x->matrix_bytes += bytes;
        b->cur_x->matrix_elems += elems;
    } else {
        b->cur_x->other_bytes += bytes;
    }
    if (bytes > b->cur_largest) {
        b->cur_largest = bytes;
        b->cur->type = type;
    }
    return TD_OK;
}

/* The type of a tensor the hyperparameters say exists: from the headers (which must hold it, with the
 * expected size) or assumed. */
static td_status td_mb_type(td_mb *b, const char *name, int64_t elems, int64_t cols, td_role role, td_type *type,
                            const td_tensor **t)
{
    *t = NULL;
    if (b->p->dir) {
        *t = td_tensor_dir_find(b->p->dir, name);
        if (!*t)
            return td_fail(TD_E_NOT_FOUND, "tensor '%s' is missing from the model (not DeepSeek-V3 shaped?)", name);
        if (td_tensor_numel(*t) != elems || (*t)->ndim < 1 || (*t)->shape[(*t)->ndim - 1] != cols) {
            char got[96];
            return td_fail(TD_E_FORMAT, "tensor '%s' has shape %s; config.json implies %lld elements in rows of %lld",
                           name, td_tensor_shape_str(*t, got, sizeof got), (long long)elems, (long long)cols);
        }
    }
    *type = (b->p->assume_type != TD_ASSUME_NONE || !*t) ? td_assumed(b, role, cols) : (*t)->type;
    return TD_OK;
}

static td_status td_mb_matrix(td_mb *b, const char *name, int64_t rows, int64_t cols, td_role role)
{
    td_type type;
    const td_tensor *t;
    TD_TRY(td_mb_type(b, name, rows * cols, cols, role, &type, &t));
    TD_TRY(td_mb_count(b, name, type, rows * cols, true));
    b->cur_x->row_gcd = td_gcd(b->cur_x->row_gcd, cols);
    if (type != TD_TYPE_F8_E4M3) return TD_OK;
    /* FP8 block scales: one f32 per block */
    char sname[160];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    int br = b->hp->quant.present ? b->hp->quant.weight_block_size[0] : 128;
    int bc = b->hp->quant.present ? b->hp->quant.weight_block_size[1] : 128;
    if (t && b->p->assume_type == TD_ASSUME_NONE) {
        const td_tensor *s = td_tensor_dir_find(b->p->dir, sname);
        if (!s) return td_fail(TD_E_NOT_FOUND, "FP8 tensor '%s' has no '%s' (block scales are required)", name, sname);
        int64_t sr = 1;
        for (int i = 0; i < t->ndim - 1; i++) sr *= t->shape[i];
        return td_mb_count(b, sname, s->type, ((sr + br - 1) / br) * ((cols + bc - 1) / bc), true);
    }
    return td_mb_count(b, sname, TD_TYPE_F32, ((rows + br - 1) / br) * ((cols + bc - 1) / bc), true);
}

static td_status td_mb_vector(td_mb *b, const char *name, int64_t n, td_role role)
{
    td_type type;
    const td_tensor *t;
    TD_TRY(td_mb_type(b, name, n, n, role, &type, &t));
    return td_mb_count(b, name, type, n, false);
}

static bool td_mb_has(const td_mb *b, const char *name)
{
    return b->p->dir && td_tensor_dir_find(b->p->dir, name) != NULL;
}

/* ------------------------------------------------------------------ the structure (td_model_build's) */

static td_status td_mb_ffn(td_mb *b, const char *prefix, int64_t width)
{
    int64_t H = b->hp->hidden_size;
    char n[160];
    bool upgrade = b->upgrade;
    b->upgrade = false;
    snprintf(n, sizeof n, "%s.gate_proj.weight", prefix);
    TD_TRY(td_mb_matrix(b, n, width, H, TD_ROLE_MATRIX));
    snprintf(n, sizeof n, "%s.up_proj.weight", prefix);
    TD_TRY(td_mb_matrix(b, n, width, H, TD_ROLE_MATRIX));
    b->upgrade = upgrade; /* q4_k_m upgrades the down projection */
    snprintf(n, sizeof n, "%s.down_proj.weight", prefix);
    TD_TRY(td_mb_matrix(b, n, H, width, TD_ROLE_MATRIX));
    b->upgrade = false;
    return TD_OK;
}

static td_status td_mb_attn(td_mb *b, const char *p, int layer)
{
    const td_hparams *hp = b->hp;
    int64_t H = hp->hidden_size, nh = hp->n_heads, r = hp->kv_lora_rank;
    int64_t dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim;
    char n[160];
    TD_TRY(td_mb_module(b, TD_MODULE_ATTN, layer, "%s.self_attn", p));
    snprintf(n, sizeof n, "%s.input_layernorm.weight", p);
    TD_TRY(td_mb_vector(b, n, H, TD_ROLE_NORM));
    if (hp->q_lora_rank) {
        snprintf(n, sizeof n, "%s.self_attn.q_a_proj.weight", p);
        TD_TRY(td_mb_matrix(b, n, hp->q_lora_rank, H, TD_ROLE_MATRIX));
        snprintf(n, sizeof n, "%s.self_attn.q_a_layernorm.weight", p);
        TD_TRY(td_mb_vector(b, n, hp->q_lora_rank, TD_ROLE_NORM));
        snprintf(n, sizeof n, "%s.self_attn.q_b_proj.weight", p);
        TD_TRY(td_mb_matrix(b, n, nh * (dn + dr), hp->q_lora_rank, TD_ROLE_MATRIX));
    } else {
        snprintf(n, sizeof n, "%s.self_attn.q_proj.weight", p);
        TD_TRY(td_mb_matrix(b, n, nh * (dn + dr), H, TD_ROLE_MATRIX));
    }
    snprintf(n, sizeof n, "%s.self_attn.kv_a_proj_with_mqa.weight", p);
    TD_TRY(td_mb_matrix(b, n, r + dr, H, TD_ROLE_MATRIX));
    snprintf(n, sizeof n, "%s.self_attn.kv_a_layernorm.weight", p);
    TD_TRY(td_mb_vector(b, n, r, TD_ROLE_NORM));
    snprintf(n, sizeof n, "%s.self_attn.kv_b_proj.weight", p);
    b->upgrade = b->p->assume_type == TD_ASSUME_Q4_K_M && td_more_bits(layer, hp->n_layers);
    char kb[160];
    snprintf(kb, sizeof kb, "%s.self_attn.k_b_proj.weight", p);
    if (!b->p->dir || td_mb_has(b, n) || !td_mb_has(b, kb)) {
        TD_TRY(td_mb_matrix(b, n, nh * (dn + dv), r, TD_ROLE_MATRIX));
    } else { /* MLA-era GGUF: W_UK and W_UV apart */
        TD_TRY(td_mb_matrix(b, kb, nh * r, dn, TD_ROLE_MATRIX));
        snprintf(n, sizeof n, "%s.self_attn.v_b_proj.weight", p);
        TD_TRY(td_mb_matrix(b, n, nh * dv, r, TD_ROLE_MATRIX));
    }
    b->upgrade = false;
    snprintf(n, sizeof n, "%s.self_attn.o_proj.weight", p);
    TD_TRY(td_mb_matrix(b, n, H, nh * dv, TD_ROLE_MATRIX));
    snprintf(n, sizeof n, "%s.post_attention_layernorm.weight", p); /* counted with the attention, as td_model does */
    return td_mb_vector(b, n, H, TD_ROLE_NORM);
}

static td_status td_mb_mlp(td_mb *b, const char *p, int layer)
{
    const td_hparams *hp = b->hp;
    int64_t H = hp->hidden_size;
    char n[160];
    bool upgrade = b->p->assume_type == TD_ASSUME_Q4_K_M && td_more_bits(layer, hp->n_layers);
    if (!td_hparams_layer_is_moe(hp, layer)) {
        TD_TRY(td_mb_module(b, TD_MODULE_DENSE_MLP, layer, "%s.mlp", p));
        snprintf(n, sizeof n, "%s.mlp", p);
        b->upgrade = upgrade;
        return td_mb_ffn(b, n, hp->intermediate_size);
    }
    int E = hp->n_routed_experts;
    TD_TRY(td_mb_module(b, TD_MODULE_ROUTER, layer, "%s.mlp.gate", p));
    snprintf(n, sizeof n, "%s.mlp.gate.weight", p);
    TD_TRY(td_mb_matrix(b, n, E, H, TD_ROLE_ROUTER));
    if (hp->topk_method == TD_TOPK_NOAUX_TC) {
        snprintf(n, sizeof n, "%s.mlp.gate.e_score_correction_bias", p);
        TD_TRY(td_mb_vector(b, n, E, TD_ROLE_BIAS));
    }
    TD_TRY(td_mb_module(b, TD_MODULE_EXPERTS, layer, "%s.mlp.experts", p));
    b->cur_x->n_experts = E;
    for (int e = 0; e < E; e++) {
        snprintf(n, sizeof n, "%s.mlp.experts.%d", p, e);
        b->upgrade = upgrade;
        TD_TRY(td_mb_ffn(b, n, hp->moe_intermediate_size));
    }
    if (hp->n_shared_experts > 0) {
        TD_TRY(td_mb_module(b, TD_MODULE_SHARED_EXPERTS, layer, "%s.mlp.shared_experts", p));
        snprintf(n, sizeof n, "%s.mlp.shared_experts", p);
        b->upgrade = upgrade;
        TD_TRY(td_mb_ffn(b, n, hp->moe_intermediate_size * hp->n_shared_experts));
    }
    return TD_OK;
}

static td_status td_mb_layer(td_mb *b, int layer)
{
    char p[64];
    snprintf(p, sizeof p, "model.layers.%d", layer);
    b->layer = layer;
    TD_TRY(td_mb_attn(b, p, layer));
    return td_mb_mlp(b, p, layer);
}

/* The MTP block when the file has it (or, planning from a config, when the config says the checkpoint
 * has one: the official layout, with its own embedding and head). */
static td_status td_mb_mtp(td_mb *b, bool *has_mtp)
{
    const td_hparams *hp = b->hp;
    int L = hp->n_layers;
    int64_t H = hp->hidden_size, V = hp->vocab_size;
    char n[160];
    snprintf(n, sizeof n, "model.layers.%d.eh_proj.weight", L);
    *has_mtp = !b->p->no_mtp && (b->p->dir ? td_mb_has(b, n) : hp->n_nextn_layers > 0);
    if (!*has_mtp) return TD_OK;
    TD_TRY(td_mb_module(b, TD_MODULE_MTP, L, "model.layers.%d", L));
    snprintf(n, sizeof n, "model.layers.%d.enorm.weight", L);
    TD_TRY(td_mb_vector(b, n, H, TD_ROLE_NORM));
    snprintf(n, sizeof n, "model.layers.%d.hnorm.weight", L);
    TD_TRY(td_mb_vector(b, n, H, TD_ROLE_NORM));
    snprintf(n, sizeof n, "model.layers.%d.eh_proj.weight", L);
    TD_TRY(td_mb_matrix(b, n, H, 2 * H, TD_ROLE_MATRIX));
    snprintf(n, sizeof n, "model.layers.%d.shared_head.norm.weight", L);
    TD_TRY(td_mb_vector(b, n, H, TD_ROLE_NORM));
    snprintf(n, sizeof n, "model.layers.%d.embed_tokens.weight", L);
    if (!b->p->dir || td_mb_has(b, n)) TD_TRY(td_mb_matrix(b, n, V, H, TD_ROLE_EMBED));
    snprintf(n, sizeof n, "model.layers.%d.shared_head.head.weight", L);
    if (!b->p->dir || td_mb_has(b, n)) TD_TRY(td_mb_matrix(b, n, V, H, TD_ROLE_HEAD));
    return td_mb_layer(b, L);
}

static td_status td_mb_all(td_mb *b, bool *has_mtp)
{
    const td_hparams *hp = b->hp;
    int64_t H = hp->hidden_size, V = hp->vocab_size;
    TD_TRY(td_mb_module(b, TD_MODULE_EMBED, -1, "model.embed_tokens"));
    TD_TRY(td_mb_matrix(b, "model.embed_tokens.weight", V, H, TD_ROLE_EMBED));
    for (int l = 0; l < hp->n_layers; l++) TD_TRY(td_mb_layer(b, l));
    TD_TRY(td_mb_module(b, TD_MODULE_NORM, -1, "model.norm"));
    TD_TRY(td_mb_vector(b, "model.norm.weight", H, TD_ROLE_NORM));
    TD_TRY(td_mb_module(b, TD_MODULE_HEAD, -1, "lm_head"));
    bool has_head = b->p->dir ? td_mb_has(b, "lm_head.weight") : !hp->tie_word_embeddings;
    if (has_head) TD_TRY(td_mb_matrix(b, "lm_head.weight", V, H, TD_ROLE_HEAD));
    else if (!hp->tie_word_embeddings)
        return td_fail(TD_E_NOT_FOUND, "tensor 'lm_head.weight' is missing from the model (not DeepSeek-V3 shaped?)");
    return td_mb_mtp(b, has_mtp);
}

/* The types a table shows: the projections' two biggest (FP8 scales aside), else the largest tensor's. */
static void td_mb_types(td_plan_module *pm, const td_plan_extra *x)
{
    pm->type2 = TD_TYPE_COUNT;
    td_type first = TD_TYPE_COUNT;
    for (int t = 0; t < TD_TYPE_COUNT; t++) {
        if (!x->type_bytes[t] || (t == TD_TYPE_F32 && x->type_bytes[TD_TYPE_F8_E4M3])) continue;
        if (first == TD_TYPE_COUNT || x->type_bytes[t] > x->type_bytes[first]) {
            pm->type2 = first;
            first = (td_type)t;
        } else if (pm->type2 == TD_TYPE_COUNT || x->type_bytes[t] > x->type_bytes[pm->type2]) {
            pm->type2 = (td_type)t;
        }
    }
    if (first != TD_TYPE_COUNT) pm->type = first;
}

td_status td_plan_modules(const td_plan_params *p, td_plan_module **mods, td_plan_extra **extra, int *n,
                          bool *has_mtp)
{
    td_mb b = {.p = p, .hp = p->hp};
    td_status st = td_mb_all(&b, has_mtp);
    if (st != TD_OK) {
        td_free(b.mods);
        td_free(b.extra);
        return st;
    }
    for (int i = 0; i < b.n; i++) td_mb_types(&b.mods[i], &b.extra[i]);
    *mods = b.mods;
    *extra = b.extra;
    *n = b.n;
    return TD_OK;
}
