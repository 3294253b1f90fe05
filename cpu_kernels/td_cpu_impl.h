/* td_cpu internals shared by td_cpu.c (context, dense products) and td_moe.c (routed experts). */
#ifndef TD_CPU_IMPL_H
#define TD_CPU_IMPL_H

#include "td_cpu.h"
#include "td_kern.h"
#include "td_pool.h"
#include "td_topo.h"

#include <stdatomic.h>

#ifndef TD_MOE_ROWS_UP        /* (the work split can be set with -D to compare builds) */
#define TD_MOE_ROWS_UP 512   /* gate/up rows per work item with the AMX tiles (each lays out its B tiles) */
#endif
#define TD_MOE_ROWS_UP_GEMV 64 /* ... with the vector kernels: finer items balance the threads better */
#define TD_MOE_HBLK 512      /* h is prepared for the down projection in blocks of this many rows */
#ifndef TD_MOE_ROWS_DOWN
#define TD_MOE_ROWS_DOWN 64  /* down rows per work item */
#endif
#define TD_MOE_TOK_BATCH TD_KERN_AMX_TOKENS /* tokens of one expert per kernel call (one pass of the AMX kernel) */

typedef struct td_moe_scratch {
    int max_experts, top_k;
    int64_t max_slots;        /* max_tokens * top_k */
    int32_t *count;           /* [max_experts + 1] tokens per expert, then prefix sums */
    int32_t *fill;            /* [max_experts] */
    int32_t *active;          /* [max_experts] experts with tokens, grouped by node */
    int node_active[TD_TOPO_MAX_NODES + 1]; /* active[] ranges per node */
    int32_t *slot_tok;        /* [max_slots] token of each slot (slots grouped by expert) */
    float *slot_w;            /* [max_slots] its routing weight */
    uint8_t *xq;              /* [max_tokens][x row bytes] prepared inputs */
    size_t xq_row;
    float *h;                 /* [max_slots][ffn_width] silu(gate) * up */
    uint8_t *hq;              /* [max_slots][h row bytes] prepared h */
    size_t hq_row;
    const void **xptr;        /* [max_slots] */
    const void **hptr;        /* [max_slots] */
    float *partial;           /* [n_nodes][max_tokens][hidden] when more than one node computes */
    float *xg, *yg;           /* [max_tokens][hidden] tokens of one expert (reference path) */
    _Atomic int32_t *hblk_done; /* [max_experts][h blocks] gate/up items finished per block of h */
    uint8_t *htiles;          /* h of each expert's slots as AMX B tiles (groups of 16 slots), when AMX may run */
    int32_t *hgroup;          /* [max_experts] first group of each active expert in htiles */
    size_t htile_group;       /* bytes of one group: ceil(ffn_width / 32) KiB */
    double phase_s[4];        /* time per phase (td_cpu_moe_phase_times), kept by thread 0 */
    double idle_s[4];         /* of which the threads, on average, waited at the phase's closing barrier */
    double *done_at;          /* [threads] when each thread finished its share of the current phase */
    double phase_t0;          /* when the current phase began */
    int64_t n_hblk;
} td_moe_scratch;

struct td_cpu {
    td_cpu_params p;
    td_isa isa;               /* kernels allowed (TD_ISA_SCALAR with TD_KERNELS_REF) */
    bool prefer_avx2;         /* auto: the AVX2 vector kernels before the AVX-512 ones on streamed matrices */
    bool ref;
    td_topo *topo;
    td_pool *pool;
    int nth;
    float *row_buf;           /* [max_cols] for the reference path */
    uint8_t *kscratch;        /* [nth][kscratch_stride] kernel scratch and tiles */
    size_t kscratch_stride;
    size_t kern_bytes;        /* the kernel's part of each thread's scratch */
    uint8_t *xa;              /* [max_tokens][act row of max_cols] prepared activations */
    size_t xa_row;
    const void **xptr;        /* [max_tokens] */
    float *h_gate, *h_up;     /* [max_tokens][ffn_width] */
    float *partials;          /* [nth][max_cols] for the transposed product */
    td_moe_scratch moe;
    _Atomic int64_t next[TD_TOPO_MAX_NODES][2]; /* work counters per node and phase */
};

/* Per-thread memory: the kernel's scratch first, then `tiles` bytes for the caller. */
static inline td_kern_ctx td_cpu_kctx(const td_cpu *cpu, int ith)
{
    return (td_kern_ctx){.scratch = cpu->kscratch + (size_t)ith * cpu->kscratch_stride, .scratch_bytes = cpu->kern_bytes};
}
static inline float *td_cpu_tiles(const td_cpu *cpu, int ith)
{
    return (float *)(cpu->kscratch + (size_t)ith * cpu->kscratch_stride + cpu->kern_bytes);
}
/* Bytes of the caller part of the per-thread scratch. */
size_t td_cpu_tile_bytes(const td_cpu_params *p);

/* The kernel for a matrix (a table kernel, else the generic one). */
const td_kernel *td_cpu_pick(const td_cpu *cpu, const td_matrix *w, int64_t n_tok);

td_status td_moe_scratch_alloc(td_cpu *cpu);
void td_moe_scratch_free(td_moe_scratch *m);
void td_moe_run(td_cpu *cpu, const td_ffn_weights *experts, int n_experts, const td_moe_batch *b);
void td_moe_ref(td_cpu *cpu, const td_ffn_weights *experts, int n_experts, const td_moe_batch *b);

#endif
