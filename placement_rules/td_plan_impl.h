/* Internals of the planner, shared by its files. */
#ifndef TD_PLAN_IMPL_H
#define TD_PLAN_IMPL_H

#include "td_plan.h"

/* What the planner keeps per module beyond td_plan_module (parallel array). */
typedef struct td_plan_extra {
    uint64_t matrix_bytes;   /* projections (with FP8 scales) as stored */
    int64_t matrix_elems;
    uint64_t other_bytes;    /* norms, biases */
    int64_t row_gcd;         /* gcd of the projections' row lengths: what a conversion must divide */
    int n_experts;           /* routed experts held (EXPERTS modules) */
    uint64_t type_bytes[TD_TYPE_COUNT]; /* projection bytes by type */
} td_plan_extra;

/* Enumerates the modules and their bytes from the hyperparameters and the tensor types (td_plan_modules.c).
 * The order and names are td_model_build's. */
td_status td_plan_modules(const td_plan_params *p, td_plan_module **mods, td_plan_extra **extra, int *n,
                          bool *has_mtp);

/* The plan's placement and accounting (td_plan.c), for --auto to call again. */
td_status td_plan_place(const td_plan_params *p, td_plan *plan, td_plan_extra *extra);

#endif
