/* td_gguf_model: llama.cpp's `deepseek2` architecture in GGUF, mapped onto tandem's model: the
 * hyperparameters from llama.cpp's metadata keys, and every tensor renamed to the canonical Hugging Face
 * name the safetensors path uses, so that td_model_build() sees the same directory from either format.
 *
 *  - Both attention layouts: legacy `attn_kv_b` -> self_attn.kv_b_proj; MLA-era 3-D `attn_k_b`
 *    {nope, kv_lora, heads} and `attn_v_b` {kv_lora, v, heads} -> self_attn.k_b_proj [heads, kv_lora, nope]
 *    and self_attn.v_b_proj [heads, v, kv_lora].
 *  - Stacked expert slabs `ffn_{gate,up,down}_exps` -> per-expert 2-D views mlp.experts.E.*_proj (zero copy).
 *  - `block_count` includes the `nextn_predict_layers` MTP blocks; blk.L.nextn.* -> model.layers.L.*.
 *  - Files without expert_group_count/expert_group_used_count (converted before late 2025): DeepSeek-V3
 *    (256 experts, sigmoid gating) is recognised and routed with 8 groups, top 4, DeepSeek-V2 (160 experts,
 *    softmax) with 8 groups, top 3; said once on stderr. Other shapes route without groups. */
#ifndef TD_GGUF_MODEL_H
#define TD_GGUF_MODEL_H

#include "td_gguf.h"
#include "td_gguf_write.h"
#include "td_hparams.h"
#include "td_model.h"

#define TD_GGUF_ARCH "deepseek2"

/* Opens a GGUF model (any part of a split one), fills hp and adds every tensor under its canonical name
 * to dir (which takes the mappings). On success *out is the open file, for metadata such as the
 * tokenizer; the caller closes it, no later than dir. */
td_status td_gguf_model_open(const char *path, const td_model_params *params, td_hparams *hp, td_tensor_dir *dir,
                             td_gguf **out);

/* The hyperparameters of an open deepseek2 GGUF (params may be NULL). */
td_status td_gguf_model_hparams(const td_gguf *g, const td_model_params *params, td_hparams *hp);

/* Name mapping. A GGUF name -> its canonical name; for an expert slab (ffn_*_exps) the canonical name has
 * a "%d" where the expert number goes and *is_slab is set. False for names tandem does not use. */
bool td_gguf_name_to_hf(const char *gguf_name, char *out, size_t cap, bool *is_slab);
/* A canonical name -> its GGUF name. Per-expert names map to their slab (the expert number is returned
 * through *expert, else -1). False for names GGUF does not carry (kv_b_proj in the MLA layout is split
 * by the writer, FP8 scales are folded in). */
bool td_gguf_name_from_hf(const char *hf_name, char *out, size_t cap, int *expert);

/* Writing: the deepseek2 metadata of hp, under llama.cpp's key names. */
typedef struct td_gguf_hparams_opts {
    const char *name;     /* general.name (may be NULL) */
    bool mla;             /* the MLA-era layout: head_count_kv 1, key/value_length of the latent, *_mla keys */
    int nextn_layers;     /* MTP blocks written as blk.<n_layers + i>.nextn.* (block_count includes them) */
    bool groups;          /* write expert_group_count / expert_group_used_count */
} td_gguf_hparams_opts;
td_status td_gguf_put_hparams(td_gguf_writer *w, const td_hparams *hp, const td_gguf_hparams_opts *o);

#endif
