/* td_model: a DeepSeek-V3-family model opened from an HF directory (safetensors) or a GGUF file:
 * hyperparameters, the tensor directory (mmapped, zero copy), the weights arranged per layer, and the
 * module tree with canonical HF-style names that placement rules match against. */
#ifndef TD_MODEL_H
#define TD_MODEL_H

#include "td_hparams.h"
#include "td_matrix.h"
#include "td_status.h"
#include "td_tensor.h"

#include <stdbool.h>
#include <stdint.h>

/* MLA attention of one layer. Shapes: H hidden, nh heads, dn/dr/dv head dims, r kv_lora_rank. */
typedef struct td_attn_weights {
    const float *norm;        /* input_layernorm [H] */
    td_matrix q_a;            /* [q_lora, H]            (q_lora_rank > 0) */
    const float *q_a_norm;    /* [q_lora] */
    td_matrix q_b;            /* [nh*(dn+dr), q_lora] */
    td_matrix q;              /* [nh*(dn+dr), H]        (q_lora_rank == 0) */
    td_matrix kv_a;           /* [r+dr, H]: latent then the shared rope key */
    const float *kv_a_norm;   /* [r] */
    /* The up-projections come in one of two forms:
     *  kv_b [nh*(dn+dv), r]  (HF, legacy GGUF): per head, dn rows of W_UK then dv rows of W_UV;
     *  k_b  [nh*r, dn] and v_b [nh*dv, r]  (MLA-era GGUF): W_UK transposed per head, and W_UV. */
    td_matrix kv_b;
    td_matrix k_b;
    td_matrix v_b;
    bool split_kv_b;          /* true: k_b/v_b are set; false: kv_b */
    td_matrix o;              /* [H, nh*dv] */
} td_attn_weights;

typedef struct td_moe_weights {
    td_matrix router;         /* mlp.gate [E, H] */
    const float *bias;        /* e_score_correction_bias [E], NULL without noaux_tc */
    td_ffn_weights *experts;  /* [E] */
    td_ffn_weights shared;    /* width n_shared * moe_intermediate (absent when n_shared == 0) */
    bool has_shared;
} td_moe_weights;

typedef struct td_layer_weights {
    int index;
    bool is_moe;
    td_attn_weights attn;
    const float *ffn_norm;    /* post_attention_layernorm [H] */
    td_ffn_weights dense;     /* dense layers */
    td_moe_weights moe;       /* MoE layers */
} td_layer_weights;

/* The multi-token-prediction block (layer n_layers): x = eh_proj([enorm(emb(t+1)); hnorm(h_t)]), one
 * decoder layer, then shared_head.norm and the head. */
typedef struct td_mtp_weights {
    td_layer_weights layer;
    const float *enorm, *hnorm; /* [H] */
    td_matrix eh_proj;          /* [H, 2H] */
    td_matrix embed;            /* [V, H], the main embedding when the block has none */
    const float *head_norm;     /* [H] */
    td_matrix head;             /* [V, H], the main head when the block has none */
} td_mtp_weights;

typedef enum td_module_kind {
    TD_MODULE_EMBED = 0,
    TD_MODULE_ATTN = 1,
    TD_MODULE_DENSE_MLP = 2,
    TD_MODULE_ROUTER = 3,
    TD_MODULE_EXPERTS = 4,
    TD_MODULE_SHARED_EXPERTS = 5,
    TD_MODULE_NORM = 6,
    TD_MODULE_HEAD = 7,
    TD_MODULE_MTP = 8,        /* the MTP block's own projection and norms */
    TD_MODULE_KIND_COUNT
} td_module_kind;

const char *td_module_kind_name(td_module_kind k);

/* A node of the module tree: what placement rules see. */
typedef struct td_module {
    char name[64];            /* "model.layers.7.mlp.experts" */
    td_module_kind kind;
    int layer;                /* -1 for embed, norm, head */
    uint64_t bytes;           /* weight bytes as stored */
    int64_t params;           /* weight elements */
} td_module;

struct td_gguf;

typedef struct td_model {
    td_hparams hp;
    td_tensor_dir *dir;
    struct td_gguf *gguf;     /* the open GGUF (its metadata, e.g. tokenizer.ggml.*), NULL for safetensors */
    char *path;
    char format[16];          /* "safetensors" or "gguf" */
    td_matrix embed;          /* [V, H] */
    td_layer_weights *layers; /* [n_layers] */
    const float *norm;        /* [H] */
    td_matrix head;           /* [V, H] */
    td_mtp_weights *mtp;      /* NULL when the model has no MTP block */
    td_module *modules;
    int n_modules;
    int64_t max_cols;         /* widest matrix row, for scratch sizing */
    void **owned;             /* float copies of norms and biases */
    int n_owned, cap_owned;
} td_model;

typedef struct td_model_params {
    const char *mtp_from;     /* attach the MTP block from this safetensors file or HF dir (may be NULL) */
    int expert_groups;        /* > 0: override n_group/topk_group (GGUFs without group keys need it for */
    int expert_groups_used;   /* models other than DeepSeek-V3, which is recognised); 0 = from the file */
    bool quiet;               /* no progress or notices on stderr */
} td_model_params;

/* Opens an HF directory, a .safetensors file with a config.json beside it, or a GGUF file. */
td_status td_model_open(const char *path, const td_model_params *params, td_model **out);
void td_model_close(td_model *m);

/* Builds the per-layer weights and the module tree from hparams and a filled directory (both loaders
 * end here, so they produce the same tree). Takes ownership of dir. */
td_status td_model_build(td_hparams *hp, td_tensor_dir *dir, const char *path, const char *format,
                         td_model **out);

/* Bytes of the latent KV cache per token (all main layers) for an element size in bytes. */
int64_t td_model_kv_bytes_per_token(const td_model *m, int elem_bytes);

#endif
