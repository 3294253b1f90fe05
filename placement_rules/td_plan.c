/* The planner: placement of every module, bytes per device and NUMA node, KV cache, the decode roofline,
 * and the verdict with advice when a budget is exceeded. */
#include "td_plan_impl.h"

#include "td_alloc.h"

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

static const char *td_gib(uint64_t bytes, char *buf, size_t cap)
{
    double g = (double)bytes / (double)(1ull << 30);
    if (g >= 1.0) snprintf(buf, cap, "%.2f GiB", g);
    else snprintf(buf, cap, "%.1f MiB", (double)bytes / (double)(1ull << 20));
    return buf;
}

/* Items [i*P/n, (i+1)*P/n) of P go to part i: adds each part's share of `bytes` to out[i]. */
static void td_spread(uint64_t bytes, int items, int parts, uint64_t *out)
{
    if (items < 1) items = 1;
    for (int i = 0; i < parts; i++) {
        uint64_t lo = (uint64_t)((int64_t)i * items / parts), hi = (uint64_t)((int64_t)(i + 1) * items / parts);
        out[i] += bytes / (uint64_t)items * (hi - lo) + (bytes % (uint64_t)items) * hi / (uint64_t)items -
                  (bytes % (uint64_t)items) * lo / (uint64_t)items;
    }
}

static int td_plan_dev_index(const td_plan *plan, td_device_id id)
{
    for (int i = 0; i < plan->n_devices; i++)
        if (td_device_id_eq(plan->devices[i].id, id)) return i;
    return -1;
}

/* Where a rule wrote one of its fields (the rule itself when the field came from elsewhere). */
static td_src_loc td_field_loc(const td_rules *rules, const td_rule_match *mm, td_place_field f)
{
    const td_rule *rule = rules ? td_rules_at(rules, mm->rule) : NULL;
    if (!rule) return (td_src_loc){NULL, 0, 0};
    unsigned bit = 1u << f;
    return (rule->set & bit) && rule->field_loc[f].file ? rule->field_loc[f] : rule->loc;
}

static const char *td_where(const td_rules *rules, const td_rule_match *mm, td_place_field f, char *buf, size_t cap)
{
    if (mm->kt_default) {
        snprintf(buf, cap, "%s (no rule matched; KTransformers places such modules on cuda:0)", td_rules_file(rules));
        return buf;
    }
    if (!rules || mm->rule < 0) {
        snprintf(buf, cap, "the defaults");
        return buf;
    }
    const td_rule *rule = td_rules_at(rules, mm->rule);
    if (rule->origin == TD_RULE_AUTO) {
        snprintf(buf, cap, "--auto");
        return buf;
    }
    td_src_loc loc = td_field_loc(rules, mm, f);
    return td_src_loc_str(&loc, buf, cap);
}

/* ------------------------------------------------------------------ placement checks */

static td_status td_plan_check(const td_plan_params *p, const td_plan *plan, const td_plan_module *pm,
                               const td_plan_extra *x)
{
    const td_devices *d = p->devices;
    const td_placement *pl = &pm->place;
    char where[256], dev[24];
    td_device_id_str(pl->device, dev, sizeof dev);
    if (td_plan_dev_index(plan, pl->device) < 0) {
        char have[200];
        if (d->n_gpus == 0) snprintf(have, sizeof have, "there is no GPU (%s)", d->gpu_note);
        else if (d->n_gpus == 1) snprintf(have, sizeof have, "there is 1 GPU (cuda:0)");
        else snprintf(have, sizeof have, "there are %d GPUs (cuda:0..cuda:%d)", d->n_gpus, d->n_gpus - 1);
        return td_fail(TD_E_ARG,
                       "%s: %s does not exist (it would hold %s): %s. To plan for GPUs this machine doesn't have, "
                       "describe them, e.g. --gpus %dx24GiB",
                       td_where(p->rules, &pm->match, TD_FIELD_DEVICE, where, sizeof where), dev, pm->m.name, have,
                       pl->device.index + 1);
    }
    if (pl->device.kind == TD_DEVICE_CPU && pl->numa == TD_NUMA_NODE && pl->numa_node >= d->n_numa)
        return td_fail(TD_E_ARG, "%s: numa: node:%d does not exist (it would hold %s): the host (%s) has %d NUMA node%s",
                       td_where(p->rules, &pm->match, TD_FIELD_NUMA, where, sizeof where), pl->numa_node, pm->m.name,
                       d->topology, d->n_numa, d->n_numa == 1 ? "" : "s");
    if (pl->device.kind == TD_DEVICE_CPU && pl->numa == TD_NUMA_SPLIT && pm->m.kind != TD_MODULE_EXPERTS)
        return td_fail(TD_E_ARG,
                       "%s: numa: split divides routed experts between NUMA nodes, but this rule also places %s (%s), "
                       "which has none; give such modules interleave or node:N (a rule before this one can)",
                       td_where(p->rules, &pm->match, TD_FIELD_NUMA, where, sizeof where), pm->m.name,
                       td_module_kind_name(pm->m.kind));
    if (pl->weights == TD_WEIGHTS_CONVERT && x->matrix_elems > 0) {
        int block = td_type_info(pl->convert_to)->block_elems;
        if (x->row_gcd % block)
            return td_fail(TD_E_ARG,
                           "%s: weights: %s needs rows of whole %d-element blocks, but %s has rows of %lld elements; "
                           "pick a type with smaller blocks (q8_0, q5_0, q4_0: 32) or keep",
                           td_where(p->rules, &pm->match, TD_FIELD_WEIGHTS, where, sizeof where),
                           td_type_name(pl->convert_to), block, pm->m.name, (long long)x->row_gcd);
    }
    return TD_OK;
}

/* ------------------------------------------------------------------ accounting */

/* The engine's batches (td_engine_params.max_batch's default), which size the GPU's scratch. */
#define TD_PLAN_GPU_ROWS 512

static void td_plan_devices_init(const td_plan_params *p, td_plan *plan)
{
    const td_devices *d = p->devices;
    memset(plan->devices, 0, sizeof plan->devices);
    td_plan_device *cpu = &plan->devices[0];
    cpu->id = (td_device_id){TD_DEVICE_CPU, 0};
    snprintf(cpu->name, sizeof cpu->name, "cpu");
    cpu->budget = d->cpu_budget;
    cpu->bw_gbps = d->cpu_bw_gbps;
    cpu->n_numa = d->n_numa;
    for (int i = 0; i < d->n_numa; i++) cpu->numa_budget[i] = d->numa[i].budget;
    for (int g = 0; g < d->n_gpus; g++) {
        td_plan_device *dev = &plan->devices[1 + g];
        dev->id = (td_device_id){TD_DEVICE_CUDA, g};
        snprintf(dev->name, sizeof dev->name, "cuda:%d", g);
        dev->budget = d->gpus[g].budget;
        /* without --gpu-reserve: what the CUDA backend holds besides weights and cache for this model */
        dev->reserve_bytes = d->gpus[g].reserve_auto
                                 ? d->gpu_reserve_fn(p->hp, TD_PLAN_GPU_ROWS, p->ctx > 0 ? p->ctx : 4096)
                                 : d->gpus[g].reserve;
        dev->bw_gbps = d->gpus[g].bw_gbps;
    }
    plan->n_devices = 1 + d->n_gpus;
}

/* How a module's bytes sit on the NUMA nodes. */
static void td_plan_numa(const td_plan_device *cpu, const td_placement *pl, int n_experts, uint64_t bytes,
                         uint64_t *node_bytes)
{
    int n = cpu->n_numa;
    if (n <= 1) node_bytes[0] += bytes;
    else if (pl->numa == TD_NUMA_NODE) node_bytes[pl->numa_node] += bytes;
    else if (pl->numa == TD_NUMA_SPLIT) td_spread(bytes, n_experts, n, node_bytes);
    else td_spread(bytes, n, n, node_bytes);
}

/* Weight bytes a decoded token reads: one embedding row, top-k of the routed experts, all of the rest;
 * the MTP block is not counted (the estimate is for plain decoding). */
static uint64_t td_plan_stream(const td_hparams *hp, const td_plan_module *pm, const td_plan_extra *x)
{
    if (pm->m.layer >= hp->n_layers) return 0;
    if (pm->m.kind == TD_MODULE_EMBED) return pm->bytes / (uint64_t)hp->vocab_size;
    if (pm->m.kind == TD_MODULE_EXPERTS && x->n_experts > 0)
        return pm->bytes / (uint64_t)x->n_experts * (uint64_t)hp->n_experts_per_tok;
    return pm->bytes;
}

static void td_plan_add(td_plan *plan, td_plan_module *pm, const td_plan_extra *x)
{
    td_plan_device *dev = &plan->devices[td_plan_dev_index(plan, pm->place.device)];
    dev->weight_bytes += pm->bytes;
    pm->stream_bytes = td_plan_stream(&plan->hp, pm, x);
    dev->stream_bytes += pm->stream_bytes;
    plan->weight_bytes += pm->bytes;
    if (dev->id.kind != TD_DEVICE_CPU) return;
    memset(pm->node_bytes, 0, sizeof pm->node_bytes);
    td_plan_numa(dev, &pm->place, x->n_experts, pm->bytes, pm->node_bytes);
    for (int i = 0; i < dev->n_numa; i++) {
        dev->numa_bytes[i] += pm->node_bytes[i];
        if (pm->bytes) dev->numa_stream[i] += (uint64_t)((double)pm->stream_bytes * (double)pm->node_bytes[i] / (double)pm->bytes);
    }
}

/* The latent KV cache of each layer lives with that layer's attention. */
static void td_plan_kv(td_plan *plan)
{
    const td_hparams *hp = &plan->hp;
    int64_t per_layer = (hp->kv_lora_rank + hp->qk_rope_head_dim) * plan->kv_elem_bytes;
    plan->kv_bytes_per_token = per_layer * hp->n_layers;
    plan->mtp_kv_bytes_per_token = plan->has_mtp ? per_layer : 0;
    plan->kv_bytes = 0;
    for (int i = 0; i < plan->n_modules; i++) {
        td_plan_module *pm = &plan->modules[i];
        if (pm->m.kind != TD_MODULE_ATTN) continue;
        uint64_t bytes = (uint64_t)per_layer * (uint64_t)plan->ctx;
        td_plan_device *dev = &plan->devices[td_plan_dev_index(plan, pm->place.device)];
        dev->kv_bytes += bytes;
        plan->kv_bytes += bytes;
        bool main_layer = pm->m.layer < hp->n_layers;
        if (main_layer) dev->stream_bytes += bytes; /* decoding at the end of the context reads all of it */
        if (dev->id.kind != TD_DEVICE_CPU) continue;
        uint64_t nodes[TD_MAX_NUMA] = {0};
        td_plan_numa(dev, &pm->place, 1, bytes, nodes);
        for (int n = 0; n < dev->n_numa; n++) {
            dev->numa_bytes[n] += nodes[n];
            if (main_layer) dev->numa_stream[n] += nodes[n];
        }
    }
}

static void td_plan_speed(td_plan *plan, const td_devices *d)
{
    double total = 0;
    for (int i = 0; i < plan->n_devices; i++) {
        td_plan_device *dev = &plan->devices[i];
        double s = 0;
        if (dev->id.kind == TD_DEVICE_CPU) {
            for (int n = 0; n < dev->n_numa; n++) { /* the nodes stream in parallel */
                double bw = d->numa[n].bw_gbps * 1e9;
                double t = bw > 0 ? (double)dev->numa_stream[n] / bw : 0;
                if (t > s) s = t;
            }
        } else if (dev->bw_gbps > 0) {
            s = (double)dev->stream_bytes / (dev->bw_gbps * 1e9);
        }
        dev->seconds_per_token = s;
        total += s; /* layers run one after another: the devices take turns */
    }
    plan->decode_tok_s = total > 0 ? 1.0 / total : 0;
}

/* ------------------------------------------------------------------ verdict and advice */

typedef struct td_contrib {
    int rule;          /* td_rule_match.rule */
    bool kt_default;
    uint64_t bytes;
    int count;
} td_contrib;

static uint64_t td_on(const td_plan_module *pm, int dev_index, const td_plan *plan, int node)
{
    if (td_plan_dev_index(plan, pm->place.device) != dev_index) return 0;
    return node < 0 ? pm->bytes : pm->node_bytes[node];
}

static uint64_t td_dev_free(const td_plan_device *d)
{
    return d->budget > d->bytes ? d->budget - d->bytes : 0;
}

/* The rule that puts the most bytes where the budget is exceeded, and how to shrink its share. */
static void td_plan_advise(const td_plan_params *p, const td_plan *plan, td_plan_overflow *o)
{
    const td_plan_device *dev = &plan->devices[o->device];
    char a[32], b[32], c[32], where[256];
    int len = 0;
    size_t cap = sizeof o->advice;
    uint64_t need = o->numa_node < 0 ? dev->bytes : dev->numa_bytes[o->numa_node];
    uint64_t budget = o->numa_node < 0 ? dev->budget : dev->numa_budget[o->numa_node];
    if (o->numa_node < 0)
        len += snprintf(o->advice + len, cap - (size_t)len, "%s needs %s but may use %s: over by %s.", dev->name,
                        td_gib(need, a, sizeof a), td_gib(budget, b, sizeof b), td_gib(o->over_bytes, c, sizeof c));
    else
        len += snprintf(o->advice + len, cap - (size_t)len, "NUMA node %d needs %s but has %s: over by %s.",
                        o->numa_node, td_gib(need, a, sizeof a), td_gib(budget, b, sizeof b),
                        td_gib(o->over_bytes, c, sizeof c));
    /* contributors */
    td_contrib best = {.rule = -2};
    for (int i = 0; i < plan->n_modules; i++) {
        const td_plan_module *pm = &plan->modules[i];
        if (!td_on(pm, o->device, plan, o->numa_node)) continue;
        td_contrib cur = {pm->match.rule, pm->match.kt_default, 0, 0};
        for (int j = 0; j < plan->n_modules; j++) {
            const td_plan_module *q = &plan->modules[j];
            if (q->match.rule != cur.rule || q->match.kt_default != cur.kt_default) continue;
            uint64_t on = td_on(q, o->device, plan, o->numa_node);
            if (on) cur.bytes += on, cur.count++;
        }
        if (cur.bytes > best.bytes) best = cur;
    }
    uint64_t kv = o->numa_node < 0 ? dev->kv_bytes : 0;
    if (kv > best.bytes) {
        snprintf(o->advice + len, cap - (size_t)len,
                 " Most of it is the KV cache at --ctx %lld (%s here): lower --ctx, or move attention layers elsewhere.",
                 (long long)plan->ctx, td_gib(kv, a, sizeof a));
        return;
    }
    if (best.rule == -2) return;
    td_rule_match mm = {.rule = best.rule, .kt_default = best.kt_default};
    len += snprintf(o->advice + len, cap - (size_t)len, " Most of it comes from %s (%d module%s, %s here).",
                    td_where(p->rules, &mm, TD_FIELD_DEVICE, where, sizeof where), best.count,
                    best.count == 1 ? "" : "s", td_gib(best.bytes, a, sizeof a));
    if (len >= (int)cap) return;
    const td_rule *rule = p->rules ? td_rules_at(p->rules, best.rule) : NULL;
    if (o->numa_node >= 0) {
        snprintf(o->advice + len, cap - (size_t)len,
                 " Give it numa: interleave (or split for routed experts) so that the other nodes share the load.");
        return;
    }
    /* drop its highest layers until the excess is gone */
    int lo = 1 << 30, hi = -1, keep_hi = -1;
    for (int i = 0; i < plan->n_modules; i++) {
        const td_plan_module *pm = &plan->modules[i];
        if (pm->match.rule != best.rule || pm->match.kt_default != best.kt_default || pm->m.layer < 0) continue;
        if (!td_on(pm, o->device, plan, -1)) continue;
        if (pm->m.layer < lo) lo = pm->m.layer;
        if (pm->m.layer > hi) hi = pm->m.layer;
    }
    /* the highest layer that can stay */
    uint64_t acc = 0;
    for (int l = hi; l >= lo; l--) {
        for (int i = 0; i < plan->n_modules; i++) {
            const td_plan_module *pm = &plan->modules[i];
            if (pm->m.layer == l && pm->match.rule == best.rule && pm->match.kt_default == best.kt_default)
                acc += td_on(pm, o->device, plan, -1);
        }
        if (acc >= o->over_bytes) {
            keep_hi = l - 1;
            break;
        }
    }
    /* somewhere for what moves */
    const td_plan_device *room = NULL;
    for (int i = 0; i < plan->n_devices; i++)
        if (i != o->device && td_dev_free(&plan->devices[i]) >= o->over_bytes &&
            (!room || td_dev_free(&plan->devices[i]) > td_dev_free(room)))
            room = &plan->devices[i];
    char dest[96];
    if (room) snprintf(dest, sizeof dest, "%s (%s free)", room->name, td_gib(td_dev_free(room), a, sizeof a));
    else snprintf(dest, sizeof dest, "another device");
    if (hi >= 0 && keep_hi >= lo) {
        if (rule && rule->has_layers)
            len += snprintf(o->advice + len, cap - (size_t)len,
                            " Change its layers: %d-%d to %d-%d and place layers %d-%d on %s.", rule->layer_lo,
                            rule->layer_hi, rule->layer_lo, keep_hi, keep_hi + 1, hi, dest);
        else
            len += snprintf(o->advice + len, cap - (size_t)len,
                            " Keep layers %d-%d here (layers: %d-%d in its match) and place layers %d-%d on %s.", lo,
                            keep_hi, lo, keep_hi, keep_hi + 1, hi, dest);
    } else if (best.bytes >= o->over_bytes) {
        if (room)
            len += snprintf(o->advice + len, cap - (size_t)len, " Place %s of them on %s.",
                            best.count == 1 ? "it" : "enough", dest);
    } else {
        len += snprintf(o->advice + len, cap - (size_t)len,
                        " Even moving all of them is not enough: move other modules too.");
    }
    if (!room && len < (int)cap)
        snprintf(o->advice + len, cap - (size_t)len,
                 " No device has %s free: use a smaller type (--assume-type, or a smaller quantization), a smaller "
                 "--ctx, or more memory (--gpus, --cpu-mem).",
                 td_gib(o->over_bytes, a, sizeof a));
}

static void td_plan_verdict(const td_plan_params *p, td_plan *plan)
{
    plan->n_overflows = 0;
    for (int i = 0; i < plan->n_devices; i++) {
        td_plan_device *dev = &plan->devices[i];
        dev->bytes = dev->weight_bytes + dev->kv_bytes + dev->reserve_bytes;
        if (dev->bytes > dev->budget) {
            td_plan_overflow *o = &plan->overflows[plan->n_overflows++];
            *o = (td_plan_overflow){.device = i, .numa_node = -1, .over_bytes = dev->bytes - dev->budget};
            continue;
        }
        for (int n = 0; dev->id.kind == TD_DEVICE_CPU && n < dev->n_numa; n++)
            if (dev->numa_bytes[n] > dev->numa_budget[n]) {
                td_plan_overflow *o = &plan->overflows[plan->n_overflows++];
                *o = (td_plan_overflow){.device = i, .numa_node = n,
                                        .over_bytes = dev->numa_bytes[n] - dev->numa_budget[n]};
            }
    }
    for (int i = 0; i < plan->n_overflows; i++) td_plan_advise(p, plan, &plan->overflows[i]);
    plan->fits = plan->n_overflows == 0;
}

/* ------------------------------------------------------------------ public */

td_status td_plan_place(const td_plan_params *p, td_plan *plan, td_plan_extra *extra)
{
    td_plan_devices_init(p, plan);
    plan->weight_bytes = 0;
    for (int i = 0; i < plan->n_modules; i++) {
        td_plan_module *pm = &plan->modules[i];
        td_plan_extra *x = &extra[i];
        if (p->rules) {
            TD_TRY(td_rules_match(p->rules, &pm->m, &plan->hp, &pm->match));
        } else {
            memset(&pm->match, 0, sizeof pm->match);
            pm->match.rule = -1;
            td_placement_default(pm->m.kind, &pm->match.place);
        }
        pm->place = pm->match.place;
        td_rule_match_origin(p->rules, &pm->match, pm->origin, sizeof pm->origin);
        TD_TRY(td_plan_check(p, plan, pm, x));
        pm->bytes = pm->m.bytes;
        if (pm->place.weights == TD_WEIGHTS_CONVERT && x->matrix_elems > 0) {
            uint64_t conv;
            if (td_type_nbytes(pm->place.convert_to, x->matrix_elems, &conv)) pm->bytes = conv + x->other_bytes;
        }
        td_plan_add(plan, pm, x);
    }
    td_plan_kv(plan);
    td_plan_speed(plan, p->devices);
    td_plan_verdict(p, plan);
    return TD_OK;
}

td_status td_plan_build(const td_plan_params *p, td_plan **out)
{
    *out = NULL;
    if (!p || !p->hp || !p->devices) return td_fail(TD_E_ARG, "a plan needs hyperparameters and devices");
    if (!p->dir && p->assume_type == TD_ASSUME_NONE)
        return td_fail(TD_E_ARG,
                       "planning from a config alone needs the weight types: give --assume-type q4_k, q4_k_m, q8_0, "
                       "bf16 or fp8 (or --model with the model's files)");
    if (p->ctx < 0 || p->ctx > (1ll << 32))
        return td_fail(TD_E_ARG, "--ctx %lld is out of range (1..%lld)", (long long)p->ctx, 1ll << 32);
    td_plan *plan = td_calloc(1, sizeof *plan);
    if (!plan) return td_fail(TD_E_NOMEM, "out of memory");
    plan->hp = *p->hp;
    plan->ctx = p->ctx ? p->ctx : 4096;
    plan->kv_elem_bytes = p->kv_elem_bytes ? p->kv_elem_bytes : 2;
    if (p->assume_type != TD_ASSUME_NONE)
        snprintf(plan->types_from, sizeof plan->types_from, "--assume-type %s", td_assume_type_name(p->assume_type));
    else snprintf(plan->types_from, sizeof plan->types_from, "the model's headers");
    td_status st = td_plan_modules(p, &plan->modules, &plan->extra, &plan->n_modules, &plan->has_mtp);
    if (st == TD_OK) st = td_plan_place(p, plan, plan->extra);
    if (st != TD_OK) {
        td_plan_free(plan);
        return st;
    }
    *out = plan;
    return TD_OK;
}

void td_plan_free(td_plan *plan)
{
    if (!plan) return;
    td_free(plan->modules);
    td_free(plan->extra);
    td_free(plan);
}

td_status td_plan_require_fit(const td_plan *plan)
{
    if (plan->fits) return TD_OK;
    char msg[4096];
    int len = snprintf(msg, sizeof msg, "the plan does not fit:");
    for (int i = 0; i < plan->n_overflows && len < (int)sizeof msg; i++)
        len += snprintf(msg + len, sizeof msg - (size_t)len, " %s", plan->overflows[i].advice);
    return td_fail(TD_E_NOMEM, "%s", msg);
}

td_status td_plan_for_model(const td_model *m, const td_rules *rules, const td_devices *devices, int64_t ctx,
                            int kv_elem_bytes, td_plan **out)
{
    td_plan_params p = {.hp = &m->hp, .dir = m->dir, .rules = rules, .devices = devices, .ctx = ctx,
                        .kv_elem_bytes = kv_elem_bytes};
    return td_plan_build(&p, out);
}

int td_plan_find(const td_plan *plan, const char *name)
{
    for (int i = 0; i < plan->n_modules; i++)
        if (strcmp(plan->modules[i].m.name, name) == 0) return i;
    return -1;
}
