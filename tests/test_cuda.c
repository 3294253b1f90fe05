/* The CUDA kernels against the CPU reference (skipped without a GPU or a CUDA build):
 *  - dequantization of every type the GPU reads in place, bit for bit (FP8 with 128x128 scales and a
 *    view that starts inside a scale block);
 *  - the matrix-vector products of 1, 3 and 8 rows, and the cuBLAS products in fp32 and bf16, against
 *    float64 sums over the same weights;
 *  - the router against td_router.c on the same logits: the same experts, the same weights;
 *  - MLA attention in the absorbed form at DeepSeek-V3's shapes (128 heads, latent 512, rope 64) over
 *    contexts of 1, 4K and 32K positions, against float64 on a few heads, with its time and the bytes of
 *    cache it read (reported, not asserted);
 *  - a fault inside a kernel, reported at the next sync with the operation and module that ran. */
#include "td_cuda.h"
#include "td_test.h"

#ifdef TANDEM_HAVE_CUDA

#include "td_backend_cuda.h"
#include "td_clock.h"
#include "td_cuda_kernels.h"
#include "td_dequant.h"
#include "td_float.h"
#include "td_model.h"
#include "td_randw.h"
#include "td_router.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *dev_put(td_cuda *c, const void *host, size_t bytes)
{
    void *d = NULL;
    if (!TD_CHECKF(td_cuda_alloc(c, bytes, &d) == TD_OK, "%s", td_errmsg())) return NULL;
    TD_CHECKF(td_cuda_upload(c, d, host, bytes) == TD_OK, "%s", td_errmsg());
    return d;
}

static bool dev_get(td_cuda *c, void *host, const void *dev, size_t bytes)
{
    return TD_CHECKF(td_cuda_d2h(c, host, bytes, dev, bytes, bytes, 1) == TD_OK && td_cuda_sync(c) == TD_OK, "%s",
                     td_errmsg());
}

/* ------------------------------------------------------------------ weights and products */

typedef struct weights {
    td_matrix m;      /* host view */
    td_cuda_mat d;    /* the same on the device */
    uint8_t *data;
    float *scale, *ref; /* ref: the CPU's dequantized rows of the view */
} weights;

/* rows x cols of type t; FP8 gets a 128x128 scale grid and the view starts at row `skip` of the tensor. */
static bool weights_make(td_cuda *c, td_type t, int64_t rows, int64_t cols, int64_t skip, uint64_t seed, weights *w)
{
    memset(w, 0, sizeof *w);
    int64_t all = rows + skip;
    size_t rb = td_type_row_bytes(t, cols);
    w->data = malloc(rb * (size_t)all);
    td_randw_fill(t, w->data, rb * (size_t)all, seed, 0);
    w->m = (td_matrix){.type = t, .rows = all, .cols = cols, .data = w->data, .row_bytes = rb, .name = "test.weight"};
    if (t == TD_TYPE_F8_E4M3) {
        int64_t sr = (all + 127) / 128, sc = (cols + 127) / 128;
        w->scale = malloc((size_t)(sr * sc) * sizeof(float));
        uint64_t s = seed;
        for (int64_t i = 0; i < sr * sc; i++) w->scale[i] = 0.001f + 0.01f * fabsf(td_test_randf(&s));
        w->m.scale_inv = (const uint8_t *)w->scale;
        w->m.scale_rows = sr;
        w->m.scale_cols = sc;
        w->m.scale_block[0] = w->m.scale_block[1] = 128;
    }
    w->m = td_matrix_rows(&w->m, skip, rows);
    void *dd = dev_put(c, w->data, rb * (size_t)all);
    void *ds = w->scale ? dev_put(c, w->scale, (size_t)(w->m.scale_rows * w->m.scale_cols) * sizeof(float)) : NULL;
    if (!dd) return false;
    w->d = (td_cuda_mat){.type = t, .rows = rows, .cols = cols, .data = (uint8_t *)dd + rb * (size_t)skip, .row_bytes = rb,
                         .scale = ds, .scale_cols = w->m.scale_cols, .scale_row0 = w->m.scale_row0,
                         .scale_block = {w->m.scale_block[0], w->m.scale_block[1]}};
    w->ref = malloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t r = 0; r < rows; r++) td_matrix_dequant_row(&w->m, r, w->ref + r * cols);
    return true;
}

static void weights_free(weights *w)
{
    free(w->data);
    free(w->scale);
    free(w->ref);
}

/* max over rows of |got - sum| / sum |w x| against float64 sums */
static double product_err(const weights *w, const float *x, const float *y, int64_t n)
{
    double worst = 0.0;
    for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < w->m.rows; r++) {
            double acc = 0.0, mag = 1e-30;
            for (int64_t j = 0; j < w->m.cols; j++) {
                double p = (double)w->ref[r * w->m.cols + j] * x[t * w->m.cols + j];
                acc += p;
                mag += fabs(p);
            }
            worst = fmax(worst, fabs(y[t * w->m.rows + r] - acc) / mag);
        }
    return worst;
}

static void check_type(td_cuda *c, td_type t, uint64_t *seed)
{
    const int64_t rows = t == TD_TYPE_F8_E4M3 ? 170 : 37, cols = 7168, skip = t == TD_TYPE_F8_E4M3 ? 130 : 0;
    const int64_t nx = 20;
    weights w;
    if (!weights_make(c, t, rows, cols, skip, (*seed)++, &w)) return;
    char why[160];
    TD_CHECKF(td_cuda_mat_ok(&w.d, why, sizeof why), "%s: %s", td_type_name(t), why);
    /* dequantization: the CPU's values exactly */
    float *got = malloc((size_t)(rows * cols) * sizeof(float)), *dgot;
    TD_CHECKF(td_cuda_alloc(c, (size_t)(rows * cols) * sizeof(float), (void **)&dgot) == TD_OK, "%s", td_errmsg());
    TD_CHECKF(td_cuda_dequant(c, &w.d, 0, rows, dgot) == TD_OK, "%s", td_errmsg());
    if (dev_get(c, got, dgot, (size_t)(rows * cols) * sizeof(float)))
        TD_CHECKF(memcmp(got, w.ref, (size_t)(rows * cols) * sizeof(float)) == 0, "%s: dequantized values differ",
                  td_type_name(t));
    /* products */
    float *x = malloc((size_t)(nx * cols) * sizeof(float)), *y = malloc((size_t)(nx * rows) * sizeof(float));
    uint64_t s = *seed;
    for (int64_t i = 0; i < nx * cols; i++) x[i] = td_test_randf(&s);
    float *dx = dev_put(c, x, (size_t)(nx * cols) * sizeof(float)), *dy;
    TD_CHECKF(td_cuda_alloc(c, (size_t)(nx * rows) * sizeof(float), (void **)&dy) == TD_OK, "%s", td_errmsg());
    TD_CHECKF(td_cuda_gemm_reserve(c, nx, cols) == TD_OK, "%s", td_errmsg());
    const int ns[] = {1, 3, 8};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        td_cuda_gemv g = {.w = w.d, .out_rows = rows, .grp = rows, .x = dx, .ldx = cols, .x_div = 1, .y = dy,
                          .ldy = rows, .n = ns[i], .batches = 1};
        TD_CHECKF(td_cuda_gemv_run(c, &g) == TD_OK, "%s", td_errmsg());
        if (!dev_get(c, y, dy, (size_t)(ns[i] * rows) * sizeof(float))) continue;
        double e = product_err(&w, x, y, ns[i]);
        TD_CHECKF(e <= 1e-6, "%s gemv of %d rows: relative error %.3g", td_type_name(t), ns[i], e);
    }
    for (int bf16 = 0; bf16 <= 1; bf16++) {
        TD_CHECKF(td_cuda_gemm(c, &w.d, dx, cols, dy, rows, nx, false, bf16) == TD_OK, "%s", td_errmsg());
        if (!dev_get(c, y, dy, (size_t)(nx * rows) * sizeof(float))) continue;
        double e = product_err(&w, x, y, nx), bound = bf16 ? 1e-2 : 1e-6;
        TD_CHECKF(e <= bound, "%s gemm %s of %lld rows: relative error %.3g (bound %g)", td_type_name(t),
                  bf16 ? "bf16" : "fp32", (long long)nx, e, bound);
    }
    td_cuda_release(c, dgot);
    td_cuda_release(c, dx);
    td_cuda_release(c, dy);
    td_cuda_release(c, (void *)((const uint8_t *)w.d.data - w.d.row_bytes * (size_t)skip));
    td_cuda_release(c, (void *)w.d.scale);
    free(got), free(x), free(y);
    weights_free(&w);
}

/* ------------------------------------------------------------------ the router */

static void check_router(td_cuda *c)
{
    td_hparams hp = {.n_routed_experts = 256, .n_experts_per_tok = 8, .n_group = 8, .topk_group = 4,
                     .routed_scaling_factor = 2.5, .norm_topk_prob = true, .scoring = TD_SCORING_SIGMOID,
                     .topk_method = TD_TOPK_NOAUX_TC};
    const int64_t n = 64, E = 256, k = 8;
    float *logits = malloc((size_t)(n * E) * sizeof(float)), *scores = malloc((size_t)(n * E) * sizeof(float));
    float *bias = malloc((size_t)E * sizeof(float)), choice[256], wref[64 * 8], wgot[64 * 8];
    int32_t ids_ref[64 * 8], ids_got[64 * 8];
    uint64_t s = 99;
    for (int64_t i = 0; i < n * E; i++) logits[i] = 3.0f * td_test_randf(&s);
    for (int64_t e = 0; e < E; e++) bias[e] = 0.05f * td_test_randf(&s);
    memcpy(scores, logits, (size_t)(n * E) * sizeof(float));
    td_route_rows(&hp, bias, scores, n, choice, ids_ref, wref);
    float *dl = dev_put(c, logits, (size_t)(n * E) * sizeof(float)), *db = dev_put(c, bias, (size_t)E * sizeof(float));
    int32_t *di;
    float *dw;
    TD_CHECK(td_cuda_alloc(c, sizeof ids_got, (void **)&di) == TD_OK && td_cuda_alloc(c, sizeof wgot, (void **)&dw) == TD_OK);
    td_cuda_router rp = {.n_experts = 256, .k = 8, .n_group = 8, .topk_group = 4, .method = 0, .scoring = 0,
                         .norm_topk = true, .scaling = 2.5, .bias = db};
    TD_CHECKF(td_cuda_route(c, &rp, dl, E, n, di, k, dw, k) == TD_OK, "%s", td_errmsg());
    if (dev_get(c, ids_got, di, sizeof ids_got) && dev_get(c, wgot, dw, sizeof wgot)) {
        int differ = 0;
        double werr = 0.0;
        for (int64_t i = 0; i < n * k; i++) {
            differ += ids_got[i] != ids_ref[i];
            werr = fmax(werr, fabs(wgot[i] - wref[i]) / fabs(wref[i]));
        }
        TD_CHECKF(differ == 0, "router: %d of %lld choices differ from td_router.c", differ, (long long)(n * k));
        TD_CHECKF(werr <= 1e-6, "router weights: relative error %.3g", werr);
    }
    td_cuda_release(c, dl), td_cuda_release(c, db), td_cuda_release(c, di), td_cuda_release(c, dw);
    free(logits), free(scores), free(bias);
}

/* ------------------------------------------------------------------ MLA attention */

static float bf16_round(float v) { return td_bf16_to_f32(td_f32_to_bf16(v)); }

/* n rows ending at position ctx-1, bf16 or f32 cache of V3's shapes; heads checked against float64. */
static void check_mla(td_cuda *c, int64_t ctx, int n, bool bf16, bool tc, double gbps)
{
    const int64_t nh = 128, r = 512, dr = 64, rw = r + dr;
    const int check_heads[] = {0, 37, 127};
    uint64_t s = (uint64_t)ctx * 7 + (uint64_t)n;
    float *ckv = malloc((size_t)(ctx * r) * sizeof(float)), *kr = malloc((size_t)(ctx * dr) * sizeof(float));
    for (int64_t i = 0; i < ctx * r; i++) ckv[i] = bf16_round(td_test_randf(&s));
    for (int64_t i = 0; i < ctx * dr; i++) kr[i] = bf16_round(td_test_randf(&s));
    size_t el = bf16 ? 2 : 4;
    void *hc = malloc((size_t)(ctx * r) * el), *hk = malloc((size_t)(ctx * dr) * el);
    for (int64_t i = 0; i < ctx * r; i++) {
        if (bf16) ((uint16_t *)hc)[i] = td_f32_to_bf16(ckv[i]);
        else ((float *)hc)[i] = ckv[i];
    }
    for (int64_t i = 0; i < ctx * dr; i++) {
        if (bf16) ((uint16_t *)hk)[i] = td_f32_to_bf16(kr[i]);
        else ((float *)hk)[i] = kr[i];
    }
    float *qlat = malloc((size_t)(n * nh * r) * sizeof(float)), *q = malloc((size_t)(n * nh * 192) * sizeof(float));
    for (int64_t i = 0; i < n * nh * r; i++) qlat[i] = 0.05f * td_test_randf(&s);
    for (int64_t i = 0; i < n * nh * 192; i++) q[i] = 0.5f * td_test_randf(&s);
    td_cuda_mla a = {.kv = {.ckv = dev_put(c, hc, (size_t)(ctx * r) * el), .krope = dev_put(c, hk, (size_t)(ctx * dr) * el),
                            .bf16 = bf16, .r = r, .dr = dr},
                     .nh = nh, .ldql = nh * r, .ldq = nh * 192, .q_hstride = 192, .q_rope_off = 128, .ldol = nh * r,
                     .n = n, .pos0 = ctx - n, .scale = 0.07f, .tensor_cores = tc};
    a.qlat = dev_put(c, qlat, (size_t)(n * nh * r) * sizeof(float));
    a.q = dev_put(c, q, (size_t)(n * nh * 192) * sizeof(float));
    TD_CHECK(td_cuda_alloc(c, (size_t)(n * nh * r) * sizeof(float), (void **)&a.olat) == TD_OK);
    TD_CHECK(td_cuda_alloc(c, (size_t)td_cuda_mla_part_floats(n, nh, r) * sizeof(float), (void **)&a.part) == TD_OK);
    TD_CHECKF(td_cuda_mla_attend(c, &a) == TD_OK && td_cuda_sync(c) == TD_OK, "%s", td_errmsg());
    /* 30 ms of the same work first, so that the clocks have risen when the timing starts */
    for (double w0 = td_now(); td_now() - w0 < 0.03;) {
        TD_CHECK(td_cuda_mla_attend(c, &a) == TD_OK);
        TD_CHECK(td_cuda_sync(c) == TD_OK);
    }
    double t0 = td_now();
    const int reps = 20;
    for (int i = 0; i < reps; i++) TD_CHECK(td_cuda_mla_attend(c, &a) == TD_OK);
    TD_CHECK(td_cuda_sync(c) == TD_OK);
    double sec = (td_now() - t0) / reps, bytes = (double)(ctx * rw) * (double)el;
    float *out = malloc((size_t)(n * nh * r) * sizeof(float));
    if (dev_get(c, out, a.olat, (size_t)(n * nh * r) * sizeof(float))) {
        double *sc = malloc((size_t)ctx * sizeof(double)), *o = malloc((size_t)r * sizeof(double)), worst = 0.0;
        for (int t = 0; t < n; t++)
            for (size_t hi = 0; hi < sizeof check_heads / sizeof check_heads[0]; hi++) {
                int64_t h = check_heads[hi], len = ctx - n + t + 1;
                const float *ql = qlat + (t * nh + h) * r, *qr = q + (t * nh + h) * 192 + 128;
                double mx = -INFINITY, sum = 0.0, num = 0.0, den = 0.0;
                for (int64_t j = 0; j < len; j++) {
                    double d = 0.0;
                    for (int64_t e = 0; e < r; e++) d += (double)ql[e] * ckv[j * r + e];
                    for (int64_t e = 0; e < dr; e++) d += (double)qr[e] * kr[j * dr + e];
                    sc[j] = d * 0.07f;
                    mx = fmax(mx, sc[j]);
                }
                memset(o, 0, (size_t)r * sizeof(double));
                for (int64_t j = 0; j < len; j++) {
                    double p = exp(sc[j] - mx);
                    sum += p;
                    for (int64_t e = 0; e < r; e++) o[e] += p * ckv[j * r + e];
                }
                for (int64_t e = 0; e < r; e++) {
                    double ref = o[e] / sum, d = out[(t * nh + h) * r + e] - ref;
                    num += d * d;
                    den += ref * ref;
                }
                worst = fmax(worst, num / den);
            }
        /* fp32 products: order only; tensor cores: queries and weights rounded to bf16 (2^-9 each) */
        double bound = tc ? 2e-4 : 1e-10;
        TD_CHECKF(worst <= bound, "MLA, context %lld, %d rows, %s cache%s: NMSE %.3g (bound %g)", (long long)ctx, n,
                  bf16 ? "bf16" : "f32", tc ? ", tensor cores" : "", worst, bound);
        printf("mla %-4s ctx %6lld rows %d %s nmse %.1e %8.1f us %7.1f GB/s of cache, %4.1f%% of the copy's %.0f GB/s\n",
               tc ? "tc" : "fp32", (long long)ctx, n, bf16 ? "bf16" : "f32 ", worst, sec * 1e6, bytes / sec / 1e9,
               gbps > 0 ? 100.0 * bytes / sec / 1e9 / gbps : 0.0, gbps);
        free(sc), free(o);
    }
    td_cuda_release(c, a.kv.ckv), td_cuda_release(c, a.kv.krope), td_cuda_release(c, (void *)a.qlat);
    td_cuda_release(c, (void *)a.q), td_cuda_release(c, a.olat), td_cuda_release(c, a.part);
    free(ckv), free(kr), free(hc), free(hk), free(qlat), free(q), free(out);
}

/* ------------------------------------------------------------------ faults */

/* A fault inside a kernel queued by the backend: the next sync names the device, the operation and the
 * module. The CUDA context is unusable afterwards, so this runs last. */
static void check_fault(void)
{
    td_model *m = NULL;
    td_model_params mp = {.quiet = true};
    if (!TD_CHECKF(td_model_open(td_test_fixture("safetensors/tiny-dsv3-bf16"), &mp, &m) == TD_OK, "%s", td_errmsg()))
        return;
    td_backend *b = NULL;
    td_backend_cuda_params p = {.device = 0};
    td_status st = td_backend_cuda_create(m, &p, 4, &b);
    for (int i = 0; st == TD_OK && i < m->n_modules; i++) st = b->i->prepare(b, m, &m->modules[i], NULL);
    if (st == TD_OK) st = b->i->reserve(b, 4, 8);
    td_buf *x = NULL, *y = NULL;
    const td_matrix *w = &m->layers[1].attn.q_a;
    if (st == TD_OK) st = b->i->buf_new(b, (size_t)(4 * w->cols) * sizeof(float), &x);
    if (st == TD_OK) st = b->i->buf_new(b, (size_t)(4 * w->rows) * sizeof(float), &y);
    if (st == TD_OK) st = b->i->linear(b, w, td_view_rows(x, w->cols), td_view_rows(y, w->rows), 1);
    if (st == TD_OK) st = b->i->sync(b);
    TD_CHECKF(st == TD_OK, "%s", td_errmsg());
    if (st == TD_OK) {
        TD_CHECK(td_backend_cuda_inject_fault(b) == TD_OK);
        st = b->i->sync(b);
        TD_CHECKF(st == TD_E_DEVICE && strstr(td_errmsg(), "cuda:0") && strstr(td_errmsg(), "model.layers.1.self_attn"),
                  "a fault comes back at sync naming the module: %s", td_errmsg());
        printf("fault: %s\n", td_errmsg());
    }
    /* the backend is not freed: its context is gone */
    td_model_close(m);
}

static int run(void)
{
    td_cuda_device_info info;
    TD_CHECKF(td_cuda_device_query(0, &info) == TD_OK, "%s", td_errmsg());
    printf("cuda:0 %s sm_%d%d, %.1f GiB, %.0f GB/s\n", info.name, info.sm_major, info.sm_minor,
           (double)info.total_bytes / (1 << 30), info.mem_bandwidth_gbps);
    TD_CHECK(td_cuda_device_query(99, &info) == TD_E_DEVICE);
    td_cuda *c = NULL;
    if (!TD_CHECKF(td_cuda_create(0, 0, &c) == TD_OK, "%s", td_errmsg())) return td_test_finish();
    const td_type types[] = {TD_TYPE_F32,  TD_TYPE_F16,  TD_TYPE_BF16, TD_TYPE_F8_E4M3, TD_TYPE_Q8_0,
                             TD_TYPE_Q4_0, TD_TYPE_Q5_0, TD_TYPE_Q4_K, TD_TYPE_Q5_K,    TD_TYPE_Q6_K};
    uint64_t seed = 7;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) check_type(c, types[i], &seed);
    TD_CHECK(!td_cuda_type_supported(TD_TYPE_IQ2_XXS) && !td_cuda_type_supported(TD_TYPE_Q2_K));
    check_router(c);
    /* the device's bandwidth in this process, the yardstick of the attention's reads */
    double gbps = 0.0;
    TD_CHECKF(td_cuda_copy_bandwidth(c, (size_t)1 << 30, &gbps) == TD_OK, "%s", td_errmsg());
    printf("copy bandwidth %.0f GB/s (device to device, read + write)\n", gbps);
    check_mla(c, 1, 1, true, false, gbps);
    check_mla(c, 300, 8, false, false, gbps);
    check_mla(c, 4096, 8, true, false, gbps);
    check_mla(c, 32768, 1, true, false, gbps);
    check_mla(c, 1, 1, true, true, gbps);
    check_mla(c, 300, 8, true, true, gbps);
    check_mla(c, 4096, 1, true, true, gbps);
    check_mla(c, 4096, 8, true, true, gbps);
    check_mla(c, 32768, 1, true, true, gbps);
    check_mla(c, 32768, 8, true, true, gbps);
    /* handing 7168 floats (one V3 hidden row) to the host after a kernel, four ways */
    static const char *const ways[] = {"copy + stream sync", "copy + event sync", "mapped memory + flag",
                                       "copy + host function + flag"};
    for (int m = 0; m < 4; m++) {
        double us = 0.0;
        TD_CHECKF(td_cuda_handoff_bench(c, m, 500, 7168 * sizeof(float), &us) == TD_OK, "%s", td_errmsg());
        printf("handoff %-28s %6.1f us\n", ways[m], us);
    }
    /* the budget: an allocation past it fails with a message, and leaves the count as it was */
    td_cuda *small = NULL;
    void *p1 = NULL, *p2 = NULL;
    if (TD_CHECKF(td_cuda_create(0, 1 << 20, &small) == TD_OK, "%s", td_errmsg())) {
        TD_CHECK(td_cuda_alloc(small, 512 << 10, &p1) == TD_OK);
        TD_CHECK(td_cuda_alloc(small, 768 << 10, &p2) == TD_E_NOMEM && strstr(td_errmsg(), "budget") && !p2);
        TD_CHECK(td_cuda_allocated(small) == 512 << 10);
        td_cuda_release(small, p1);
        td_cuda_free(small);
    }
    td_cuda_free(c);
    check_fault();
    return td_test_finish();
}

int main(void)
{
    if (!td_cuda_compiled()) return td_test_skip("built without CUDA");
    if (td_cuda_device_count() == 0) return td_test_skip("no CUDA device");
    return run();
}

#else

int main(void)
{
    if (td_cuda_compiled()) TD_CHECK(!"td_cuda_compiled() without TANDEM_HAVE_CUDA");
    return td_test_skip("built without CUDA");
}

#endif
