/* Internals of the CUDA backend, shared by its files: td_backend_cuda.c (buffers, copies, weights,
 * scratch) and td_backend_cuda_ops.c (the operations). Built only with CUDA. */
#ifndef TD_BACKEND_CUDA_IMPL_H
#define TD_BACKEND_CUDA_IMPL_H

#include "td_backend_cuda.h"
#include "td_cuda_kernels.h"

struct td_buf {
    void *p; /* device memory */
    size_t bytes;
};

struct td_kv {
    td_kv_type type;
    int64_t n_ctx;
    td_cuda_kv dev;
};

/* One host range of weights copied to the device. */
typedef struct td_cu_weight {
    const uint8_t *host;
    size_t host_bytes, host_row_bytes;
    void *dev;
    size_t dev_row_bytes;
    int dev_type; /* the stored type, or F16 for types the kernels cannot read in place */
} td_cu_weight;

/* One layer's routed experts on this GPU: device tables of each expert's matrices. */
typedef struct td_cu_experts {
    bool ready;
    const void **table[3];  /* device [E] data of gate, up, down */
    const float **scales[3]; /* device [E] FP8 scale grids, or NULL */
    td_cuda_mat proto[3];   /* expert 0's shapes and types (data unused) */
} td_cu_experts;

#define TD_CU_STAGE_SLOTS 4
/* Routed experts on the GPU go through in groups of this many rows (bounds their scratch). */
#define TD_CU_MOE_ROWS 64

typedef struct td_cuda_backend {
    td_backend base;
    td_backend_cuda_params p;
    td_cuda *cu;
    const td_hparams *hp;
    char name[16];
    /* weights: ranges sorted by host address (lookups), and a hash of exact host pointers (dedup) */
    td_cu_weight *w;
    int n_w, cap_w;
    bool w_sorted;
    int *w_hash;         /* indices + 1, 0 = empty */
    size_t w_hash_cap;
    td_cu_experts *experts; /* [n_layers + 1] */
    /* forward scratch (device), for max_rows rows over max_ctx positions */
    int64_t p_max_rows, max_rows, max_ctx;
    float *xn, *qa, *q, *kva, *qlat, *olat, *attn_out, *h_gate, *h_up, *logits, *part;
    float *moe_g, *moe_u, *moe_y;
    float *rope_cos, *rope_sin;
    int32_t *tokens;
    bool has_experts;
    /* host staging (page-locked): slots reused once their copy has left */
    uint8_t *stage;
    size_t stage_slot;
    td_cuda_event *stage_ev[TD_CU_STAGE_SLOTS];
    bool stage_used[TD_CU_STAGE_SLOTS];
    int stage_next;
    /* the last operation issued, for messages about faults found later */
    const char *op;
    const char *op_tensor;
    td_backend_stats stats;
} td_cuda_backend;

static inline td_cuda_backend *td_cu_be(td_backend *b) { return (td_cuda_backend *)b; }
static inline float *td_cu_row(td_view v, int64_t t) { return (float *)v.buf->p + v.off + t * v.stride; }

/* The device copy of a matrix prepared here, as the kernels take it. */
td_status td_cu_mat(td_cuda_backend *c, const td_matrix *m, td_cuda_mat *out);
/* The device copy of a float vector prepared here (norms, biases). */
td_status td_cu_floats(td_cuda_backend *c, const float *host, const float **out);
/* Records the operation about to be queued, for error messages. */
void td_cu_issue(td_cuda_backend *c, const char *op, const td_matrix *m);
/* Adds which operation was running to a failure of the device. */
td_status td_cu_fail(td_cuda_backend *c, td_status st);
/* The routed experts of a layer, as prepared here. */
td_status td_cu_layer_experts(td_cuda_backend *c, const td_moe_weights *moe, const td_cu_experts **out);

td_status td_cu_embed(td_backend *b, const td_matrix *table, const int32_t *tokens, int64_t n, td_view out);
td_status td_cu_rmsnorm(td_backend *b, const float *w, int64_t width, td_view in, td_view out, int64_t n);
td_status td_cu_linear(td_backend *b, const td_matrix *w, td_view in, td_view out, int64_t n);
td_status td_cu_ffn(td_backend *b, const td_ffn_weights *f, td_view in, td_view acc, int64_t n);
td_status td_cu_attention(td_backend *b, const td_attn_weights *w, td_view x, const td_attn_seq *seqs, int n_seqs);
td_status td_cu_route(td_backend *b, const td_moe_weights *moe, td_view xn, td_view ids, td_view weights, int64_t n);
td_status td_cu_moe_submit(td_backend *b, const td_moe_weights *moe, td_view xn, td_view ids, td_view weights,
                           td_view out, int64_t n);
td_status td_cu_moe_wait(td_backend *b);
td_status td_cu_add(td_backend *b, td_view dst, td_view src, int64_t n, int64_t width);
td_status td_cu_copy(td_backend *b, td_view src, td_view dst, int64_t n, int64_t width);

#endif
