/* td_quantize: float32 -> the GGUF storage types tandem writes (tandem convert). Scalar, reference quality.
 *
 * Every quantizer guarantees a per-element bound that follows from its format, checked by
 * tests/test_quantize.c through the reference dequantizers:
 *  - F16, BF16: round to nearest even (relative error 2^-11, 2^-8; F16 overflows to inf above 65504).
 *  - Q8_0 (32 values, d = max|x| / 127), Q5_0 (32 values, levels -15..15 of d = max|x| / 15),
 *    Q6_K (16 groups of 16, levels -31..31 of d * sc, sc 8-bit): the scales are rounded up, never down,
 *    so no value is clamped and |x - x'| <= step / 2, where step is the stored scale of its (sub-)block.
 *  - Q4_K (8 groups of 32, x' = d*sc*q - dmin*m, q 0..15, sc and m 6-bit): per group the min is covered
 *    by rounding m up and the range by rounding sc up, so again |x - x'| <= d*sc / 2.
 *  - Q5_K: Q4_K with levels 0..31, the same bound.
 * Positive group minimums are represented as 0, as in ggml. Non-finite inputs are the caller's to refuse. */
#ifndef TD_QUANTIZE_H
#define TD_QUANTIZE_H

#include "td_types.h"

#include <stdbool.h>
#include <stdint.h>

/* Quantizes n floats (a whole number of blocks of the type) into dst. */
typedef void (*td_quantize_fn)(const float *x, void *dst, int64_t n);

/* The quantizer of a type (F32, F16, BF16, Q8_0, Q5_0, Q4_K, Q5_K, Q6_K), or NULL. */
td_quantize_fn td_quantize_row(td_type t);

/* Rounds a non-negative float to the nearest f16 at or above it (for scales that must cover a range). */
uint16_t td_f16_round_up(float v);

#endif
