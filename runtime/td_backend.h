/* td_backend: the seam between the forward pass (td_forward.c) and the devices that compute it.
 *
 * A device implements one table of operations at the level of the model's modules (td_backend_i), in
 * the manner of ggml's ggml_backend_i. The engine builds one backend per device in the plan and gives
 * every module the backend of its placement; the forward pass calls only this table, and moves
 * activations between backends with the explicit copies below when consecutive modules sit on
 * different devices. Nothing above the table includes a kernel header.
 *
 *  - Memory. Activations live in opaque buffers (td_buf) in the backend's memory, addressed as rows of
 *    floats (td_view). A layer's latent KV cache (td_kv) belongs to the backend of its attention.
 *  - Order. A backend runs its operations in the order they were issued, as a CUDA stream does; an
 *    operation may return before its work is done. Errors that happen later are reported by `sync`,
 *    by `moe_wait`, or by the next copy to the host, with the module that was running.
 *  - Overlap. `moe_submit` hands the routed experts of a batch to the backend and returns at once; a
 *    later `moe_wait` joins them. Between the two, other backends may run (the shared expert on the GPU
 *    while the CPU streams the routed experts: KTransformers' overlap). Operations issued to the same
 *    backend between the two wait for the experts first.
 *  - Batching. One forward call carries rows of several sessions (td_attn_seq), each with its own cache
 *    and positions; everything but attention runs on all rows at once, so a step reads the union of its
 *    rows' routed experts once.
 *  - Exactness. Row results never depend on the other rows of the call: a session's logits are the same
 *    alone or batched, as long as the backend picks the same kernels for both batch sizes. */
#ifndef TD_BACKEND_H
#define TD_BACKEND_H

#include "td_model.h"
#include "td_status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct td_placement; /* td_rules.h */

typedef struct td_backend td_backend;
typedef struct td_buf td_buf; /* activations in a backend's memory */
typedef struct td_kv td_kv;   /* one layer's latent KV cache */

/* How the latent cache stores its values. */
typedef enum td_kv_type {
    TD_KV_AUTO = 0, /* the session's default (td_engine.h); never reaches a backend */
    TD_KV_F32 = 1,
    TD_KV_BF16 = 2, /* as the model was trained: 70,272 B per token for DeepSeek-V3 */
    TD_KV_TYPE_COUNT
} td_kv_type;

const char *td_kv_type_name(td_kv_type t);
bool td_kv_type_from_name(const char *name, td_kv_type *out);
int td_kv_type_bytes(td_kv_type t);

/* Rows of floats in a buffer: row t starts at element off + t * stride. */
typedef struct td_view {
    td_buf *buf;
    int64_t off;    /* elements */
    int64_t stride; /* elements between rows */
} td_view;

static inline td_view td_view_rows(td_buf *buf, int64_t stride) { return (td_view){buf, 0, stride}; }
/* Rows [row0, ...) of v. */
static inline td_view td_view_from(td_view v, int64_t row0) { return (td_view){v.buf, v.off + row0 * v.stride, v.stride}; }

/* MLA attention's form (td_engine.h): see td_attn_path. */

/* One session's rows in an attention call: rows [row0, row0 + n) of the call sit at positions
 * pos0 .. pos0 + n - 1 of that session, whose cache for this layer is kv. */
typedef struct td_attn_seq {
    int64_t row0, n;
    int64_t pos0;
    td_kv *kv;
    int path; /* td_attn_path: auto, decompressed or absorbed */
} td_attn_seq;

/* Time a backend has spent, for the reports (seconds since it was made). */
typedef struct td_backend_stats {
    int64_t moe_submits;     /* moe_submit calls */
    double moe_busy_s;       /* routed experts computing */
    double moe_handoff_s;    /* from moe_submit to the experts starting, plus from their end to moe_wait
                              * returning, when they ran on another thread */
    double moe_wait_s;       /* the caller blocked in moe_wait */
    double busy_s;           /* a GPU's stream working: from the first work queued after a wait to that
                              * wait, summed (0 on the CPU, whose time is its callers') */
} td_backend_stats;

typedef struct td_backend_i {
    const char *(*name)(const td_backend *b);
    void (*free)(td_backend *b);

    /* Whether this backend can run module m, whose projections are of `type`; if not, why (one line). */
    bool (*supports)(const td_backend *b, const td_module *m, td_type type, char *why, size_t cap);
    /* Once at load, for every module placed here: upload, repack or place its weights as the placement
     * says (the NUMA policy on the CPU). */
    td_status (*prepare)(td_backend *b, const td_model *model, const td_module *m, const struct td_placement *place);
    /* Scratch for forward calls of up to max_rows rows over contexts of up to max_ctx positions; called
     * again when a larger session appears (allocation happens here, never per token). */
    td_status (*reserve)(td_backend *b, int64_t max_rows, int64_t max_ctx);

    /* Buffers and caches. */
    td_status (*buf_new)(td_backend *b, size_t bytes, td_buf **out);
    /* Host memory the backend can compute on in place (zero copy); TD_E_UNSUPPORTED where it cannot. */
    td_status (*buf_wrap)(td_backend *b, void *host, size_t bytes, td_buf **out);
    void (*buf_free)(td_backend *b, td_buf *buf);
    /* The buffer's memory when the host can address it, else NULL. */
    void *(*buf_host)(td_backend *b, td_buf *buf);
    td_status (*kv_new)(td_backend *b, int64_t n_ctx, td_kv_type type, td_kv **out);
    void (*kv_free)(td_backend *b, td_kv *kv);

    /* Explicit copies of n rows of `width` floats (or int32s) between host memory and a view. */
    td_status (*to_host)(td_backend *b, td_view src, int64_t n, int64_t width, void *dst);
    td_status (*from_host)(td_backend *b, const void *src, int64_t n, int64_t width, td_view dst);
    /* Waits for everything issued; reports an asynchronous error with the module that was running. */
    td_status (*sync)(td_backend *b);

    /* Module-level operations, each on n rows (n <= the rows reserved). `linear`, `route`, `moe_submit`
     * and `attention` take packed views (stride == width, what the forward pass gives them); the others
     * accept any stride. */
    /* dst[t] = src[t] over width values (gathering rows) */
    td_status (*copy)(td_backend *b, td_view src, td_view dst, int64_t n, int64_t width);
    /* out[t] = table[tokens[t]] (tokens in host memory) */
    td_status (*embed)(td_backend *b, const td_matrix *table, const int32_t *tokens, int64_t n, td_view out);
    /* out[t] = rmsnorm(in[t]) * w over `width` values; out may be in. */
    td_status (*rmsnorm)(td_backend *b, const float *w, int64_t width, td_view in, td_view out, int64_t n);
    /* out[t] = W in[t] */
    td_status (*linear)(td_backend *b, const td_matrix *w, td_view in, td_view out, int64_t n);
    /* acc[t] += down(silu(gate in[t]) * up in[t])  (dense layers and shared experts) */
    td_status (*ffn)(td_backend *b, const td_ffn_weights *f, td_view in, td_view acc, int64_t n);
    /* x[t] += o(attention(rmsnorm(x[t]))) for the rows of every sequence, appending their keys to the
     * caches at their positions. */
    td_status (*attention)(td_backend *b, const td_attn_weights *w, td_view x, const td_attn_seq *seqs, int n_seqs);
    /* The router: ids[t][k] (int32) and weights[t][k] of the experts chosen for xn[t]. */
    td_status (*route)(td_backend *b, const td_moe_weights *moe, td_view xn, td_view ids, td_view weights, int64_t n);
    /* out[t] = sum_j weights[t][j] FFN_{ids[t][j]}(xn[t]); returns at once. */
    td_status (*moe_submit)(td_backend *b, const td_moe_weights *moe, td_view xn, td_view ids, td_view weights,
                            td_view out, int64_t n);
    td_status (*moe_wait)(td_backend *b);
    /* dst[t] += src[t] over width values */
    td_status (*add)(td_backend *b, td_view dst, td_view src, int64_t n, int64_t width);

    void (*stats)(const td_backend *b, td_backend_stats *out);
} td_backend_i;

struct td_backend {
    const td_backend_i *i;
    const td_model *model;
    bool host_memory; /* buffers are host memory (buf_host never returns NULL) */
};

#endif
