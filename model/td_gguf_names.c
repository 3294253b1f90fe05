/* Tensor names of llama.cpp's deepseek2 GGUF files and their canonical Hugging Face counterparts; one
 * table read in both directions (the loader and the writer). */
#include "td_gguf_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct td_name_pair {
    const char *gguf;
    const char *hf;
} td_name_pair;

static const td_name_pair td_global_names[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

/* after "blk.N." and "model.layers.N." */
static const td_name_pair td_layer_names[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"attn_q_a.weight", "self_attn.q_a_proj.weight"},
    {"attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight"},
    {"attn_q_b.weight", "self_attn.q_b_proj.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight"},
    {"attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight"},
    {"attn_kv_b.weight", "self_attn.kv_b_proj.weight"},
    {"attn_k_b.weight", "self_attn.k_b_proj.weight"},
    {"attn_v_b.weight", "self_attn.v_b_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
    {"ffn_gate_inp.weight", "mlp.gate.weight"},
    {"exp_probs_b.bias", "mlp.gate.e_score_correction_bias"},
    {"ffn_gate_shexp.weight", "mlp.shared_experts.gate_proj.weight"},
    {"ffn_up_shexp.weight", "mlp.shared_experts.up_proj.weight"},
    {"ffn_down_shexp.weight", "mlp.shared_experts.down_proj.weight"},
    {"nextn.enorm.weight", "enorm.weight"},
    {"nextn.hnorm.weight", "hnorm.weight"},
    {"nextn.eh_proj.weight", "eh_proj.weight"},
    {"nextn.shared_head_norm.weight", "shared_head.norm.weight"},
    {"nextn.shared_head_head.weight", "shared_head.head.weight"},
    {"nextn.embed_tokens.weight", "embed_tokens.weight"},
};

/* expert slabs: blk.N.ffn_<p>_exps.weight <-> model.layers.N.mlp.experts.E.<p>_proj.weight */
static const char *const td_slab_projs[] = {"gate", "up", "down"};

#define TD_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* "prefixN.rest" -> N and rest; false unless the prefix matches and N is a plain decimal number. */
static bool td_split_layer(const char *name, const char *prefix, int *layer, const char **rest)
{
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0) return false;
    const char *p = name + pl;
    if (*p < '0' || *p > '9') return false;
    char *end;
    long v = strtol(p, &end, 10);
    if (*end != '.' || v > 1000000 || (end - p > 1 && *p == '0')) return false;
    *layer = (int)v;
    *rest = end + 1;
    return true;
}

bool td_gguf_name_to_hf(const char *gguf_name, char *out, size_t cap, bool *is_slab)
{
    *is_slab = false;
    for (size_t i = 0; i < TD_COUNT(td_global_names); i++) {
        if (strcmp(gguf_name, td_global_names[i].gguf) == 0) {
            snprintf(out, cap, "%s", td_global_names[i].hf);
            return true;
        }
    }
    int layer;
    const char *rest;
    if (!td_split_layer(gguf_name, "blk.", &layer, &rest)) return false;
    for (size_t i = 0; i < TD_COUNT(td_layer_names); i++) {
        if (strcmp(rest, td_layer_names[i].gguf) == 0) {
            snprintf(out, cap, "model.layers.%d.%s", layer, td_layer_names[i].hf);
            return true;
        }
    }
    for (size_t i = 0; i < TD_COUNT(td_slab_projs); i++) {
        char want[32];
        snprintf(want, sizeof want, "ffn_%s_exps.weight", td_slab_projs[i]);
        if (strcmp(rest, want) == 0) {
            snprintf(out, cap, "model.layers.%d.mlp.experts.%%d.%s_proj.weight", layer, td_slab_projs[i]);
            *is_slab = true;
            return true;
        }
    }
    return false;
}

bool td_gguf_name_from_hf(const char *hf_name, char *out, size_t cap, int *expert)
{
    *expert = -1;
    for (size_t i = 0; i < TD_COUNT(td_global_names); i++) {
        if (strcmp(hf_name, td_global_names[i].hf) == 0) {
            snprintf(out, cap, "%s", td_global_names[i].gguf);
            return true;
        }
    }
    int layer;
    const char *rest;
    if (!td_split_layer(hf_name, "model.layers.", &layer, &rest)) return false;
    for (size_t i = 0; i < TD_COUNT(td_layer_names); i++) {
        if (strcmp(rest, td_layer_names[i].hf) == 0) {
            snprintf(out, cap, "blk.%d.%s", layer, td_layer_names[i].gguf);
            return true;
        }
    }
    int e;
    const char *proj;
    if (!td_split_layer(rest, "mlp.experts.", &e, &proj)) return false;
    for (size_t i = 0; i < TD_COUNT(td_slab_projs); i++) {
        char want[32];
        snprintf(want, sizeof want, "%s_proj.weight", td_slab_projs[i]);
        if (strcmp(proj, want) == 0) {
            snprintf(out, cap, "blk.%d.ffn_%s_exps.weight", layer, td_slab_projs[i]);
            *expert = e;
            return true;
        }
    }
    return false;
}
