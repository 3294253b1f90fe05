/* One run of a per-backend op test case (tests/test_backend_ops.c) on one backend: the operations in
 * order, from inputs made the same on every backend, with every view inside a buffer of sentinels; what
 * came back is kept as outputs for the comparison, and the run counts what it could check alone
 * (changed sentinels, NaN or Inf, values the host knows). */
#ifndef TD_OPS_RUN_H
#define TD_OPS_RUN_H

#include "td_backend.h"
#include "td_engine.h"

#define BO_MAX_BUFS 12
#define BO_MAX_OUTS 24

typedef enum bo_op {
    BO_COPIES = 0,
    BO_RMSNORM = 1,
    BO_EMBED = 2,
    BO_LINEAR = 3,
    BO_FFN = 4,
    BO_ROUTE = 5,
    BO_MOE = 6,
    BO_ATTENTION = 7,
    BO_OP_COUNT
} bo_op;

typedef enum bo_metric { BO_NMSE = 0, BO_EXACT = 1, BO_IDS = 2, BO_ROUTE_W = 3 } bo_metric;

/* A view of `rows` rows of `width` floats inside a buffer of sentinels. */
typedef struct bo_buf {
    td_buf *buf;
    td_view v;
    int64_t rows, width, total;
} bo_buf;

typedef struct bo_out {
    char name[40];
    bo_metric metric;
    float *v; /* int32 ids for BO_IDS */
    int64_t n, width;
} bo_out;

typedef struct bo_run {
    td_backend *b;
    bo_buf bufs[BO_MAX_BUFS];
    int n_bufs;
    bo_out out[BO_MAX_OUTS];
    int n_out;
    int64_t guard_bad; /* sentinel words that changed */
    int64_t nonfinite; /* NaN or Inf among the computed outputs */
    int64_t self_bad;  /* values that differ from what the host knows they must be */
    td_status st;      /* the first operation that failed */
    char err[512];
} bo_run;

/* One attention call: up to two sequences, each continuing its own cache. */
typedef struct bo_seq_call {
    int seq; /* 0: A, 1: B */
    int64_t n;
    td_attn_path path;
} bo_seq_call;

typedef struct bo_call {
    bo_seq_call s[2];
    int n_seqs;
} bo_call;

typedef struct bo_case bo_case;
struct bo_case {
    bo_op op;
    char model[24];
    char shape[64];
    td_status (*run)(const bo_case *c, bo_run *r);
    const td_model *m;
    const td_module *mod; /* whose weights it reads, for supports() (NULL: none) */
    td_type types[4];     /* the types of those weights */
    int n_types;
    int64_t n;          /* rows */
    const td_matrix *w; /* linear, embed */
    const float *norm;  /* the norm in front of the input (NULL: unit weights) */
    const td_ffn_weights *ffn;
    const td_moe_weights *moe;
    const td_attn_weights *attn;
    bool same_experts; /* moe: every row on the same experts (else half of them in common) */
    td_kv_type kv;     /* sequence A's cache; B's has the other type */
    const bo_call *calls;
    int n_calls;
    uint64_t seed;
};

/* Runs c on b into r (cleared first); r keeps its outputs until bo_run_free. */
void bo_case_run(const bo_case *c, td_backend *b, bo_run *r);
void bo_run_free(bo_run *r);

/* The operation sequences, one per bo_op. */
td_status bo_run_copies(const bo_case *c, bo_run *r);
td_status bo_run_rmsnorm(const bo_case *c, bo_run *r);
td_status bo_run_embed(const bo_case *c, bo_run *r);
td_status bo_run_linear(const bo_case *c, bo_run *r);
td_status bo_run_ffn(const bo_case *c, bo_run *r);
td_status bo_run_route(const bo_case *c, bo_run *r);
td_status bo_run_moe(const bo_case *c, bo_run *r);
td_status bo_run_attention(const bo_case *c, bo_run *r);

#endif
