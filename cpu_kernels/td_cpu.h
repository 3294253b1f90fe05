/* td_cpu: the CPU compute context of an engine: which kernels run (chosen from cpuid, or forced), the
 * worker threads, and the scratch memory the kernels use, all allocated once so that no token allocates.
 * The forward pass calls only these entry points; each picks the best kernel for the matrix type. */
#ifndef TD_CPU_H
#define TD_CPU_H

#include "td_kernels.h"
#include "td_matrix.h"
#include "td_status.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct td_cpu_params {
    td_kernels kernels;
    int n_threads;       /* 0: one per core */
    int64_t max_tokens;  /* largest batch any call will pass */
    int64_t max_cols;    /* widest matrix row (input features) */
    int64_t hidden;      /* model width, for the MoE scratch */
    int64_t ffn_width;   /* widest FFN (dense, shared or expert) */
    int64_t expert_width; /* routed expert FFN width (0: ffn_width) */
    int n_experts;       /* routed experts per MoE layer (0: 256) */
    int top_k;           /* experts per token (0: 8) */
    const char *topology; /* hwloc synthetic topology for tests ("pack:2 numa:1 core:2 pu:1"); NULL: this machine */
} td_cpu_params;

typedef struct td_cpu td_cpu;

td_status td_cpu_create(const td_cpu_params *p, td_cpu **out);
void td_cpu_free(td_cpu *cpu);
td_kernels td_cpu_kernels(const td_cpu *cpu);
int td_cpu_threads(const td_cpu *cpu);
/* NUMA nodes the threads run on (1 on most machines). */
int td_cpu_nodes(const td_cpu *cpu);
/* One line: ISA in use, threads, nodes, pinning ("avx2, 16 threads on 1 NUMA node, pinned"). */
const char *td_cpu_describe(const td_cpu *cpu, char *buf, int cap);
/* The kernel a DeepSeek-V3-sized matrix of this type and width gets for batches of n_tok tokens
 * ("q4_K/avx2", "ref"); small, cached matrices may get another. */
const char *td_cpu_kernel_name(const td_cpu *cpu, td_type type, int64_t cols, int64_t n_tok);

/* The float vector loops of attention: the reference's scalar ones with ref kernels, SIMD otherwise.
 * Each result depends only on its inputs, never on the batch it belongs to. */
float td_cpu_dot(const td_cpu *cpu, const float *a, const float *b, int64_t n);
/* y += a * x */
void td_cpu_axpy(const td_cpu *cpu, float *y, float a, const float *x, int64_t n);

/* y[t][r] = sum_c W[r][c] x[t][c] for t < n (x: [n][cols], y: [n][rows]). */
void td_cpu_linear(td_cpu *cpu, const td_matrix *w, const float *x, int64_t n, float *y);
/* y[c] = sum_r W[r][c] x[r] (one vector through the transpose). */
void td_cpu_linear_t(td_cpu *cpu, const td_matrix *w, const float *x, float *y);
/* out[t] = FFN(x[t]) for t < n, x and out [n][hidden]. */
void td_cpu_ffn(td_cpu *cpu, const td_ffn_weights *f, const float *x, int64_t n, float *out);

/* Routed experts of one MoE layer for a batch: out[t] += sum_j weights[t][j] * FFN_{ids[t][j]}(x[t]).
 * Tokens are grouped by expert so each expert's weights are read once per batch. */
typedef struct td_moe_batch {
    int64_t n_tok;
    int k;                 /* experts per token */
    const int32_t *ids;    /* [n_tok][k] */
    const float *weights;  /* [n_tok][k] */
    const float *x;        /* [n_tok][hidden] */
    float *out;            /* [n_tok][hidden], accumulated into */
} td_moe_batch;
void td_cpu_moe(td_cpu *cpu, const td_ffn_weights *experts, int n_experts, const td_moe_batch *b);
/* Wall time the fast MoE path has spent in each phase since the context was made (seconds, summed over
 * calls): [0] inputs prepared, [1] gate/up (with h prepared), [2] down and the weighted sum, [3] the
 * node partials added. For the benchmarks' profile. */
void td_cpu_moe_phase_times(const td_cpu *cpu, double out[4]);
/* Of that, the time the threads spent waiting for the slowest one at the end of each phase (the mean over
 * threads): load imbalance. */
void td_cpu_moe_idle_times(const td_cpu *cpu, double out[4]);

/* Where a layer's routed experts live in host memory (the rules' numa: field). */
typedef enum td_expert_home {
    TD_HOME_SPLIT = 0,      /* each expert on the node whose threads compute it: divided, never duplicated */
    TD_HOME_INTERLEAVE = 1, /* every expert's pages spread round-robin over the nodes */
    TD_HOME_NODE = 2,       /* all on one node */
    TD_HOME_COUNT
} td_expert_home;

/* The node (0-based, among the pool's nodes) that holds expert e of n_experts under a policy; -1 when
 * interleaved. */
int td_cpu_expert_home(const td_cpu *cpu, td_expert_home home, int node, int e, int n_experts);
/* Moves each expert's weight pages where the policy puts them (libnuma), once at load. A no-op on one
 * node. Best effort: pages the kernel cannot move stay where they are (the result is the same, only
 * slower). TD_E_ARG for a node the pool does not run on. */
td_status td_cpu_moe_place(td_cpu *cpu, const td_ffn_weights *experts, int n_experts, td_expert_home home, int node);
/* The node (0-based) that computes expert e of n_experts. */
int td_cpu_expert_node(const td_cpu *cpu, int e, int n_experts);

#endif
