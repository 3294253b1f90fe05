/* td_ops: small float32 operations of the forward pass (norms, activations, softmax, RoPE helpers) and
 * the scalar reference matrix products. */
#ifndef TD_OPS_H
#define TD_OPS_H

#include "td_matrix.h"

#include <stdint.h>

/* y = x / rms(x) * w over n elements; y may alias x. */
void td_rmsnorm(float *y, const float *x, const float *w, int64_t n, double eps);
static inline float td_silu(float x) { return x / (1.0f + __builtin_expf(-x)); }
static inline float td_sigmoid(float x) { return 1.0f / (1.0f + __builtin_expf(-x)); }
/* In place; returns the maximum before normalization. */
float td_softmax(float *x, int64_t n);
float td_dot_f32(const float *a, const float *b, int64_t n);
/* y += a * x */
void td_axpy_f32(float *y, float a, const float *x, int64_t n);
int64_t td_argmax_f32(const float *x, int64_t n);

/* Reference products: each weight row is dequantized into row_buf (m->cols floats), then used in float32.
 * td_linear_ref:   y[t][r] = sum_c W[r][c] x[t][c]   for t < n_tok (x is [n_tok][cols], y [n_tok][rows])
 * td_linear_t_ref: y[c]    = sum_r W[r][c] x[r]      (the transposed product, one vector) */
void td_linear_ref(const td_matrix *w, const float *x, int64_t n_tok, float *y, float *row_buf);
void td_linear_t_ref(const td_matrix *w, const float *x, float *y, float *row_buf);

#endif
