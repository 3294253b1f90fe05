#include "td_dequant.h"

#include "td_float.h"
#include "td_quant.h"
#include "td_status.h"

void td_f32_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }

void td_f16_to_float(const void *src, float *dst, int64_t n)
{
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = td_f16_to_f32(h);
    }
}

void td_bf16_to_float(const void *src, float *dst, int64_t n)
{
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = td_bf16_to_f32(h);
    }
}

void td_e4m3_to_float(const void *src, float *dst, int64_t n)
{
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = td_e4m3_to_f32(s[i]);
}

td_to_float_fn td_to_float(td_type t)
{
    switch (t) {
    case TD_TYPE_F32: return td_f32_to_float;
    case TD_TYPE_F16: return td_f16_to_float;
    case TD_TYPE_BF16: return td_bf16_to_float;
    case TD_TYPE_F8_E4M3: return td_e4m3_to_float;
    default: return td_quant_to_float(t);
    }
}

bool td_type_computable(td_type t) { return td_to_float(t) != NULL; }

void td_matrix_dequant_row(const td_matrix *m, int64_t row, float *dst)
{
    const uint8_t *src = m->data + (size_t)row * m->row_bytes;
    td_to_float_fn f = td_to_float(m->type);
    TD_ASSERT(f != NULL);
    f(src, dst, m->cols);
    if (m->type == TD_TYPE_F8_E4M3 && m->scale_inv) {
        int64_t br = (m->scale_row0 + row) / m->scale_block[0];
        TD_ASSERT(br < m->scale_rows);
        const uint8_t *srow = m->scale_inv + (size_t)br * (size_t)m->scale_cols * 4u;
        int bc = m->scale_block[1];
        for (int64_t c0 = 0, b = 0; c0 < m->cols; c0 += bc, b++) {
            float s = td_load_f32(srow + 4 * b);
            int64_t c1 = c0 + bc < m->cols ? c0 + bc : m->cols;
            for (int64_t c = c0; c < c1; c++) dst[c] *= s;
        }
    }
}
