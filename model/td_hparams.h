/* td_hparams: the normalized hyperparameters of a DeepSeek-V3-family model, from config.json or a GGUF
 * header, plus the sizes derived from them (KV bytes per token, parameters per layer). */
#ifndef TD_HPARAMS_H
#define TD_HPARAMS_H

#include "td_status.h"
#include "td_types.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum td_scoring {
    TD_SCORING_SIGMOID = 0, /* V3, R1, Kimi-K2 */
    TD_SCORING_SOFTMAX = 1, /* V2 */
    TD_SCORING_COUNT
} td_scoring;

typedef enum td_topk_method {
    TD_TOPK_NOAUX_TC = 0,             /* group score = sum of the top-2 biased scores (V3) */
    TD_TOPK_GROUP_LIMITED_GREEDY = 1, /* group score = max score (V2) */
    TD_TOPK_GREEDY = 2,               /* no groups */
    TD_TOPK_COUNT
} td_topk_method;

typedef struct td_rope_scaling {
    bool yarn;                    /* false: plain RoPE */
    double factor;
    int64_t original_max_position_embeddings;
    double beta_fast, beta_slow;
    double mscale, mscale_all_dim;
} td_rope_scaling;

typedef struct td_quant_config {
    bool present;                 /* quantization_config was given */
    char quant_method[16];        /* "fp8" */
    char fmt[16];                 /* "e4m3" */
    char activation_scheme[16];   /* "dynamic" */
    int weight_block_size[2];     /* [128, 128] */
} td_quant_config;

typedef struct td_hparams {
    char model_type[32];          /* "deepseek_v3", "deepseek_v2", "kimi_k2" */
    int64_t vocab_size;
    int64_t hidden_size;          /* H */
    int64_t intermediate_size;    /* dense MLP width */
    int64_t moe_intermediate_size;/* one expert's width */
    int n_layers;                 /* decoder layers, MTP excluded */
    int first_k_dense_replace;    /* layers [0, k) are dense */
    int moe_layer_freq;
    int n_heads;
    int n_kv_heads;               /* as written in the config; MLA ignores it */
    int64_t q_lora_rank;          /* 0: a direct q_proj (q_lora_rank: null) */
    int64_t kv_lora_rank;         /* r: the latent cache width */
    int64_t qk_nope_head_dim;     /* dn */
    int64_t qk_rope_head_dim;     /* dr */
    int64_t v_head_dim;           /* dv */
    int n_routed_experts;         /* E; 0 for a dense model */
    int n_shared_experts;
    int n_experts_per_tok;        /* top-k */
    int n_group, topk_group;
    double routed_scaling_factor;
    bool norm_topk_prob;
    td_scoring scoring;
    td_topk_method topk_method;
    double rms_norm_eps;
    double rope_theta;
    int64_t max_position_embeddings;
    int n_nextn_layers;           /* MTP depth: layers n_layers .. n_layers + n - 1 */
    td_rope_scaling rope;
    td_quant_config quant;
    int64_t bos_token_id, eos_token_id; /* -1 if unknown */
    bool tie_word_embeddings;
} td_hparams;

/* Parses config.json text. `path` is for messages. Missing or nonsensical fields are errors that name
 * the field; optional fields take the defaults of transformers' DeepseekV3Config. */
td_status td_hparams_from_json(const char *text, size_t len, const char *path, td_hparams *hp);
/* Reads and parses a config.json file. */
td_status td_hparams_load(const char *path, td_hparams *hp);
/* Checks the invariants every loader must meet (shapes positive, groups divide experts, ...). */
td_status td_hparams_validate(const td_hparams *hp, const char *source);

bool td_hparams_layer_is_moe(const td_hparams *hp, int layer);
/* YaRN attention factor: 0.1 * m * ln(factor) + 1 for factor > 1, else 1. */
double td_yarn_mscale(double factor, double m);
/* (dn + dr)^-0.5, times mscale(factor, mscale_all_dim)^2 under YaRN. */
double td_hparams_softmax_scale(const td_hparams *hp);

/* Latent cache per token for all main layers: n_layers * (kv_lora_rank + qk_rope_head_dim) elements. */
int64_t td_hparams_kv_elems_per_token(const td_hparams *hp);

/* Parameter counts of one decoder layer (or the MTP block when layer >= n_layers). */
typedef struct td_layer_params {
    int64_t attn;           /* q, kv_a, kv_b, o projections and the attention norms */
    int64_t dense_mlp;      /* gate, up, down of a dense layer */
    int64_t router;         /* gate weight and correction bias */
    int64_t routed_experts; /* all E experts */
    int64_t shared_experts;
    int64_t norms;          /* input and post-attention RMSNorm */
    int64_t mtp_extra;      /* enorm, hnorm, eh_proj, shared_head.norm (MTP block only) */
    int64_t total;
} td_layer_params;
void td_hparams_layer_params(const td_hparams *hp, int layer, td_layer_params *out);
/* Embedding + head + final norm + all main layers; MTP excluded. */
int64_t td_hparams_total_params(const td_hparams *hp);

/* Prints a short human summary ("hidden 7168, 61 layers, ...") into buf. */
void td_hparams_describe(const td_hparams *hp, char *buf, size_t cap);

#endif
