#include "td_cli_plan.h"

#include "td_cuda.h"

#include <stdio.h>

int td_cli_plan_parse(td_args *a, td_cli_plan_opts *o)
{
    const char *v;
    if (td_args_is(a, "--rules")) {
        if (!(o->rules = td_args_value(a))) return -1;
    } else if (td_args_is(a, "--override")) {
        if (!(v = td_args_value(a))) return -1;
        if (o->n_overrides == TD_CLI_MAX_OVERRIDES) {
            td_cli_usage_error(a->cmd, "--override: at most %d of them", TD_CLI_MAX_OVERRIDES);
            return -1;
        }
        o->overrides[o->n_overrides++] = v;
    } else if (td_args_is(a, "--gpu-mem")) {
        if (!(v = td_args_value(a)) || !td_parse_bytes(a, v, &o->gpu_mem)) return -1;
    } else {
        return 0;
    }
    return 1;
}

const char *td_cli_plan_help(void)
{
    return "  --rules R            run under a placement plan: a rules file or a preset of placement_rules/\n"
           "                       (cpu-only, deepseek-v3-1gpu-24gb, ...; see tandem rules)\n"
           "  --override S         regex=device[,...] before the rules (repeatable)\n"
           "  --gpu-mem SIZE       use at most SIZE of each GPU, e.g. 24GiB (the plan and the allocations)\n";
}

/* The first module the plan puts on a GPU with an index of at least n, or -1. */
static int td_first_missing_gpu(const td_plan *plan, int n)
{
    for (int i = 0; i < plan->n_modules; i++) {
        const td_device_id *d = &plan->modules[i].place.device;
        if (d->kind == TD_DEVICE_CUDA && d->index >= n) return i;
    }
    return -1;
}

td_status td_cli_plan_make(const td_cli_plan_opts *o, const td_model *m, int64_t n_ctx, int kv_elem_bytes,
                           td_rules **rules, td_plan **plan)
{
    *rules = NULL;
    *plan = NULL;
    if (!o->rules && !o->n_overrides) return TD_OK;
    TD_TRY(td_rules_create(rules));
    for (int i = 0; i < o->n_overrides; i++) TD_TRY(td_rules_add_override(*rules, o->overrides[i]));
    if (o->rules) {
        char path[4096];
        TD_TRY(td_rules_load_file(*rules, td_rules_resolve_path(o->rules, TANDEM_SOURCE_DIR "/placement_rules", path,
                                                                 sizeof path)));
    }
    /* where the rules put things, on as many GPUs as they could name: are those GPUs here? */
    td_devices_params any = {.gpu_reserve = -1, .n_virtual_gpus = TD_MAX_GPUS};
    for (int i = 0; i < TD_MAX_GPUS; i++) any.virtual_gpu_bytes[i] = 1ull << 40;
    td_devices devices;
    TD_TRY(td_devices_detect(&any, &devices));
    TD_TRY(td_plan_for_model(m, *rules, &devices, n_ctx, kv_elem_bytes, plan));
    int have = td_cuda_device_count(), missing = td_first_missing_gpu(*plan, have);
    if (missing >= 0) {
        const td_plan_module *pm = &(*plan)->modules[missing];
        char here[96];
        if (have == 0)
            snprintf(here, sizeof here, "this machine has no GPU (%s)",
                     td_cuda_compiled() ? "no CUDA device was found" : "this tandem was built without CUDA");
        else snprintf(here, sizeof here, "this machine has %d GPU%s (cuda:0..cuda:%d)", have, have == 1 ? "" : "s", have - 1);
        return td_fail(TD_E_DEVICE,
                       "%s is placed on cuda:%d (by %s), but %s: run on the CPU with --rules cpu-only, or change the "
                       "rule",
                       pm->m.name, pm->place.device.index, pm->origin, here);
    }
    td_plan_free(*plan);
    *plan = NULL;
    /* the plan for the GPUs that are here, with their memory (or --gpu-mem of it) */
    td_devices_params dp = {.gpu_reserve = -1, .detect_gpus = true, .gpu_mem = o->gpu_mem};
    TD_TRY(td_devices_detect(&dp, &devices));
    TD_TRY(td_plan_for_model(m, *rules, &devices, n_ctx, kv_elem_bytes, plan));
    return td_plan_require_fit(*plan);
}
