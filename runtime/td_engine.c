#include "td_alloc.h"
#include "td_plan.h"
#include "td_session_impl.h"

#include <unistd.h>

td_status td_engine_open(td_model *model, const td_engine_params *p, td_engine **out)
{
    *out = NULL;
    td_engine_params params = p ? *p : (td_engine_params){0};
    if (params.max_batch == 0) params.max_batch = 512;
    if (params.max_batch < 1 || params.max_batch > 65536)
        return td_fail(TD_E_ARG, "batch size %lld is out of range (1..65536)", (long long)params.max_batch);
    if (params.n_threads < 0 || params.n_threads > 4096)
        return td_fail(TD_E_ARG, "thread count %d is out of range (0 = all cores, up to 4096)", params.n_threads);
    if ((unsigned)params.kernels >= TD_KERNELS_COUNT) return td_fail(TD_E_ARG, "unknown kernel choice");
    if (params.plan) TD_TRY(td_plan_engine_check(params.plan, model, &params.kernels));
    const td_hparams *hp = &model->hp;
    int64_t ffn = hp->intermediate_size;
    int64_t shared = hp->moe_intermediate_size * (hp->n_shared_experts > 1 ? hp->n_shared_experts : 1);
    if (shared > ffn) ffn = shared;
    int64_t max_cols = model->max_cols > hp->hidden_size * 2 ? model->max_cols : hp->hidden_size * 2;
    td_cpu_params cp = {.kernels = params.kernels, .n_threads = params.n_threads, .max_tokens = params.max_batch,
                        .max_cols = max_cols, .hidden = hp->hidden_size, .ffn_width = ffn,
                        .expert_width = hp->moe_intermediate_size, .n_experts = hp->n_routed_experts,
                        .top_k = hp->n_experts_per_tok};
    td_engine *e = td_calloc(1, sizeof *e);
    if (!e) return td_fail(TD_E_NOMEM, "out of memory");
    e->model = model;
    e->p = params;
    td_status st = td_cpu_create(&cp, &e->cpu);
    if (st != TD_OK) {
        td_free(e);
        return st;
    }
    /* routed experts onto the NUMA node that computes them (no-op on one node) */
    for (int l = 0; l < hp->n_layers; l++)
        if (model->layers[l].is_moe) td_cpu_moe_place(e->cpu, model->layers[l].moe.experts, hp->n_routed_experts);
    *out = e;
    return TD_OK;
}

void td_engine_close(td_engine *e)
{
    if (!e) return;
    td_cpu_free(e->cpu);
    td_free(e);
}

td_model *td_engine_model(const td_engine *e) { return e->model; }
td_cpu *td_engine_cpu(const td_engine *e) { return e->cpu; }
