#include "td_types.h"

#include "td_blocks.h"

#include <strings.h>

static const td_type_traits td_traits[TD_TYPE_COUNT] = {
    [TD_TYPE_F32] = {"f32", 1, 4, true, false},
    [TD_TYPE_F16] = {"f16", 1, 2, true, false},
    [TD_TYPE_BF16] = {"bf16", 1, 2, true, false},
    [TD_TYPE_F64] = {"f64", 1, 8, true, false},
    [TD_TYPE_F8_E4M3] = {"f8_e4m3", 1, 1, true, false},
    [TD_TYPE_I8] = {"i8", 1, 1, false, false},
    [TD_TYPE_U8] = {"u8", 1, 1, false, false},
    [TD_TYPE_I16] = {"i16", 1, 2, false, false},
    [TD_TYPE_I32] = {"i32", 1, 4, false, false},
    [TD_TYPE_I64] = {"i64", 1, 8, false, false},
    [TD_TYPE_BOOL] = {"bool", 1, 1, false, false},
    [TD_TYPE_Q4_0] = {"q4_0", TD_QK4_0, sizeof(td_block_q4_0), false, true},
    [TD_TYPE_Q5_0] = {"q5_0", TD_QK5_0, sizeof(td_block_q5_0), false, true},
    [TD_TYPE_Q8_0] = {"q8_0", TD_QK8_0, sizeof(td_block_q8_0), false, true},
    [TD_TYPE_Q2_K] = {"q2_K", TD_QK_K, sizeof(td_block_q2_K), false, true},
    [TD_TYPE_Q3_K] = {"q3_K", TD_QK_K, sizeof(td_block_q3_K), false, true},
    [TD_TYPE_Q4_K] = {"q4_K", TD_QK_K, sizeof(td_block_q4_K), false, true},
    [TD_TYPE_Q5_K] = {"q5_K", TD_QK_K, sizeof(td_block_q5_K), false, true},
    [TD_TYPE_Q6_K] = {"q6_K", TD_QK_K, sizeof(td_block_q6_K), false, true},
    [TD_TYPE_Q8_K] = {"q8_K", TD_QK_K, sizeof(td_block_q8_K), false, true},
    [TD_TYPE_IQ4_NL] = {"iq4_nl", TD_QK4_NL, sizeof(td_block_iq4_nl), false, true},
    [TD_TYPE_IQ4_XS] = {"iq4_xs", TD_QK_K, sizeof(td_block_iq4_xs), false, true},
    [TD_TYPE_IQ2_XXS] = {"iq2_xxs", TD_QK_K, sizeof(td_block_iq2_xxs), false, true},
    [TD_TYPE_IQ1_S] = {"iq1_s", TD_QK_K, sizeof(td_block_iq1_s), false, true},
};

const td_type_traits *td_type_info(td_type t)
{
    static const td_type_traits unknown = {"unknown", 1, 0, false, false};
    return (t >= 0 && t < TD_TYPE_COUNT) ? &td_traits[t] : &unknown;
}

const char *td_type_name(td_type t) { return td_type_info(t)->name; }

bool td_type_from_name(const char *name, td_type *out)
{
    for (int t = 0; t < TD_TYPE_COUNT; t++) {
        if (strcasecmp(name, td_traits[t].name) == 0) {
            *out = (td_type)t;
            return true;
        }
    }
    return false;
}

bool td_type_row_ok(td_type t, int64_t n)
{
    const td_type_traits *tt = td_type_info(t);
    return tt->block_bytes > 0 && n >= 0 && n % tt->block_elems == 0;
}

size_t td_type_row_bytes(td_type t, int64_t n)
{
    const td_type_traits *tt = td_type_info(t);
    return (size_t)(n / tt->block_elems) * (size_t)tt->block_bytes;
}

bool td_type_nbytes(td_type t, int64_t count, uint64_t *out)
{
    const td_type_traits *tt = td_type_info(t);
    if (tt->block_bytes == 0 || count < 0 || count % tt->block_elems != 0) return false;
    uint64_t blocks = (uint64_t)(count / tt->block_elems);
    if (blocks > UINT64_MAX / (uint64_t)tt->block_bytes) return false;
    *out = blocks * (uint64_t)tt->block_bytes;
    return true;
}
