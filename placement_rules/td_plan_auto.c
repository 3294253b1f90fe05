/* --auto: fill the memory each GPU has left with whole MoE layers' routed experts. A layer's experts are
 * one module (all E of them), so a layer moves entirely or not at all; the rules chosen are ordinary
 * layer-range rules a user can paste into a file. */
#include "td_plan_impl.h"

#include "td_alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct td_cand {
    int module;
    double score;     /* decode seconds saved per byte of GPU memory */
    bool local;       /* the layer's attention already runs on this GPU */
    int layer;
} td_cand;

static int td_cand_cmp(const void *pa, const void *pb)
{
    const td_cand *a = pa, *b = pb;
    double tol = 1e-9 * fmax(fabs(a->score), fabs(b->score));
    if (fabs(a->score - b->score) > tol) return a->score > b->score ? -1 : 1;
    if (a->local != b->local) return a->local ? -1 : 1;
    return a->layer - b->layer;
}

static bool td_placed_by_override(const td_rules *rules, const td_plan_module *pm)
{
    const td_rule *rule = td_rules_at(rules, pm->match.rule);
    return rule && rule->origin == TD_RULE_OVERRIDE;
}

static td_device_id td_attn_device(const td_plan *plan, int layer)
{
    char name[64];
    snprintf(name, sizeof name, "model.layers.%d.self_attn", layer);
    int i = td_plan_find(plan, name);
    return i >= 0 ? plan->modules[i].place.device : (td_device_id){TD_DEVICE_CPU, 0};
}

/* Chooses layers for one GPU; marks them in `taken` (the layer's GPU index + 1). */
static td_status td_auto_gpu(const td_plan *plan, const td_devices *d, const td_rules *rules, int g, int *taken)
{
    const td_plan_device *dev = &plan->devices[1 + g];
    uint64_t free = dev->budget > dev->bytes ? dev->budget - dev->bytes : 0;
    td_cand *c = td_calloc((size_t)plan->n_modules, sizeof *c);
    if (!c) return td_fail(TD_E_NOMEM, "out of memory");
    int n = 0;
    double cpu_bw = d->cpu_bw_gbps * 1e9, gpu_bw = dev->bw_gbps * 1e9;
    for (int i = 0; i < plan->n_modules; i++) {
        const td_plan_module *pm = &plan->modules[i];
        if (pm->m.kind != TD_MODULE_EXPERTS || pm->m.layer >= plan->hp.n_layers) continue; /* not the MTP block */
        if (pm->place.device.kind != TD_DEVICE_CPU || taken[pm->m.layer] || td_placed_by_override(rules, pm)) continue;
        if (!pm->bytes) continue;
        double saved = (cpu_bw > 0 ? pm->stream_bytes / cpu_bw : 0) - (gpu_bw > 0 ? pm->stream_bytes / gpu_bw : 0);
        td_device_id attn = td_attn_device(plan, pm->m.layer);
        c[n++] = (td_cand){i, saved / (double)pm->bytes, attn.kind == TD_DEVICE_CUDA && attn.index == g, pm->m.layer};
    }
    qsort(c, (size_t)n, sizeof *c, td_cand_cmp);
    for (int k = 0; k < n; k++) {
        const td_plan_module *pm = &plan->modules[c[k].module];
        if (c[k].score <= 0 || pm->bytes > free) continue;
        free -= pm->bytes;
        taken[pm->m.layer] = g + 1;
    }
    td_free(c);
    return TD_OK;
}

/* Turns the chosen layers into layer-range rules, one per run of consecutive layers on the same GPU. */
static td_status td_auto_rules(td_rules *rules, const int *taken, int n_layers)
{
    for (int l = 0; l < n_layers;) {
        if (!taken[l]) {
            l++;
            continue;
        }
        int g = taken[l], hi = l;
        while (hi + 1 < n_layers && taken[hi + 1] == g) hi++;
        TD_TRY(td_rules_add_auto(rules, "\\.mlp\\.experts$", l, hi, (td_device_id){TD_DEVICE_CUDA, g - 1}));
        l = hi + 1;
    }
    return TD_OK;
}

td_status td_plan_auto(const td_plan_params *p, td_rules *rules, td_plan **out)
{
    *out = NULL;
    td_plan_params q = *p;
    q.rules = rules;
    td_rules_clear_auto(rules);
    td_plan *plan;
    TD_TRY(td_plan_build(&q, &plan));
    int n_layers = plan->hp.n_layers;
    int *taken = td_calloc((size_t)n_layers + 1, sizeof *taken);
    td_status st = taken ? TD_OK : td_fail(TD_E_NOMEM, "out of memory");
    for (int g = 0; st == TD_OK && g < p->devices->n_gpus; g++) st = td_auto_gpu(plan, p->devices, rules, g, taken);
    if (st == TD_OK) st = td_auto_rules(rules, taken, n_layers);
    td_free(taken);
    td_plan_free(plan);
    if (st != TD_OK) {
        td_rules_clear_auto(rules);
        return st;
    }
    return td_plan_build(&q, out);
}
