/* td_dequant: scalar reference conversion of stored weights to float32. These are the ground truth the
 * fast kernels are tested against; they favour clarity over speed. */
#ifndef TD_DEQUANT_H
#define TD_DEQUANT_H

#include "td_matrix.h"
#include "td_types.h"

#include <stdbool.h>
#include <stdint.h>

/* Converts n elements (a whole number of blocks) starting at src. */
typedef void (*td_to_float_fn)(const void *src, float *dst, int64_t n);

/* The reference converter of a type, or NULL when tandem cannot compute with it. */
td_to_float_fn td_to_float(td_type t);
bool td_type_computable(td_type t);

/* One row of a matrix as floats (dst holds m->cols), applying FP8 block scales. */
void td_matrix_dequant_row(const td_matrix *m, int64_t row, float *dst);

/* Plain-type converters (the quantized ones live in td_quant_ref.c). */
void td_f32_to_float(const void *src, float *dst, int64_t n);
void td_f16_to_float(const void *src, float *dst, int64_t n);
void td_bf16_to_float(const void *src, float *dst, int64_t n);
void td_e4m3_to_float(const void *src, float *dst, int64_t n);

#endif
