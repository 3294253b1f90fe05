/* The CPU backend: the forward pass's operations on cpu_kernels/ (td_cpu), behind td_backend_i. */
#ifndef TD_BACKEND_CPU_H
#define TD_BACKEND_CPU_H

#include "td_backend.h"
#include "td_cpu.h"

typedef struct td_backend_cpu_params {
    td_kernels kernels;    /* TD_KERNELS_AUTO by default */
    int n_threads;         /* 0: one per core */
    bool moe_async;        /* routed experts on a driver thread (moe_submit returns at once) */
    const char *topology;  /* hwloc synthetic topology for tests; NULL: this machine */
} td_backend_cpu_params;

/* Sizes its kernels' scratch for forward calls of up to max_rows rows of `model`. */
td_status td_backend_cpu_create(const td_model *model, const td_backend_cpu_params *p, int64_t max_rows,
                                td_backend **out);
/* The NUMA node (0-based) holding expert e of a layer, as prepared from the plan; -1 when interleaved. */
int td_backend_cpu_expert_home(td_backend *b, int layer, int e);
/* The compute context underneath (kernel names and thread counts for reports). */
td_cpu *td_backend_cpu_context(td_backend *b);

#endif
