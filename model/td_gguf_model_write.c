/* td_hparams -> llama.cpp's deepseek2 metadata keys (the inverse of td_gguf_model_hparams). */
#include "td_gguf_model.h"

#include <stdio.h>

static td_status td_put_u32(td_gguf_writer *w, const char *suffix, int64_t v)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", TD_GGUF_ARCH, suffix);
    if (v < 0 || v > UINT32_MAX) return td_fail(TD_E_ARG, "GGUF metadata %s = %lld does not fit u32", key, (long long)v);
    return td_gguf_set_u32(w, key, (uint32_t)v);
}

static td_status td_put_f32(td_gguf_writer *w, const char *suffix, double v)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", TD_GGUF_ARCH, suffix);
    return td_gguf_set_f32(w, key, (float)v);
}

static td_status td_put_attention(td_gguf_writer *w, const td_hparams *hp, bool mla)
{
    int64_t r = hp->kv_lora_rank, dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim;
    TD_TRY(td_put_u32(w, "attention.head_count", hp->n_heads));
    /* MLA-era files describe the latent cache: one shared "head" of r + dr keys and r values */
    TD_TRY(td_put_u32(w, "attention.head_count_kv", mla ? 1 : hp->n_heads));
    TD_TRY(td_put_u32(w, "attention.key_length", mla ? r + dr : dn + dr));
    TD_TRY(td_put_u32(w, "attention.value_length", mla ? r : dv));
    if (mla) {
        TD_TRY(td_put_u32(w, "attention.key_length_mla", dn + dr));
        TD_TRY(td_put_u32(w, "attention.value_length_mla", dv));
    }
    TD_TRY(td_put_f32(w, "attention.layer_norm_rms_epsilon", hp->rms_norm_eps));
    if (hp->q_lora_rank) TD_TRY(td_put_u32(w, "attention.q_lora_rank", hp->q_lora_rank));
    TD_TRY(td_put_u32(w, "attention.kv_lora_rank", r));
    return TD_OK;
}

static td_status td_put_rope(td_gguf_writer *w, const td_hparams *hp)
{
    TD_TRY(td_put_u32(w, "rope.dimension_count", hp->qk_rope_head_dim));
    TD_TRY(td_put_f32(w, "rope.freq_base", hp->rope_theta));
    if (!hp->rope.yarn) return TD_OK;
    TD_TRY(td_gguf_set_str(w, TD_GGUF_ARCH ".rope.scaling.type", "yarn"));
    TD_TRY(td_put_f32(w, "rope.scaling.factor", hp->rope.factor));
    TD_TRY(td_put_u32(w, "rope.scaling.original_context_length", hp->rope.original_max_position_embeddings));
    TD_TRY(td_put_f32(w, "rope.scaling.yarn_log_multiplier", 0.1 * hp->rope.mscale_all_dim));
    if (hp->rope.beta_fast != 32.0) TD_TRY(td_put_f32(w, "rope.scaling.yarn_beta_fast", hp->rope.beta_fast));
    if (hp->rope.beta_slow != 1.0) TD_TRY(td_put_f32(w, "rope.scaling.yarn_beta_slow", hp->rope.beta_slow));
    return TD_OK;
}

static td_status td_put_moe(td_gguf_writer *w, const td_hparams *hp, bool groups)
{
    TD_TRY(td_put_u32(w, "leading_dense_block_count", hp->n_routed_experts ? hp->first_k_dense_replace : hp->n_layers));
    if (!hp->n_routed_experts) return TD_OK;
    TD_TRY(td_put_u32(w, "expert_count", hp->n_routed_experts));
    TD_TRY(td_put_u32(w, "expert_used_count", hp->n_experts_per_tok));
    TD_TRY(td_put_u32(w, "expert_shared_count", hp->n_shared_experts));
    TD_TRY(td_put_u32(w, "expert_feed_forward_length", hp->moe_intermediate_size));
    TD_TRY(td_put_f32(w, "expert_weights_scale", hp->routed_scaling_factor));
    TD_TRY(td_gguf_set_bool(w, TD_GGUF_ARCH ".expert_weights_norm", hp->norm_topk_prob));
    TD_TRY(td_put_u32(w, "expert_gating_func", hp->scoring == TD_SCORING_SIGMOID ? 2 : 1));
    if (groups) {
        TD_TRY(td_put_u32(w, "expert_group_count", hp->n_group));
        TD_TRY(td_put_u32(w, "expert_group_used_count", hp->topk_group));
    }
    return TD_OK;
}

td_status td_gguf_put_hparams(td_gguf_writer *w, const td_hparams *hp, const td_gguf_hparams_opts *o)
{
    if (hp->moe_layer_freq > 1)
        return td_fail(TD_E_UNSUPPORTED, "moe_layer_freq = %d cannot be written as deepseek2 GGUF metadata",
                       hp->moe_layer_freq);
    TD_TRY(td_gguf_set_str(w, "general.architecture", TD_GGUF_ARCH));
    if (o->name) TD_TRY(td_gguf_set_str(w, "general.name", o->name));
    TD_TRY(td_put_u32(w, "block_count", hp->n_layers + o->nextn_layers));
    TD_TRY(td_put_u32(w, "context_length", hp->max_position_embeddings));
    TD_TRY(td_put_u32(w, "embedding_length", hp->hidden_size));
    TD_TRY(td_put_u32(w, "feed_forward_length", hp->intermediate_size));
    TD_TRY(td_put_attention(w, hp, o->mla));
    TD_TRY(td_put_rope(w, hp));
    TD_TRY(td_put_moe(w, hp, o->groups));
    TD_TRY(td_put_u32(w, "vocab_size", hp->vocab_size));
    if (o->nextn_layers) TD_TRY(td_put_u32(w, "nextn_predict_layers", o->nextn_layers));
    return TD_OK;
}
