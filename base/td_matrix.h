/* td_matrix: a weight matrix as the kernels see it: `rows` outputs of `cols` inputs each, stored row by
 * row in any td_type, read in place from the mapped file. y = W x means y[r] = sum_c W[r][c] x[c]. */
#ifndef TD_MATRIX_H
#define TD_MATRIX_H

#include "td_types.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct td_matrix {
    td_type type;
    int64_t rows, cols;
    const uint8_t *data;      /* row r starts at data + r * row_bytes */
    size_t row_bytes;
    /* F8_E4M3 only: the checkpoint's weight_scale_inv grid, one float per block of
     * scale_block[0] x scale_block[1] weights, for the whole source tensor (views keep scale_row0). */
    const uint8_t *scale_inv; /* float32, possibly unaligned */
    int64_t scale_rows, scale_cols;
    int64_t scale_row0;       /* first row of this view inside the source tensor */
    int scale_block[2];
    const char *name;         /* canonical tensor name, for messages */
} td_matrix;

/* The three matrices of one SwiGLU FFN: down(silu(gate x) * up x). gate/up are [width, hidden], down is
 * [hidden, width]. The model's dense, shared and expert FFNs are these, and the FFN kernels take them. */
typedef struct td_ffn_weights {
    td_matrix gate, up, down;
} td_ffn_weights;

/* Rows [row0, row0 + nrows) of m, as a matrix of its own. */
static inline td_matrix td_matrix_rows(const td_matrix *m, int64_t row0, int64_t nrows)
{
    td_matrix v = *m;
    v.rows = nrows;
    v.data = m->data + (size_t)row0 * m->row_bytes;
    v.scale_row0 = m->scale_row0 + row0;
    return v;
}

static inline float td_load_f32(const void *p)
{
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

/* Bytes a matrix reads per use (its weights and scales). */
static inline uint64_t td_matrix_bytes(const td_matrix *m)
{
    uint64_t b = (uint64_t)m->rows * m->row_bytes;
    if (m->scale_inv && m->scale_block[0] > 0)
        b += (uint64_t)((m->rows + m->scale_block[0] - 1) / m->scale_block[0]) * (uint64_t)m->scale_cols * 4u;
    return b;
}

#endif
