/* td_randw: random but valid weights of any type, for kernel tests and benchmarks: random quant bytes
 * with finite f16 scales of a sane size (random bits there could be NaN or 65504), random floats in
 * [-1, 1) for the float types. Deterministic for a seed; `offset` is the element index of data[0]
 * inside the stream, so threads can fill slices of one matrix in parallel with the same result. */
#ifndef TD_RANDW_H
#define TD_RANDW_H

#include "td_types.h"

#include <stddef.h>
#include <stdint.h>

/* Fills `nbytes` (a whole number of blocks) of type t. */
void td_randw_fill(td_type t, void *data, size_t nbytes, uint64_t seed, uint64_t offset);
/* splitmix64 */
uint64_t td_randw_next(uint64_t *state);

#endif
