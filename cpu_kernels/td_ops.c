#include "td_ops.h"

#include "td_dequant.h"

#include <math.h>
#include <stdbool.h>

void td_rmsnorm(float *y, const float *x, const float *w, int64_t n, double eps)
{
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float inv = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * inv * w[i];
}

float td_softmax(float *x, int64_t n)
{
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
    return mx;
}

float td_dot_f32(const float *a, const float *b, int64_t n)
{
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void td_axpy_f32(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

int64_t td_argmax_f32(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

void td_linear_ref(const td_matrix *w, const float *x, int64_t n_tok, float *y, float *row_buf)
{
    for (int64_t r = 0; r < w->rows; r++) {
        td_matrix_dequant_row(w, r, row_buf);
        for (int64_t t = 0; t < n_tok; t++) y[t * w->rows + r] = td_dot_f32(row_buf, x + t * w->cols, w->cols);
    }
}

void td_linear_t_ref(const td_matrix *w, const float *x, float *y, float *row_buf)
{
    for (int64_t c = 0; c < w->cols; c++) y[c] = 0.0f;
    for (int64_t r = 0; r < w->rows; r++) {
        td_matrix_dequant_row(w, r, row_buf);
        td_axpy_f32(y, x[r], row_buf, w->cols);
    }
}
