/* --rules, --override and --gpu-mem for the commands that run a model (eval, generate, chat): the plan
 * for this machine's GPUs, refused before any weight is read when it names a GPU the machine lacks or
 * does not fit the memory it was given. */
#ifndef TD_CLI_PLAN_H
#define TD_CLI_PLAN_H

#include "td_cli.h"
#include "td_engine.h"
#include "td_plan.h"
#include "td_rules.h"

#include <cjson/cJSON.h>

#define TD_CLI_MAX_OVERRIDES 16

typedef struct td_cli_plan_opts {
    const char *rules;
    const char *overrides[TD_CLI_MAX_OVERRIDES];
    int n_overrides;
    uint64_t gpu_mem; /* 0: all of each GPU */
    bool autofill;    /* --auto: whole layers' routed experts into the memory each GPU has left */
} td_cli_plan_opts;

/* 1 when the option was --rules, --override, --gpu-mem or --auto, 0 when not, -1 after printing an error. */
int td_cli_plan_parse(td_args *a, td_cli_plan_opts *o);
/* The help lines for those options. */
const char *td_cli_plan_help(void);
/* Without --rules, --override or --auto, no plan (*plan stays NULL: every module on the CPU). Otherwise the
 * plan of the model on this machine with a KV cache of n_ctx values of kv_elem_bytes: TD_E_DEVICE, naming
 * the module, its rule and --rules cpu-only, when it places a module on a GPU that is not here; TD_E_NOMEM
 * when it does not fit. Rules that place nothing are named on stderr after "tandem <cmd>: ". Free both
 * with td_plan_free and td_rules_free (also on failure). */
td_status td_cli_plan_make(const td_cli_plan_opts *o, const char *cmd, const td_model *m, int64_t n_ctx,
                           int kv_elem_bytes, td_rules **rules, td_plan **plan);

/* Device memory in use on a GPU the plan uses, now (the driver's total less its free memory: all this
 * process holds there, the CUDA context included), beside what the plan predicted for it. */
typedef struct td_cli_gpu_mem {
    int device;
    uint64_t used, planned;
    uint64_t weights, kv, reserve; /* the plan's parts */
} td_cli_gpu_mem;
/* One entry per GPU the plan uses (at most cap); returns how many. */
int td_cli_plan_gpu_mem(const td_plan *plan, td_cli_gpu_mem *out, int cap);
/* Whether used is within max(5%, 256 MiB) of planned: the contract of the plan's memory. */
bool td_cli_gpu_mem_ok(const td_cli_gpu_mem *g);
/* One line per GPU on f: used, planned, and whether they agree. */
void td_cli_plan_print_gpu_mem(const td_plan *plan, FILE *f);
/* "gpus": [{device, mem_used, mem_planned, mem_ok}] into a JSON report (nothing without a GPU in the plan). */
void td_cli_plan_gpu_mem_json(const td_plan *plan, cJSON *j);

/* Every backend's counters at one moment, to tell where the time of a stretch went. */
#define TD_CLI_MAX_BACKENDS 16
typedef struct td_cli_dev_snap {
    int n;
    double at; /* td_now() */
    td_backend_stats s[TD_CLI_MAX_BACKENDS];
} td_cli_dev_snap;
void td_cli_dev_snap_take(td_engine *e, td_cli_dev_snap *out);
/* "devices": per backend and per token over tokens between the two snapshots: busy_ms (a GPU's stream),
 * experts_busy_ms, handoff_ms and wait_ms (routed experts handed to a backend's driver), moe_submits. */
void td_cli_dev_json(td_engine *e, const td_cli_dev_snap *a, const td_cli_dev_snap *b, int64_t tokens, cJSON *j);

#endif
