/* Internals of the CPU backend, shared by its files: td_backend_cpu.c (buffers, caches, dense ops),
 * td_backend_cpu_attn.c (MLA attention over the latent cache) and td_backend_cpu_moe.c (routed experts
 * on a driver thread). */
#ifndef TD_BACKEND_CPU_IMPL_H
#define TD_BACKEND_CPU_IMPL_H

#include "td_backend_cpu.h"
#include "td_cpu.h"

#include <pthread.h>
#include <stdatomic.h>

struct td_buf {
    float *p;       /* host memory, 64-byte aligned when owned */
    size_t bytes;
    bool owned;
};

struct td_kv {
    td_kv_type type;
    int64_t n_ctx;
    void *ckv;   /* [n_ctx][r]: normalized c_kv per position (float or bf16) */
    void *krope; /* [n_ctx][dr]: the roped shared key */
};

/* The routed experts of one batch, as handed to the driver thread. */
typedef struct td_moe_job {
    const td_moe_weights *moe;
    const float *xn;
    const int32_t *ids;
    const float *weights;
    float *out;
    int64_t n;
} td_moe_job;

enum { TD_MOE_IDLE = 0, TD_MOE_SUBMITTED = 1, TD_MOE_DONE = 2, TD_MOE_QUIT = 3 };

/* A thread that runs the pool for the routed experts, so that moe_submit returns at once. */
typedef struct td_moe_driver {
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t job_cv, done_cv;
    _Atomic uint32_t state;
    td_moe_job job;
    double submitted_at, started_at, done_at; /* td_now() seconds */
    td_status status;
    char msg[512];                             /* the driver's error message, raised again by moe_wait */
} td_moe_driver;

typedef struct td_cpu_backend {
    td_backend base;
    td_backend_cpu_params p;
    td_cpu *cpu;
    const td_hparams *hp;
    int64_t p_max_rows;        /* the largest batch the kernels' scratch was made for */
    int64_t max_rows, max_ctx; /* what the forward scratch holds now (reserve) */
    /* attention scratch, [max_rows] rows unless noted */
    float *xn;                 /* [H] per row */
    float *qa;                 /* [q_lora] */
    float *q;                  /* [nh*(dn+dr)] */
    float *kva;                /* [r+dr] */
    float *attn_out;           /* [nh*dv] */
    float *qn_h;               /* [dn]: one head's q_nope, gathered */
    float *qlat, *olat;        /* [r] */
    float *o_h;                /* [dv] */
    float *tmp;                /* [H]: products before they are added */
    float *scores;             /* [max_rows][max_ctx] */
    float *k_h, *v_h;          /* [max_ctx][dn], [max_ctx][dv]: one head decompressed */
    float *ckv_f, *krope_f;    /* [max_ctx][r], [max_ctx][dr]: a bf16 cache widened to float */
    float *rope_cos, *rope_sin; /* [max_ctx][dr/2] */
    /* router scratch */
    float *router;             /* [max_rows][E] */
    float *choice;             /* [E] */
    /* routed experts */
    bool moe_async;            /* on the driver thread (else at moe_submit, on the caller) */
    bool moe_pending;          /* submitted and not joined yet */
    td_moe_driver drv;
    td_backend_stats stats;
    td_expert_home *home;      /* [n_layers + 1] where each layer's experts live (the plan's numa:) */
    int *home_node;            /* [n_layers + 1] with TD_HOME_NODE */
} td_cpu_backend;

static inline td_cpu_backend *td_cpu_be(td_backend *b) { return (td_cpu_backend *)b; }
static inline float *td_cpu_row(td_view v, int64_t t) { return v.buf->p + v.off + t * v.stride; }

/* Joins routed experts still running before another operation touches the pool or their output. */
td_status td_cpu_be_join(td_cpu_backend *c);

td_status td_cpu_be_attention(td_backend *b, const td_attn_weights *w, td_view x, const td_attn_seq *seqs, int n_seqs);
td_status td_cpu_be_moe_submit(td_backend *b, const td_moe_weights *moe, td_view xn, td_view ids, td_view weights,
                               td_view out, int64_t n);
td_status td_cpu_be_moe_wait(td_backend *b);
td_status td_cpu_be_driver_start(td_cpu_backend *c);
void td_cpu_be_driver_stop(td_cpu_backend *c);

#endif
