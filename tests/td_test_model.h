/* A DeepSeek-V3-shaped model of random weights, made in memory through td_model_build (the loaders'
 * own arrangement, module tree included), for tests that need the real shapes without the real file:
 * hidden 7168, 128 heads, q_lora 1536, kv_lora 512, rope 64, nope 128, v 128, expert FFN 2048 and 256
 * routed experts, as fixtures/real/deepseek-v3-config.json says. To stay small it has one MoE layer, a
 * short vocabulary, and only a few distinct expert weight sets behind the 256 experts (expert e uses set
 * e % distinct_experts), so every expert id is real while the memory is that of a few.
 *
 * The weights are random but valid blocks (td_randw_fill); the norms are scaled so that every product
 * sees inputs that give outputs of order one (softmax and SiLU are then neither saturated nor linear),
 * and the router is scaled so that the routing depends on the input more than on the bias. */
#ifndef TD_TEST_MODEL_H
#define TD_TEST_MODEL_H

#include "td_model.h"

typedef struct td_test_model_params {
    const char *config;   /* config.json of the shapes (DeepSeek-V3's) */
    int64_t vocab;        /* rows of the embedding and the head */
    int distinct_experts; /* weight sets behind the routed experts */
    td_type attn_type;    /* q_a, q_b (or q), kv_a, o, and kv_b or v_b */
    td_type k_b_type;     /* k_b [nh*r, dn] (rows of dn = 128 need a 32-block type) */
    bool split_kv_b;      /* k_b/v_b (MLA-era GGUF) rather than kv_b */
    td_type expert_type;  /* routed experts */
    td_type shared_type;  /* the shared expert */
    td_type router_type;  /* mlp.gate (f32 in GGUFs, bf16 in HF checkpoints) */
    td_type embed_type, head_type;
    uint64_t seed;
} td_test_model_params;

/* DeepSeek-V3's Q4_K_M-like choice of types: q4_K almost everywhere, q8_0 for k_b and the shared expert,
 * bf16 for the head, f32 for the router. */
td_test_model_params td_test_model_v3_params(const char *config);

/* Builds the model; close it with td_model_close. */
td_status td_test_model_build(const td_test_model_params *p, td_model **out);

#endif
