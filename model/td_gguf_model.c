/* llama.cpp's deepseek2 GGUF -> td_hparams and a tensor directory with canonical names. */
#include "td_gguf_model.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ metadata keys */

typedef struct td_keys {
    const td_gguf *g;
    const char *path;
} td_keys;

static bool td_has(const td_keys *k, const char *key) { return td_gguf_find_kv(k->g, key) != NULL; }

/* deepseek2.<suffix>: an integer in [lo, hi]; when absent, dflt, or an error if required. */
static td_status td_key_int(const td_keys *k, const char *suffix, bool required, int64_t dflt, int64_t lo, int64_t hi,
                            int64_t *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", TD_GGUF_ARCH, suffix);
    if (!td_has(k, key)) {
        if (required)
            return td_fail(TD_E_FORMAT, "%s: metadata key '%s' is missing; a deepseek2 GGUF must give it", k->path, key);
        *out = dflt;
        return TD_OK;
    }
    TD_TRY(td_gguf_get_int(k->g, key, out));
    if (*out < lo || *out > hi)
        return td_fail(TD_E_FORMAT, "%s: metadata key '%s' = %" PRId64 " is out of range (expected %" PRId64
                       "..%" PRId64 ")",
                       k->path, key, *out, lo, hi);
    return TD_OK;
}

static td_status td_key_i32(const td_keys *k, const char *suffix, bool required, int dflt, int lo, int hi, int *out)
{
    int64_t v;
    TD_TRY(td_key_int(k, suffix, required, dflt, lo, hi, &v));
    *out = (int)v;
    return TD_OK;
}

static td_status td_key_num(const td_keys *k, const char *suffix, bool required, double dflt, double lo, double hi,
                            double *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", TD_GGUF_ARCH, suffix);
    if (!td_has(k, key)) {
        if (required)
            return td_fail(TD_E_FORMAT, "%s: metadata key '%s' is missing; a deepseek2 GGUF must give it", k->path, key);
        *out = dflt;
        return TD_OK;
    }
    TD_TRY(td_gguf_get_float(k->g, key, out));
    if (!isfinite(*out) || *out < lo || *out > hi)
        return td_fail(TD_E_FORMAT, "%s: metadata key '%s' = %g is out of range (expected %g..%g)", k->path, key, *out,
                       lo, hi);
    return TD_OK;
}

static td_status td_key_bool(const td_keys *k, const char *suffix, bool dflt, bool *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", TD_GGUF_ARCH, suffix);
    if (!td_has(k, key)) {
        *out = dflt;
        return TD_OK;
    }
    return td_gguf_get_bool(k->g, key, out);
}

/* ------------------------------------------------------------------ sections */

static td_status td_gk_arch(const td_keys *k, td_hparams *hp)
{
    char arch[64];
    TD_TRY(td_gguf_get_str_copy(k->g, "general.architecture", arch, sizeof arch));
    if (strcmp(arch, TD_GGUF_ARCH) != 0)
        return td_fail(TD_E_UNSUPPORTED,
                       "%s: architecture '%s' is not supported; tandem runs '%s' GGUFs (DeepSeek-V2/V3/R1, Kimi-K2)",
                       k->path, arch, TD_GGUF_ARCH);
    snprintf(hp->model_type, sizeof hp->model_type, "deepseek_v3");
    return TD_OK;
}

/* Attention sizes. The MLA-era layout stores the latent sizes in key_length/value_length and the
 * per-head ones in key_length_mla/value_length_mla; the legacy layout stores the per-head ones. */
static td_status td_gk_attention(const td_keys *k, td_hparams *hp)
{
    const int64_t big = 1 << 20;
    TD_TRY(td_key_i32(k, "attention.head_count", true, 0, 1, 4096, &hp->n_heads));
    TD_TRY(td_key_i32(k, "attention.head_count_kv", false, hp->n_heads, 1, 4096, &hp->n_kv_heads));
    TD_TRY(td_key_int(k, "attention.q_lora_rank", false, 0, 0, big, &hp->q_lora_rank));
    TD_TRY(td_key_int(k, "attention.kv_lora_rank", true, 0, 1, big, &hp->kv_lora_rank));
    TD_TRY(td_key_int(k, "rope.dimension_count", true, 0, 2, 1 << 16, &hp->qk_rope_head_dim));
    int64_t key_len, value_len;
    bool mla = td_has(k, TD_GGUF_ARCH ".attention.key_length_mla");
    TD_TRY(td_key_int(k, mla ? "attention.key_length_mla" : "attention.key_length", true, 0, 1, big, &key_len));
    TD_TRY(td_key_int(k, mla ? "attention.value_length_mla" : "attention.value_length", true, 0, 1, big, &value_len));
    hp->qk_nope_head_dim = key_len - hp->qk_rope_head_dim;
    hp->v_head_dim = value_len;
    if (hp->qk_nope_head_dim < 1)
        return td_fail(TD_E_FORMAT, "%s: %s.attention.key_length%s = %" PRId64 " leaves no room for the %" PRId64
                       " rope dimensions",
                       k->path, TD_GGUF_ARCH, mla ? "_mla" : "", key_len, hp->qk_rope_head_dim);
    TD_TRY(td_key_num(k, "attention.layer_norm_rms_epsilon", true, 0, 0, 1, &hp->rms_norm_eps));
    return TD_OK;
}

static td_status td_gk_rope(const td_keys *k, td_hparams *hp)
{
    TD_TRY(td_key_num(k, "rope.freq_base", false, 10000.0, 1.0, 1e12, &hp->rope_theta));
    memset(&hp->rope, 0, sizeof hp->rope);
    hp->rope.factor = 1.0;
    char type[32] = "";
    if (td_has(k, TD_GGUF_ARCH ".rope.scaling.type"))
        TD_TRY(td_gguf_get_str_copy(k->g, TD_GGUF_ARCH ".rope.scaling.type", type, sizeof type));
    if (!type[0] || strcmp(type, "none") == 0) return TD_OK;
    if (strcmp(type, "yarn") != 0)
        return td_fail(TD_E_UNSUPPORTED, "%s: rope scaling '%s' is not supported (DeepSeek models use yarn)", k->path,
                       type);
    td_rope_scaling *r = &hp->rope;
    r->yarn = true;
    TD_TRY(td_key_num(k, "rope.scaling.factor", true, 1.0, 1.0, 1e6, &r->factor));
    double orig;
    TD_TRY(td_key_num(k, "rope.scaling.original_context_length", true, 0, 1, 1e12, &orig));
    r->original_max_position_embeddings = (int64_t)orig;
    TD_TRY(td_key_num(k, "rope.scaling.yarn_beta_fast", false, 32.0, 1e-6, 1e6, &r->beta_fast));
    TD_TRY(td_key_num(k, "rope.scaling.yarn_beta_slow", false, 1.0, 1e-6, 1e6, &r->beta_slow));
    /* llama.cpp stores 0.1 * mscale_all_dim as an f32; undo the scaling at f32 precision so that the
     * written value (1.0 for every DeepSeek config) comes back exactly. DeepSeek configs have
     * mscale == mscale_all_dim, which leaves cos/sin unscaled. */
    double mult;
    TD_TRY(td_key_num(k, "rope.scaling.yarn_log_multiplier", false, 0.0, 0.0, 100.0, &mult));
    r->mscale_all_dim = (double)(float)(mult / 0.1);
    r->mscale = r->mscale_all_dim;
    return TD_OK;
}

/* Group routing: the keys, a user override, or the published shapes recognised: DeepSeek-V3/R1 (256
 * experts, sigmoid: 8 groups keep 4) and DeepSeek-V2/V2.5 (160 experts, softmax: 8 groups keep 3). */
static td_status td_gk_groups(const td_keys *k, const td_model_params *p, td_hparams *hp)
{
    bool have = td_has(k, TD_GGUF_ARCH ".expert_group_count");
    TD_TRY(td_key_i32(k, "expert_group_count", false, 1, 1, 1 << 16, &hp->n_group));
    TD_TRY(td_key_i32(k, "expert_group_used_count", false, 1, 1, 1 << 16, &hp->topk_group));
    if (p && p->expert_groups > 0) {
        hp->n_group = p->expert_groups;
        hp->topk_group = p->expert_groups_used > 0 ? p->expert_groups_used : p->expert_groups;
        return TD_OK;
    }
    if (have) return TD_OK;
    const char *which = NULL;
    if (hp->n_routed_experts == 256 && hp->scoring == TD_SCORING_SIGMOID) {
        which = "DeepSeek-V3: 8 groups, top 4";
        hp->n_group = 8;
        hp->topk_group = 4;
    } else if (hp->n_routed_experts == 160 && hp->scoring == TD_SCORING_SOFTMAX) {
        which = "DeepSeek-V2: 8 groups, top 3";
        hp->n_group = 8;
        hp->topk_group = 3;
    }
    if (which && !(p && p->quiet))
        fprintf(stderr,
                "tandem: %s has no expert_group_count/expert_group_used_count (converted before late 2025); "
                "routing as %s (override with --expert-groups N/M)\n",
                k->path, which);
    return TD_OK;
}

static td_status td_gk_moe(const td_keys *k, const td_model_params *p, td_hparams *hp)
{
    TD_TRY(td_key_i32(k, "expert_count", false, 0, 0, 1 << 16, &hp->n_routed_experts));
    bool moe = hp->n_routed_experts > 0;
    TD_TRY(td_key_i32(k, "expert_used_count", moe, 0, 1, 1 << 16, &hp->n_experts_per_tok));
    TD_TRY(td_key_i32(k, "expert_shared_count", false, 0, 0, 1 << 10, &hp->n_shared_experts));
    TD_TRY(td_key_int(k, "expert_feed_forward_length", moe, 0, 1, 1 << 24, &hp->moe_intermediate_size));
    TD_TRY(td_key_i32(k, "leading_dense_block_count", false, 0, 0, 4096, &hp->first_k_dense_replace));
    TD_TRY(td_key_num(k, "expert_weights_scale", false, 1.0, 1e-6, 1e6, &hp->routed_scaling_factor));
    TD_TRY(td_key_bool(k, "expert_weights_norm", false, &hp->norm_topk_prob));
    int gating;
    TD_TRY(td_key_i32(k, "expert_gating_func", false, 1, 1, 2, &gating)); /* llama.cpp: 1 softmax, 2 sigmoid */
    hp->scoring = gating == 2 ? TD_SCORING_SIGMOID : TD_SCORING_SOFTMAX;
    hp->moe_layer_freq = 1;
    TD_TRY(td_gk_groups(k, p, hp));
    if (hp->scoring == TD_SCORING_SIGMOID) hp->topk_method = TD_TOPK_NOAUX_TC;
    else hp->topk_method = hp->n_group > 1 ? TD_TOPK_GROUP_LIMITED_GREEDY : TD_TOPK_GREEDY;
    if (hp->scoring == TD_SCORING_SOFTMAX) snprintf(hp->model_type, sizeof hp->model_type, "deepseek_v2");
    return TD_OK;
}

static td_status td_gk_vocab(const td_keys *k, td_hparams *hp)
{
    int64_t v = 0;
    td_gguf_value tokens;
    if (td_has(k, "tokenizer.ggml.tokens") && td_gguf_get_array(k->g, "tokenizer.ggml.tokens", &tokens) == TD_OK)
        v = (int64_t)tokens.len;
    const td_gguf_tensor *emb = td_gguf_find_tensor(k->g, "token_embd.weight");
    if (!v && emb && emb->n_dims == 2) v = emb->ne[1];
    TD_TRY(td_key_int(k, "vocab_size", false, v, 1, 1ll << 31, &hp->vocab_size));
    hp->bos_token_id = hp->eos_token_id = -1;
    if (td_has(k, "tokenizer.ggml.bos_token_id")) TD_TRY(td_gguf_get_int(k->g, "tokenizer.ggml.bos_token_id", &hp->bos_token_id));
    if (td_has(k, "tokenizer.ggml.eos_token_id")) TD_TRY(td_gguf_get_int(k->g, "tokenizer.ggml.eos_token_id", &hp->eos_token_id));
    hp->tie_word_embeddings = td_gguf_find_tensor(k->g, "output.weight") == NULL;
    return TD_OK;
}

td_status td_gguf_model_hparams(const td_gguf *g, const td_model_params *p, td_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    td_keys k = {g, td_gguf_file_path(g, 0)};
    TD_TRY(td_gk_arch(&k, hp));
    int blocks, nextn;
    TD_TRY(td_key_i32(&k, "block_count", true, 0, 1, 4096, &blocks));
    TD_TRY(td_key_i32(&k, "nextn_predict_layers", false, 0, 0, 16, &nextn));
    if (nextn >= blocks)
        return td_fail(TD_E_FORMAT, "%s: %s.nextn_predict_layers = %d leaves no main layers of block_count = %d",
                       k.path, TD_GGUF_ARCH, nextn, blocks);
    hp->n_layers = blocks - nextn; /* block_count counts the MTP blocks too */
    hp->n_nextn_layers = nextn;
    TD_TRY(td_key_int(&k, "embedding_length", true, 0, 1, 1 << 20, &hp->hidden_size));
    TD_TRY(td_key_int(&k, "feed_forward_length", true, 0, 1, 1 << 24, &hp->intermediate_size));
    TD_TRY(td_key_int(&k, "context_length", false, 4096, 1, 1ll << 31, &hp->max_position_embeddings));
    TD_TRY(td_gk_attention(&k, hp));
    TD_TRY(td_gk_rope(&k, hp));
    TD_TRY(td_gk_moe(&k, p, hp));
    TD_TRY(td_gk_vocab(&k, hp));
    return td_hparams_validate(hp, k.path);
}

/* ------------------------------------------------------------------ tensors */

/* A 3-D slab {cols, rows, E} -> E views of [rows, cols] pointing into it. */
static td_status td_add_slab(const td_gguf *g, const td_gguf_tensor *t, const char *pattern, const td_hparams *hp,
                             td_tensor_dir *dir)
{
    td_tensor v;
    TD_TRY(td_gguf_tensor_view(g, t, NULL, &v));
    if (t->n_dims != 3 || t->ne[2] != hp->n_routed_experts) {
        char shape[96];
        return td_fail(TD_E_FORMAT, "%s: tensor '%s' has shape %s; an expert slab is [%d experts, rows, cols]",
                       td_gguf_file_path(g, t->file), t->name, td_tensor_shape_str(&v, shape, sizeof shape),
                       hp->n_routed_experts);
    }
    uint64_t per = t->nbytes / (uint64_t)t->ne[2];
    for (int64_t e = 0; e < t->ne[2]; e++) {
        char name[256];
        snprintf(name, sizeof name, pattern, (int)e);
        td_tensor x = v;
        x.name = name;
        x.ndim = 2;
        x.shape[0] = t->ne[1];
        x.shape[1] = t->ne[0];
        x.data = (const uint8_t *)v.data + (uint64_t)e * per;
        x.nbytes = per;
        TD_TRY(td_tensor_dir_add(dir, &x));
    }
    return TD_OK;
}

static td_status td_add_tensors(const td_gguf *g, const td_hparams *hp, td_tensor_dir *dir)
{
    for (size_t i = 0; i < td_gguf_tensor_count(g); i++) {
        const td_gguf_tensor *t = td_gguf_tensor_at(g, i);
        char name[256];
        bool slab;
        if (!td_gguf_name_to_hf(t->name, name, sizeof name, &slab)) continue; /* not part of the model */
        if (slab) {
            TD_TRY(td_add_slab(g, t, name, hp, dir));
        } else {
            td_tensor v;
            TD_TRY(td_gguf_tensor_view(g, t, name, &v));
            TD_TRY(td_tensor_dir_add(dir, &v));
        }
    }
    return TD_OK;
}

td_status td_gguf_model_open(const char *path, const td_model_params *params, td_hparams *hp, td_tensor_dir *dir,
                             td_gguf **out)
{
    *out = NULL;
    td_gguf *g;
    TD_TRY(td_gguf_open(path, &g));
    td_status st = td_gguf_model_hparams(g, params, hp);
    if (st == TD_OK) st = td_gguf_give_files(g, dir, NULL);
    if (st == TD_OK) st = td_add_tensors(g, hp, dir);
    if (st != TD_OK) {
        td_gguf_close(g);
        return st;
    }
    *out = g;
    return TD_OK;
}
