/* td_quant_dot: scalar reference dot products of the GGUF block formats, the ground truth of the fast
 * dot kernels.
 *  - The integer dot products pair a weight row with activations quantized to Q8_0 (formats with blocks
 *    of 32) or Q8_K (super-blocks of 256), as fast kernels do: integer sums inside each (sub-)block,
 *    scaled in float. Their value equals dequantize-then-dot up to float rounding.
 *  - The float dot dequantizes block by block and accumulates in double: the exact answer for a row. */
#ifndef TD_QUANT_DOT_H
#define TD_QUANT_DOT_H

#include "td_types.h"

#include <stdint.h>

/* ------------------------------------------------------------------ activations */

/* Q8_0: per 32 values, d = max|x| / 127 (stored as f16), q = round-half-even(x / d).
 * Q8_K: per 256 values, d = max|x| / 127 (float), q = round-half-even(x / d), plus the sum of each 16 q.
 * An all-zero block gets d = 0 and q = 0. n must be a multiple of the block size. */
void td_quantize_row_q8_0_ref(const float *x, void *dst, int64_t n);
void td_quantize_row_q8_K_ref(const float *x, void *dst, int64_t n);

/* ------------------------------------------------------------------ dot products */

/* sum_i w[i] * a[i] over n elements (a multiple of the weight type's block): w holds n weights of the
 * weight type, a holds n activations of td_quant_vec_dot_type(weight type). */
typedef float (*td_quant_vec_dot_fn)(const void *w, const void *a, int64_t n);

/* The activation type a weight type's integer dot product takes (TD_TYPE_Q8_0 or TD_TYPE_Q8_K), or
 * TD_TYPE_COUNT when the type has no integer dot product (plain floats). */
td_type td_quant_vec_dot_type(td_type t);
/* The reference integer dot product of a weight type, or NULL (see td_quant_vec_dot_type). */
td_quant_vec_dot_fn td_quant_vec_dot(td_type t);

/* sum_i w[i] * x[i] with float32 x, for any type td_to_float() converts (F32, F16, BF16 and every quant
 * type): weights dequantized block by block, products accumulated in double. */
float td_quant_dot_f32_ref(td_type t, const void *w, const float *x, int64_t n);

#endif
