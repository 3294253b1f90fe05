#include "td_test_model.h"

#include "td_alloc.h"
#include "td_dequant.h"
#include "td_float.h"
#include "td_randw.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct td_tm {
    td_tensor_dir *dir;
    const td_test_model_params *p;
    uint64_t seed; /* advanced per tensor */
} td_tm;

td_test_model_params td_test_model_v3_params(const char *config)
{
    return (td_test_model_params){.config = config,
                                  .vocab = 256,
                                  .distinct_experts = 8,
                                  .attn_type = TD_TYPE_Q4_K,
                                  .k_b_type = TD_TYPE_Q8_0,
                                  .split_kv_b = true,
                                  .expert_type = TD_TYPE_Q4_K,
                                  .shared_type = TD_TYPE_Q8_0,
                                  .router_type = TD_TYPE_F32,
                                  .embed_type = TD_TYPE_Q4_K,
                                  .head_type = TD_TYPE_BF16,
                                  .seed = 0x7e57};
}

static td_status td_tm_add(td_tm *b, const char *name, td_type type, int ndim, int64_t rows, int64_t cols, void *data,
                           bool owned)
{
    td_tensor t = {.name = name, .type = type, .ndim = ndim, .shape = {rows, cols}, .data = data, .file = -1};
    if (ndim == 1) t.shape[0] = cols;
    t.nbytes = (uint64_t)td_type_row_bytes(type, cols) * (uint64_t)(ndim == 1 ? 1 : rows);
    return owned ? td_tensor_dir_add_owned(b->dir, &t, data) : td_tensor_dir_add(b->dir, &t);
}

/* Multiplies the n values of a float-typed buffer by s (random floats come in [-1, 1)). */
static void td_tm_scale(td_type type, void *data, int64_t n, float s)
{
    for (int64_t i = 0; i < n; i++) {
        if (type == TD_TYPE_F32) {
            ((float *)data)[i] *= s;
        } else if (type == TD_TYPE_BF16) {
            uint16_t *h = (uint16_t *)data + i;
            *h = td_f32_to_bf16(td_bf16_to_f32(*h) * s);
        } else if (type == TD_TYPE_F16) {
            uint16_t *h = (uint16_t *)data + i;
            *h = td_f32_to_f16(td_f16_to_f32(*h) * s);
        }
    }
}

/* A random matrix of valid blocks, added under `name`; *out receives its bytes. */
static td_status td_tm_matrix(td_tm *b, const char *name, td_type type, int64_t rows, int64_t cols, void **out)
{
    size_t bytes = td_type_row_bytes(type, cols) * (size_t)rows;
    void *d = td_malloc_aligned(bytes, 64);
    if (!d) return td_fail(TD_E_NOMEM, "out of memory for the test model's %s (%zu bytes)", name, bytes);
    td_randw_fill(type, d, bytes, b->seed++, 0);
    if (out) *out = d;
    return td_tm_add(b, name, type, 2, rows, cols, d, true);
}

/* The root mean square of a matrix's values, over its first rows. */
static double td_tm_rms(const td_tensor_dir *dir, const char *name)
{
    const td_tensor *t = td_tensor_dir_find(dir, name);
    int64_t cols = t->shape[1], rows = t->shape[0] < 8 ? t->shape[0] : 8;
    td_matrix m = {.type = t->type,
                   .rows = t->shape[0],
                   .cols = cols,
                   .data = t->data,
                   .row_bytes = td_type_row_bytes(t->type, cols)};
    float *row = td_malloc((size_t)cols * sizeof *row);
    double ss = 0.0;
    for (int64_t r = 0; row && r < rows; r++) {
        td_matrix_dequant_row(&m, r, row);
        for (int64_t c = 0; c < cols; c++) ss += (double)row[c] * row[c];
    }
    td_free(row);
    return sqrt(ss / (double)(rows * cols));
}

/* A vector of n floats around `mean` (from 0.5 to 1.5 times it), added under `name`. */
static td_status td_tm_vector(td_tm *b, const char *name, int64_t n, double mean)
{
    float *v = td_malloc((size_t)n * sizeof *v);
    if (!v) return td_fail(TD_E_NOMEM, "out of memory");
    uint64_t s = b->seed++;
    for (int64_t i = 0; i < n; i++) v[i] = (float)(mean * (0.5 + (double)(td_randw_next(&s) >> 11) * 0x1p-53));
    return td_tm_add(b, name, TD_TYPE_F32, 1, 1, n, v, true);
}

/* The norm in front of `fed`: scaled so that fed's products come out of order one. */
static td_status td_tm_norm_for(td_tm *b, const char *norm, int64_t n, const char *fed)
{
    const td_tensor *t = td_tensor_dir_find(b->dir, fed);
    return td_tm_vector(b, norm, n, 1.0 / (td_tm_rms(b->dir, fed) * sqrt((double)t->shape[1])));
}

static td_status td_tm_attention(td_tm *b, const td_hparams *hp)
{
    const td_test_model_params *p = b->p;
    int64_t H = hp->hidden_size, nh = hp->n_heads, r = hp->kv_lora_rank, ql = hp->q_lora_rank;
    int64_t dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim;
    const char *a = "model.layers.0.self_attn";
    char n[128], kv_a[128], uk[128];
    snprintf(kv_a, sizeof kv_a, "%s.kv_a_proj_with_mqa.weight", a);
    TD_TRY(td_tm_matrix(b, kv_a, p->attn_type, r + dr, H, NULL));
    TD_TRY(td_tm_norm_for(b, "model.layers.0.input_layernorm.weight", H, kv_a));
    if (ql) {
        char q_b[128];
        snprintf(n, sizeof n, "%s.q_a_proj.weight", a);
        TD_TRY(td_tm_matrix(b, n, p->attn_type, ql, H, NULL));
        snprintf(q_b, sizeof q_b, "%s.q_b_proj.weight", a);
        TD_TRY(td_tm_matrix(b, q_b, p->attn_type, nh * (dn + dr), ql, NULL));
        snprintf(n, sizeof n, "%s.q_a_layernorm.weight", a);
        TD_TRY(td_tm_norm_for(b, n, ql, q_b));
    } else {
        snprintf(n, sizeof n, "%s.q_proj.weight", a);
        TD_TRY(td_tm_matrix(b, n, p->attn_type, nh * (dn + dr), H, NULL));
    }
    if (p->split_kv_b) {
        snprintf(uk, sizeof uk, "%s.k_b_proj.weight", a);
        TD_TRY(td_tm_matrix(b, uk, p->k_b_type, nh * r, dn, NULL));
        snprintf(n, sizeof n, "%s.v_b_proj.weight", a);
        TD_TRY(td_tm_matrix(b, n, p->attn_type, nh * dv, r, NULL));
    } else {
        snprintf(uk, sizeof uk, "%s.kv_b_proj.weight", a);
        TD_TRY(td_tm_matrix(b, uk, p->attn_type, nh * (dn + dv), r, NULL));
    }
    /* c_kv meets W_UK in every score, r values in, whichever way the file stores it */
    snprintf(n, sizeof n, "%s.kv_a_layernorm.weight", a);
    TD_TRY(td_tm_vector(b, n, r, 1.0 / (td_tm_rms(b->dir, uk) * sqrt((double)r))));
    snprintf(n, sizeof n, "%s.o_proj.weight", a);
    return td_tm_matrix(b, n, p->attn_type, H, nh * dv, NULL);
}

static td_status td_tm_ffn(td_tm *b, const char *prefix, td_type type, int64_t width, int64_t H, void *sets[3])
{
    static const char *const proj[3] = {"gate_proj", "up_proj", "down_proj"};
    char n[160];
    for (int i = 0; i < 3; i++) {
        snprintf(n, sizeof n, "%s.%s.weight", prefix, proj[i]);
        TD_TRY(td_tm_matrix(b, n, type, i < 2 ? width : H, i < 2 ? H : width, &sets[i]));
    }
    return TD_OK;
}

/* E experts over `distinct` weight sets: the first ones own their bytes, the others point at them. */
static td_status td_tm_experts(td_tm *b, const td_hparams *hp)
{
    const td_test_model_params *p = b->p;
    static const char *const proj[3] = {"gate_proj", "up_proj", "down_proj"};
    int64_t H = hp->hidden_size, W = hp->moe_intermediate_size;
    void *(*sets)[3] = td_calloc((size_t)p->distinct_experts, sizeof *sets);
    if (!sets) return td_fail(TD_E_NOMEM, "out of memory");
    td_status st = TD_OK;
    char n[160];
    for (int e = 0; st == TD_OK && e < hp->n_routed_experts; e++) {
        snprintf(n, sizeof n, "model.layers.0.mlp.experts.%d", e);
        if (e < p->distinct_experts) {
            st = td_tm_ffn(b, n, p->expert_type, W, H, sets[e]);
            continue;
        }
        for (int i = 0; st == TD_OK && i < 3; i++) {
            snprintf(n, sizeof n, "model.layers.0.mlp.experts.%d.%s.weight", e, proj[i]);
            st = td_tm_add(b, n, p->expert_type, 2, i < 2 ? W : H, i < 2 ? H : W, sets[e % p->distinct_experts][i],
                           false);
        }
    }
    td_free(sets);
    return st;
}

static td_status td_tm_moe(td_tm *b, const td_hparams *hp)
{
    const td_test_model_params *p = b->p;
    int64_t H = hp->hidden_size, E = hp->n_routed_experts;
    TD_TRY(td_tm_experts(b, hp));
    const char *gate0 = "model.layers.0.mlp.experts.0.gate_proj.weight";
    TD_TRY(td_tm_norm_for(b, "model.layers.0.post_attention_layernorm.weight", H, gate0));
    /* router logits of rms 1.5 on the experts' inputs: scores spread over (0, 1), ahead of a bias of 0.05 */
    void *router;
    TD_TRY(td_tm_matrix(b, "model.layers.0.mlp.gate.weight", p->router_type, E, H, &router));
    td_tm_scale(p->router_type, router, E * H, (float)(1.5 * td_tm_rms(b->dir, gate0) * sqrt(3.0)));
    TD_TRY(td_tm_vector(b, "model.layers.0.mlp.gate.e_score_correction_bias", E, 0.05));
    void *shared[3];
    return td_tm_ffn(b, "model.layers.0.mlp.shared_experts", p->shared_type,
                     hp->moe_intermediate_size * hp->n_shared_experts, H, shared);
}

static td_status td_tm_all(td_tm *b, const td_hparams *hp)
{
    const td_test_model_params *p = b->p;
    int64_t H = hp->hidden_size;
    TD_TRY(td_tm_matrix(b, "model.embed_tokens.weight", p->embed_type, p->vocab, H, NULL));
    TD_TRY(td_tm_attention(b, hp));
    TD_TRY(td_tm_moe(b, hp));
    TD_TRY(td_tm_matrix(b, "lm_head.weight", p->head_type, p->vocab, H, NULL));
    return td_tm_norm_for(b, "model.norm.weight", H, "lm_head.weight");
}

td_status td_test_model_build(const td_test_model_params *p, td_model **out)
{
    *out = NULL;
    td_hparams hp;
    TD_TRY(td_hparams_load(p->config, &hp));
    if (p->distinct_experts < 1 || p->distinct_experts > hp.n_routed_experts)
        return td_fail(TD_E_ARG, "distinct_experts must be 1..%d", hp.n_routed_experts);
    /* one MoE layer; no MTP block; weights of the given types rather than the config's FP8 */
    hp.n_layers = 1;
    hp.first_k_dense_replace = 0;
    hp.vocab_size = p->vocab;
    hp.n_nextn_layers = 0;
    hp.quant.present = false;
    td_tm b = {.p = p, .seed = p->seed};
    TD_TRY(td_tensor_dir_create(&b.dir));
    td_status st = td_tm_all(&b, &hp);
    if (st != TD_OK) {
        td_tensor_dir_free(b.dir);
        return st;
    }
    return td_model_build(&hp, b.dir, "synthetic DeepSeek-V3 (td_test_model)", "synthetic", out);
}
