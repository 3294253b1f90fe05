/* td_quant: scalar reference dequantizers of the GGUF block formats (td_blocks.h).
 *
 * These are the ground truth every fast kernel (AVX2, AVX-512, AMX, CUDA) is tested against, and what the
 * model loader reads small tensors with, so they sit in base/ beside the formats. Dequantization
 * reproduces ggml's float32 results bit for bit (tests/test_quant_vectors.c). The reference dot products
 * are the CPU kernels' (td_quant_dot.h). */
#ifndef TD_QUANT_H
#define TD_QUANT_H

#include "td_types.h"

#include <stdint.h>

/* Converts n elements (a whole number of blocks) starting at src. */
typedef void (*td_quant_to_float_fn)(const void *src, float *dst, int64_t n);

/* The reference dequantizer of a block-quantized type, or NULL if the type is not supported. */
td_quant_to_float_fn td_quant_to_float(td_type t);

#endif
