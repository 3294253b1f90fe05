/* The ggml tensor types a GGUF file may name, with their block sizes, and which of them tandem computes
 * with. Ids are ggml's; ids ggml removed or never defined are absent. */
#include "td_gguf.h"

#include "td_blocks.h"

#define TD_NO_TYPE TD_TYPE_COUNT

static const td_ggml_type_info td_ggml_types[] = {
    [0] = {"F32", 1, 4, TD_TYPE_F32},
    [1] = {"F16", 1, 2, TD_TYPE_F16},
    [2] = {"Q4_0", TD_QK4_0, sizeof(td_block_q4_0), TD_TYPE_Q4_0},
    [3] = {"Q4_1", 32, 20, TD_NO_TYPE},
    [6] = {"Q5_0", TD_QK5_0, sizeof(td_block_q5_0), TD_TYPE_Q5_0},
    [7] = {"Q5_1", 32, 24, TD_NO_TYPE},
    [8] = {"Q8_0", TD_QK8_0, sizeof(td_block_q8_0), TD_TYPE_Q8_0},
    [9] = {"Q8_1", 32, 36, TD_NO_TYPE},
    [10] = {"Q2_K", TD_QK_K, sizeof(td_block_q2_K), TD_TYPE_Q2_K},
    [11] = {"Q3_K", TD_QK_K, sizeof(td_block_q3_K), TD_TYPE_Q3_K},
    [12] = {"Q4_K", TD_QK_K, sizeof(td_block_q4_K), TD_TYPE_Q4_K},
    [13] = {"Q5_K", TD_QK_K, sizeof(td_block_q5_K), TD_TYPE_Q5_K},
    [14] = {"Q6_K", TD_QK_K, sizeof(td_block_q6_K), TD_TYPE_Q6_K},
    [15] = {"Q8_K", TD_QK_K, sizeof(td_block_q8_K), TD_NO_TYPE}, /* activations only: not a weight type */
    [16] = {"IQ2_XXS", TD_QK_K, sizeof(td_block_iq2_xxs), TD_TYPE_IQ2_XXS},
    [17] = {"IQ2_XS", 256, 74, TD_NO_TYPE},
    [18] = {"IQ3_XXS", 256, 98, TD_NO_TYPE},
    [19] = {"IQ1_S", TD_QK_K, sizeof(td_block_iq1_s), TD_TYPE_IQ1_S},
    [20] = {"IQ4_NL", TD_QK4_NL, sizeof(td_block_iq4_nl), TD_TYPE_IQ4_NL},
    [21] = {"IQ3_S", 256, 110, TD_NO_TYPE},
    [22] = {"IQ2_S", 256, 82, TD_NO_TYPE},
    [23] = {"IQ4_XS", TD_QK_K, sizeof(td_block_iq4_xs), TD_TYPE_IQ4_XS},
    [24] = {"I8", 1, 1, TD_TYPE_I8},
    [25] = {"I16", 1, 2, TD_TYPE_I16},
    [26] = {"I32", 1, 4, TD_TYPE_I32},
    [27] = {"I64", 1, 8, TD_TYPE_I64},
    [28] = {"F64", 1, 8, TD_TYPE_F64},
    [29] = {"IQ1_M", 256, 56, TD_NO_TYPE},
    [30] = {"BF16", 1, 2, TD_TYPE_BF16},
    [34] = {"TQ1_0", 256, 54, TD_NO_TYPE},
    [35] = {"TQ2_0", 256, 66, TD_NO_TYPE},
    [39] = {"MXFP4", 32, 17, TD_NO_TYPE},
};
#define TD_N_GGML_TYPES (sizeof td_ggml_types / sizeof td_ggml_types[0])

const td_ggml_type_info *td_ggml_type(uint32_t id)
{
    if (id >= TD_N_GGML_TYPES || !td_ggml_types[id].name) return NULL;
    return &td_ggml_types[id];
}

bool td_ggml_type_from_td(td_type t, uint32_t *id)
{
    for (uint32_t i = 0; i < TD_N_GGML_TYPES; i++) {
        if (td_ggml_types[i].name && td_ggml_types[i].type == t && t != TD_NO_TYPE) {
            *id = i;
            return true;
        }
    }
    return false;
}
