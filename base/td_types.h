/* td_types: element types of tensors (file dtypes and quant formats) and their traits. */
#ifndef TD_TYPES_H
#define TD_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum td_type {
    TD_TYPE_F32 = 0,
    TD_TYPE_F16 = 1,
    TD_TYPE_BF16 = 2,
    TD_TYPE_F64 = 3,
    TD_TYPE_F8_E4M3 = 4, /* DeepSeek's FP8 weights; scaled per 128x128 block by weight_scale_inv */
    TD_TYPE_I8 = 5,
    TD_TYPE_U8 = 6,
    TD_TYPE_I16 = 7,
    TD_TYPE_I32 = 8,
    TD_TYPE_I64 = 9,
    TD_TYPE_BOOL = 10,
    TD_TYPE_Q4_0 = 11,
    TD_TYPE_Q5_0 = 12,
    TD_TYPE_Q8_0 = 13,
    TD_TYPE_Q2_K = 14,
    TD_TYPE_Q3_K = 15,
    TD_TYPE_Q4_K = 16,
    TD_TYPE_Q5_K = 17,
    TD_TYPE_Q6_K = 18,
    TD_TYPE_Q8_K = 19, /* activations only (dot-product partner of the K-quants) */
    TD_TYPE_IQ4_NL = 20,
    TD_TYPE_IQ4_XS = 21,
    TD_TYPE_IQ2_XXS = 22,
    TD_TYPE_IQ1_S = 23,
    TD_TYPE_COUNT
} td_type;

typedef struct td_type_traits {
    const char *name;   /* as users know it: "q4_K", "bf16", "f8_e4m3" */
    int block_elems;    /* elements per block (1 for plain types) */
    int block_bytes;    /* bytes per block */
    bool is_float;      /* a plain float type (f32, f16, bf16, f64, f8) */
    bool is_quant;      /* a block-quantized type */
} td_type_traits;

const td_type_traits *td_type_info(td_type t);
const char *td_type_name(td_type t);
/* Parses a name such as "q4_k", "Q8_0", "bf16" (case-insensitive); false if unknown. */
bool td_type_from_name(const char *name, td_type *out);
/* True when a row of `n` elements of type t is a whole number of blocks. */
bool td_type_row_ok(td_type t, int64_t n);
/* Bytes of a row of `n` elements (n must be a multiple of the block size). */
size_t td_type_row_bytes(td_type t, int64_t n);
/* Bytes of `count` elements; false if count is not a whole number of blocks or the size overflows. */
bool td_type_nbytes(td_type t, int64_t count, uint64_t *out);

#ifdef __cplusplus
}
#endif

#endif
