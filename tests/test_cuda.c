/* The CUDA kernels against the CPU reference (skipped without a GPU or a CUDA build). */
#include "td_blocks.h"
#include "td_cuda.h"
#include "td_dequant.h"
#include "td_float.h"
#include "td_ops.h"
#include "td_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Random rows of a type: plain floats, or Q8_0 blocks with finite scales. */
static uint8_t *random_rows(td_type t, int64_t rows, int64_t cols, uint64_t *st, size_t *bytes)
{
    *bytes = td_type_row_bytes(t, cols) * (size_t)rows;
    uint8_t *b = malloc(*bytes);
    int64_t n = rows * cols;
    switch (t) {
    case TD_TYPE_F32:
        for (int64_t i = 0; i < n; i++) {
            float f = td_test_randf(st);
            memcpy(b + 4 * i, &f, 4);
        }
        break;
    case TD_TYPE_F16:
    case TD_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            float f = td_test_randf(st);
            uint16_t h = t == TD_TYPE_F16 ? td_f32_to_f16(f) : td_f32_to_bf16(f);
            memcpy(b + 2 * i, &h, 2);
        }
        break;
    default: /* Q8_0 */
        for (int64_t blk = 0; blk < n / TD_QK8_0; blk++) {
            td_block_q8_0 q;
            q.d = td_f32_to_f16(0.01f + 0.02f * fabsf(td_test_randf(st)));
            for (int i = 0; i < TD_QK8_0; i++) q.qs[i] = (int8_t)(td_test_rand(st) % 255 - 127);
            memcpy(b + (size_t)blk * sizeof q, &q, sizeof q);
        }
    }
    return b;
}

int main(void)
{
    if (!td_cuda_compiled()) return td_test_skip("built without CUDA");
    if (td_cuda_device_count() == 0) return td_test_skip("no CUDA device");
    td_cuda_device_info info;
    TD_CHECKF(td_cuda_device_query(0, &info) == TD_OK, "%s", td_errmsg());
    fprintf(stderr, "cuda:0 %s sm_%d%d, %.1f GiB, %.0f GB/s\n", info.name, info.sm_major, info.sm_minor,
            (double)info.total_bytes / (1 << 30), info.mem_bandwidth_gbps);
    TD_CHECK(td_cuda_device_query(99, &info) == TD_E_DEVICE);

    const td_type types[] = {TD_TYPE_F32, TD_TYPE_F16, TD_TYPE_BF16, TD_TYPE_Q8_0};
    uint64_t st = 7;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        td_type t = types[ti];
        int64_t rows = 37, cols = 7168; /* odd row count, the real hidden size */
        size_t bytes;
        uint8_t *w = random_rows(t, rows, cols, &st, &bytes);
        td_matrix m = {.type = t, .rows = rows, .cols = cols, .data = w, .row_bytes = td_type_row_bytes(t, cols)};
        float *ref = malloc((size_t)(rows * cols) * sizeof(float)), *gpu = malloc((size_t)(rows * cols) * sizeof(float));
        for (int64_t r = 0; r < rows; r++) td_matrix_dequant_row(&m, r, ref + r * cols);
        TD_CHECKF(td_cuda_dequant_rows(t, w, bytes, rows, cols, gpu) == TD_OK, "%s", td_errmsg());
        TD_CHECKF(memcmp(ref, gpu, (size_t)(rows * cols) * sizeof(float)) == 0, "%s dequant differs", td_type_name(t));
        float *x = malloc((size_t)cols * sizeof(float)), *y = malloc((size_t)rows * sizeof(float));
        float *yr = malloc((size_t)rows * sizeof(float));
        for (int64_t c = 0; c < cols; c++) x[c] = td_test_randf(&st);
        TD_CHECKF(td_cuda_gemv(t, w, bytes, rows, cols, x, y) == TD_OK, "%s", td_errmsg());
        for (int64_t r = 0; r < rows; r++) {
            double acc = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
                acc += (double)ref[r * cols + c] * x[c];
                mag += fabs((double)ref[r * cols + c] * x[c]);
            }
            yr[r] = (float)acc;
            TD_CHECKF(fabs(y[r] - acc) <= 1e-5 * mag + 1e-6, "%s gemv row %lld: %g vs %g", td_type_name(t),
                      (long long)r, y[r], acc);
        }
        free(w), free(ref), free(gpu), free(x), free(y), free(yr);
    }
    return td_test_finish();
}
