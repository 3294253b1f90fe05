#include "td_cli_plan.h"

#include "td_backend_cuda.h"
#include "td_clock.h"
#include "td_cuda.h"
#include "td_gpu_probe.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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
        /* a command-line value: a bad one is bad usage (exit 2), as in tandem rules */
        td_rules *check = NULL;
        td_status st = td_rules_create(&check);
        if (st == TD_OK) st = td_rules_add_override(check, v);
        td_rules_free(check);
        if (st == TD_E_NOMEM) {
            td_cli_fail(a->cmd, st);
            return -1;
        }
        if (st != TD_OK) {
            td_cli_usage_error(a->cmd, "%s", td_errmsg());
            return -1;
        }
        o->overrides[o->n_overrides++] = v;
    } else if (td_args_is(a, "--gpu-mem")) {
        if (!(v = td_args_value(a)) || !td_parse_bytes(a, v, &o->gpu_mem)) return -1;
    } else if (td_args_is(a, "--auto")) {
        o->autofill = true;
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
           "  --gpu-mem SIZE       use at most SIZE of each GPU, e.g. 24GiB (the plan and the allocations)\n"
           "  --auto               move whole layers' routed experts into the memory each GPU has left\n";
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

td_status td_cli_plan_make(const td_cli_plan_opts *o, const char *cmd, const td_model *m, int64_t n_ctx,
                           int kv_elem_bytes, td_rules **rules, td_plan **plan)
{
    *rules = NULL;
    *plan = NULL;
    if (!o->rules && !o->n_overrides && !o->autofill) return TD_OK;
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
    td_devices_params dp = {.gpu_reserve = -1, .gpu_probe = td_gpu_probe_cuda, .gpu_mem = o->gpu_mem,
                            .gpu_reserve_fn = td_backend_cuda_reserve_bytes};
    TD_TRY(td_devices_detect(&dp, &devices));
    td_plan_params pp = {.hp = &m->hp, .dir = m->dir, .rules = *rules, .devices = &devices, .ctx = n_ctx,
                         .kv_elem_bytes = kv_elem_bytes};
    TD_TRY(o->autofill ? td_plan_auto(&pp, *rules, plan) : td_plan_build(&pp, plan));
    char prefix[64];
    snprintf(prefix, sizeof prefix, "tandem %s: ", cmd);
    td_plan_print_idle_rules(*plan, *rules, prefix, stderr);
    for (int i = 0; o->autofill && i < (*plan)->n_modules; i++) {
        const td_plan_module *pm = &(*plan)->modules[i];
        char dev[16];
        if (strcmp(pm->origin, "--auto") == 0)
            fprintf(stderr, "--auto: %s on %s\n", pm->m.name, td_device_id_str(pm->place.device, dev, sizeof dev));
    }
    return td_plan_require_fit(*plan);
}

int td_cli_plan_gpu_mem(const td_plan *plan, td_cli_gpu_mem *out, int cap)
{
    int n = 0;
    for (int d = 0; plan && d < plan->n_devices && n < cap; d++) {
        const td_plan_device *pd = &plan->devices[d];
        bool used = false;
        for (int i = 0; i < plan->n_modules && !used; i++)
            used = plan->modules[i].place.device.kind == TD_DEVICE_CUDA && plan->modules[i].place.device.index == pd->id.index;
        if (pd->id.kind != TD_DEVICE_CUDA || !used) continue;
        td_cuda_device_info info;
        if (td_cuda_device_query(pd->id.index, &info) != TD_OK) continue;
        out[n++] = (td_cli_gpu_mem){.device = pd->id.index, .used = info.total_bytes - info.free_bytes,
                                    .planned = pd->bytes, .weights = pd->weight_bytes, .kv = pd->kv_bytes,
                                    .reserve = pd->reserve_bytes};
    }
    return n;
}

bool td_cli_gpu_mem_ok(const td_cli_gpu_mem *g)
{
    double diff = fabs((double)g->used - (double)g->planned), allowed = fmax(0.05 * (double)g->planned, 256.0 * (1 << 20));
    return diff <= allowed;
}

void td_cli_plan_print_gpu_mem(const td_plan *plan, FILE *f)
{
    td_cli_gpu_mem g[TD_MAX_GPUS];
    int n = td_cli_plan_gpu_mem(plan, g, TD_MAX_GPUS);
    for (int i = 0; i < n; i++) {
        char u[32], p[32], w[32], k[32], r[32];
        fprintf(f, "cuda:%d: %s in use after load (driver), %s planned (weights %s, KV cache %s, reserve %s): %s\n",
                g[i].device, td_cli_fmt_bytes(g[i].used, u, sizeof u), td_cli_fmt_bytes(g[i].planned, p, sizeof p),
                td_cli_fmt_bytes(g[i].weights, w, sizeof w), td_cli_fmt_bytes(g[i].kv, k, sizeof k),
                td_cli_fmt_bytes(g[i].reserve, r, sizeof r),
                td_cli_gpu_mem_ok(&g[i]) ? "within max(5%, 256 MiB)" : "OFF by more than max(5%, 256 MiB)");
    }
}

void td_cli_plan_gpu_mem_json(const td_plan *plan, cJSON *j)
{
    td_cli_gpu_mem g[TD_MAX_GPUS];
    int n = td_cli_plan_gpu_mem(plan, g, TD_MAX_GPUS);
    if (!n) return;
    cJSON *a = cJSON_AddArrayToObject(j, "gpus");
    for (int i = 0; a && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "device", g[i].device);
        cJSON_AddNumberToObject(o, "mem_used", (double)g[i].used);
        cJSON_AddNumberToObject(o, "mem_planned", (double)g[i].planned);
        cJSON_AddBoolToObject(o, "mem_ok", td_cli_gpu_mem_ok(&g[i]));
        cJSON_AddItemToArray(a, o);
    }
}

void td_cli_dev_snap_take(td_engine *e, td_cli_dev_snap *out)
{
    td_backend *const *b;
    int n = td_engine_backends(e, &b);
    out->n = n < TD_CLI_MAX_BACKENDS ? n : TD_CLI_MAX_BACKENDS;
    for (int i = 0; i < out->n; i++) b[i]->i->stats(b[i], &out->s[i]);
    out->at = td_now();
}

void td_cli_dev_json(td_engine *e, const td_cli_dev_snap *a, const td_cli_dev_snap *b, int64_t tokens, cJSON *j)
{
    td_backend *const *be;
    int n = td_engine_backends(e, &be);
    if (n > b->n) n = b->n;
    double per = tokens > 0 ? 1e3 / (double)tokens : 0.0;
    cJSON *arr = cJSON_AddArrayToObject(j, "devices");
    for (int i = 0; arr && i < n; i++) {
        const td_backend_stats *x = &a->s[i], *y = &b->s[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", be[i]->i->name(be[i]));
        cJSON_AddNumberToObject(o, "decode_tokens", (double)tokens);
        cJSON_AddNumberToObject(o, "busy_ms", (y->busy_s - x->busy_s) * per);
        cJSON_AddNumberToObject(o, "experts_busy_ms", (y->moe_busy_s - x->moe_busy_s) * per);
        cJSON_AddNumberToObject(o, "handoff_ms", (y->moe_handoff_s - x->moe_handoff_s) * per);
        cJSON_AddNumberToObject(o, "wait_ms", (y->moe_wait_s - x->moe_wait_s) * per);
        cJSON_AddNumberToObject(o, "moe_submits", tokens > 0 ? (double)(y->moe_submits - x->moe_submits) / (double)tokens : 0);
        cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddNumberToObject(j, "token_ms", tokens > 0 ? (b->at - a->at) * per : 0.0);
}
