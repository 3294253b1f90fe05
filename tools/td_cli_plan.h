/* --rules, --override and --gpu-mem for the commands that run a model (eval, generate, chat): the plan
 * for this machine's GPUs, refused before any weight is read when it names a GPU the machine lacks or
 * does not fit the memory it was given. */
#ifndef TD_CLI_PLAN_H
#define TD_CLI_PLAN_H

#include "td_cli.h"
#include "td_plan.h"
#include "td_rules.h"

#define TD_CLI_MAX_OVERRIDES 16

typedef struct td_cli_plan_opts {
    const char *rules;
    const char *overrides[TD_CLI_MAX_OVERRIDES];
    int n_overrides;
    uint64_t gpu_mem; /* 0: all of each GPU */
} td_cli_plan_opts;

/* 1 when the option was --rules, --override or --gpu-mem, 0 when not, -1 after printing an error. */
int td_cli_plan_parse(td_args *a, td_cli_plan_opts *o);
/* The help lines for those options. */
const char *td_cli_plan_help(void);
/* Without --rules or --override, no plan (*plan stays NULL: every module on the CPU). Otherwise the plan of
 * the model on this machine with a KV cache of n_ctx values of kv_elem_bytes: TD_E_DEVICE, naming the module,
 * its rule and --rules cpu-only, when it places a module on a GPU that is not here; TD_E_NOMEM when it
 * does not fit. Free both with td_plan_free and td_rules_free (also on failure). */
td_status td_cli_plan_make(const td_cli_plan_opts *o, const td_model *m, int64_t n_ctx, int kv_elem_bytes,
                           td_rules **rules, td_plan **plan);

#endif
