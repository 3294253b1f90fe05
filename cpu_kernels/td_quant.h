/* td_quant: reference dequantizers and dot products of the GGUF block formats (td_blocks.h). */
#ifndef TD_QUANT_H
#define TD_QUANT_H

#include "td_types.h"

#include <stdint.h>

typedef void (*td_quant_to_float_fn)(const void *src, float *dst, int64_t n);

/* The reference dequantizer of a block-quantized type, or NULL if the type is not supported. */
td_quant_to_float_fn td_quant_to_float(td_type t);

#endif
