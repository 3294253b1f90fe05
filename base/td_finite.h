/* td_finite: finding NaN and Inf in float arrays, for the model loader (damaged files) and the forward
 * pass (outputs of every call). */
#ifndef TD_FINITE_H
#define TD_FINITE_H

#include <stdint.h>

/* The index of the first NaN or Inf among x[0..n), or -1 when all are finite. Cheap enough for every
 * decode step's logits. */
int64_t td_first_nonfinite(const float *x, int64_t n);

#endif
