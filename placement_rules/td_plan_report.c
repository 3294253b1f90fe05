/* A plan for people (a table) and for programs (JSON). */
#include "td_plan_impl.h"

#include "td_alloc.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char *td_sz(uint64_t bytes, char *buf, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) v /= 1024.0, u++;
    if (u == 0) snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
    else snprintf(buf, cap, "%.2f %s", v, units[u]);
    return buf;
}

/* "model.layers.7.mlp.experts" -> "model.layers.N.mlp.experts" */
static void td_pattern(const char *name, char *out, size_t cap)
{
    const char *p = strstr(name, "layers.");
    if (!p || !isdigit((unsigned char)p[7])) {
        snprintf(out, cap, "%s", name);
        return;
    }
    const char *q = p + 7;
    while (isdigit((unsigned char)*q)) q++;
    snprintf(out, cap, "%.*sN%s", (int)(p + 7 - name), name, q);
}

typedef struct td_group {
    char pattern[64];
    const td_plan_module *first;
    int count;
    uint64_t bytes;
    uint32_t types;        /* bit per td_type among its modules */
    unsigned char *layers; /* [n_layers + 2] */
} td_group;

static bool td_same_row(const td_plan_module *a, const td_plan_module *b)
{
    return a->m.kind == b->m.kind && td_device_id_eq(a->place.device, b->place.device) &&
           a->place.kernel == b->place.kernel && a->place.weights == b->place.weights &&
           a->place.convert_to == b->place.convert_to && a->place.numa == b->place.numa &&
           a->place.numa_node == b->place.numa_node && strcmp(a->origin, b->origin) == 0;
}

static void td_layer_ranges(const unsigned char *set, int n, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (int l = 0; l < n && len < cap; l++) {
        if (!set[l]) continue;
        int hi = l;
        while (hi + 1 < n && set[hi + 1]) hi++;
        if (hi == l) len += (size_t)snprintf(out + len, cap - len, "%s%d", len ? "," : "", l);
        else len += (size_t)snprintf(out + len, cap - len, "%s%d-%d", len ? "," : "", l, hi);
        l = hi;
    }
    if (!out[0]) snprintf(out, cap, "-");
}

static void td_print_modules(const td_plan *plan, FILE *f, bool verbose)
{
    int n_layers = plan->hp.n_layers + 2;
    td_group *g = td_calloc((size_t)plan->n_modules, sizeof *g);
    unsigned char *sets = td_calloc((size_t)plan->n_modules, (size_t)n_layers);
    if (!g || !sets) {
        td_free(g);
        td_free(sets);
        return;
    }
    int ng = 0;
    for (int i = 0; i < plan->n_modules; i++) {
        const td_plan_module *pm = &plan->modules[i];
        char pat[64];
        if (verbose) snprintf(pat, sizeof pat, "%s", pm->m.name);
        else td_pattern(pm->m.name, pat, sizeof pat);
        int k = 0;
        while (k < ng && !(strcmp(g[k].pattern, pat) == 0 && td_same_row(g[k].first, pm))) k++;
        if (k == ng) {
            snprintf(g[k].pattern, sizeof g[k].pattern, "%s", pat);
            g[k].first = pm;
            g[k].layers = sets + (size_t)k * (size_t)n_layers;
            ng++;
        }
        g[k].count++;
        g[k].bytes += pm->bytes;
        g[k].types |= 1u << (pm->place.weights == TD_WEIGHTS_CONVERT ? pm->place.convert_to : pm->type);
        if (pm->type2 != TD_TYPE_COUNT && pm->place.weights != TD_WEIGHTS_CONVERT) g[k].types |= 1u << pm->type2;
        if (pm->m.layer >= 0 && pm->m.layer < n_layers) g[k].layers[pm->m.layer] = 1;
    }
    fprintf(f, "%-34s %-9s %-7s %-7s %-8s %-11s %-10s %11s  %s\n", "module", "layers", "device", "kernel", "weights",
            "numa", "type", "bytes", "placed by");
    for (int k = 0; k < ng; k++) {
        const td_plan_module *pm = g[k].first;
        char layers[64], dev[16], w[16], numa[24], b[32], type[24];
        td_layer_ranges(g[k].layers, n_layers, layers, sizeof layers);
        size_t tl = 0;
        type[0] = '\0';
        for (int t = 0; t < TD_TYPE_COUNT && tl < sizeof type; t++)
            if (g[k].types & (1u << t)) tl += (size_t)snprintf(type + tl, sizeof type - tl, "%s%s", tl ? "+" : "", td_type_name((td_type)t));
        fprintf(f, "%-34s %-9s %-7s %-7s %-8s %-11s %-10s %11s  %s\n", g[k].pattern, layers,
                td_device_id_str(pm->place.device, dev, sizeof dev), td_kernels_name(pm->place.kernel),
                td_weights_str(&pm->place, w, sizeof w), td_numa_policy_str(&pm->place, numa, sizeof numa), type,
                td_sz(g[k].bytes, b, sizeof b), pm->origin);
    }
    td_free(g);
    td_free(sets);
}

static void td_print_devices(const td_plan *plan, FILE *f)
{
    char a[32], b[32], c[32], d[32], e[32], s[32];
    fprintf(f, "\n%-9s %11s %11s %11s %11s %11s %11s %12s %8s %9s\n", "device", "weights", "kv cache", "reserve",
            "total", "budget", "free", "reads/token", "GB/s", "ms/token");
    for (int i = 0; i < plan->n_devices; i++) {
        const td_plan_device *dev = &plan->devices[i];
        char fr[32];
        if (dev->bytes <= dev->budget) td_sz(dev->budget - dev->bytes, fr, sizeof fr);
        else snprintf(fr, sizeof fr, "-%s", td_sz(dev->bytes - dev->budget, e, sizeof e));
        fprintf(f, "%-9s %11s %11s %11s %11s %11s %11s %12s %8.0f %9.2f\n", dev->name,
                td_sz(dev->weight_bytes, a, sizeof a), td_sz(dev->kv_bytes, b, sizeof b),
                td_sz(dev->reserve_bytes, c, sizeof c), td_sz(dev->bytes, d, sizeof d),
                td_sz(dev->budget, e, sizeof e), fr, td_sz(dev->stream_bytes, s, sizeof s), dev->bw_gbps,
                dev->seconds_per_token * 1e3);
        for (int n = 0; dev->id.kind == TD_DEVICE_CPU && dev->n_numa > 1 && n < dev->n_numa; n++) {
            char name[32];
            snprintf(name, sizeof name, "  node %d", n);
            if (dev->numa_bytes[n] <= dev->numa_budget[n]) td_sz(dev->numa_budget[n] - dev->numa_bytes[n], fr, sizeof fr);
            else snprintf(fr, sizeof fr, "-%s", td_sz(dev->numa_bytes[n] - dev->numa_budget[n], e, sizeof e));
            fprintf(f, "%-9s %11s %11s %11s %11s %11s %11s %12s\n", name, "", "", "", td_sz(dev->numa_bytes[n], d, sizeof d),
                    td_sz(dev->numa_budget[n], e, sizeof e), fr, td_sz(dev->numa_stream[n], s, sizeof s));
        }
    }
}

static int td_count_origin(const td_rules *rules, td_rule_origin o)
{
    int n = 0;
    for (int i = 0; rules && i < td_rules_count(rules); i++) n += td_rules_at(rules, i)->origin == o;
    return n;
}

void td_plan_print(const td_plan *plan, const td_rules *rules, FILE *f, bool verbose)
{
    char desc[1024], a[32];
    td_hparams_describe(&plan->hp, desc, sizeof desc);
    fprintf(f, "model       %s\n", desc);
    fprintf(f, "types       from %s; weights %s in all\n", plan->types_from, td_sz(plan->weight_bytes, a, sizeof a));
    if (rules && td_rules_get_format(rules) != TD_RULES_NONE)
        fprintf(f, "rules       %s (%s format, %d rules)", td_rules_file(rules),
                td_rules_get_format(rules) == TD_RULES_KTRANSFORMERS ? "KTransformers" : "tandem",
                td_count_origin(rules, TD_RULE_FILE));
    else fprintf(f, "rules       none (defaults everywhere)");
    int no = td_count_origin(rules, TD_RULE_OVERRIDE), na = td_count_origin(rules, TD_RULE_AUTO);
    if (no) fprintf(f, "; %d from --override", no);
    if (na) fprintf(f, "; %d chosen by --auto", na);
    fprintf(f, "\n\n");
    td_print_modules(plan, f, verbose);
    td_print_devices(plan, f);
    fprintf(f, "\nKV cache    %lld B/token (%d-byte values) x %lld tokens = %s in all",
            (long long)plan->kv_bytes_per_token, plan->kv_elem_bytes, (long long)plan->ctx,
            td_sz(plan->kv_bytes, a, sizeof a));
    if (plan->mtp_kv_bytes_per_token)
        fprintf(f, ", with the MTP block's own %lld B/token", (long long)plan->mtp_kv_bytes_per_token);
    fprintf(f, "\ndecode      ~%.1f tok/s estimated (roofline:", plan->decode_tok_s);
    for (int i = 0; i < plan->n_devices; i++)
        if (plan->devices[i].seconds_per_token > 0)
            fprintf(f, " %s %.1f ms", plan->devices[i].name, plan->devices[i].seconds_per_token * 1e3);
    fprintf(f, " per token at the full context; plain decoding, MTP not counted)\n");
    if (na) {
        fprintf(f, "\n--auto chose these rules (paste them at the top of your rules file to keep them):\n");
        for (int i = 0; i < td_rules_count(rules); i++)
            if (td_rules_at(rules, i)->origin == TD_RULE_AUTO) td_rule_write_yaml(td_rules_at(rules, i), f);
    }
    if (plan->fits) {
        fprintf(f, "\nverdict     fits\n");
        return;
    }
    fprintf(f, "\nverdict     DOES NOT FIT\n");
    for (int i = 0; i < plan->n_overflows; i++) fprintf(f, "  - %s\n", plan->overflows[i].advice);
}

/* ------------------------------------------------------------------ rules that do nothing */

/* The first module rule i matches by itself (-1: none). */
static int td_first_match(const td_plan *plan, const td_rules *rules, int i)
{
    for (int m = 0; m < plan->n_modules; m++) {
        bool hit = false;
        if (td_rules_rule_matches(rules, i, &plan->modules[m].m, &plan->hp, &hit) != TD_OK) {
            td_err_clear();
            return -1;
        }
        if (hit) return m;
    }
    return -1;
}

int td_plan_print_idle_rules(const td_plan *plan, const td_rules *rules, const char *prefix, FILE *f)
{
    int n = 0;
    if (!rules) return 0;
    if (td_rules_get_format(rules) != TD_RULES_NONE && td_count_origin(rules, TD_RULE_FILE) == 0) {
        fprintf(f, "%swarning: %s has no rules: every module takes the defaults\n", prefix, td_rules_file(rules));
        n++;
    }
    for (int i = 0; i < td_rules_count(rules); i++) {
        const td_rule *rule = td_rules_at(rules, i);
        /* a KTransformers file also replaces wrappers tandem has no module for (the model, RoPE, the MoE
         * block around its parts): a rule of it that places nothing here is no mistake */
        if (rule->origin == TD_RULE_AUTO || rule->kt) continue;
        bool used = false;
        for (int m = 0; m < plan->n_modules && !used; m++) used = plan->modules[m].match.rule == i;
        if (used) continue;
        char where[160], by[160];
        fprintf(f, "%swarning: %s: the rule", prefix, td_src_loc_str(&rule->loc, where, sizeof where));
        if (rule->name) fprintf(f, " '%s'", rule->name);
        int first = td_first_match(plan, rules, i);
        const td_plan_module *pm = first >= 0 ? &plan->modules[first] : NULL;
        if (!pm)
            fprintf(f, " matches no module (module names: tandem rules --verbose)\n");
        else
            fprintf(f, " places no module: rules before it take all it matches (%s by %s)\n", pm->m.name,
                    td_rule_match_origin(rules, &pm->match, by, sizeof by));
        n++;
    }
    return n;
}

/* ------------------------------------------------------------------ JSON */

static cJSON *td_json_device(const td_plan_device *dev)
{
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddNumberToObject(j, "bytes", (double)dev->bytes);
    cJSON_AddNumberToObject(j, "budget", (double)dev->budget);
    cJSON_AddNumberToObject(j, "weight_bytes", (double)dev->weight_bytes);
    cJSON_AddNumberToObject(j, "kv_bytes", (double)dev->kv_bytes);
    cJSON_AddNumberToObject(j, "reserve_bytes", (double)dev->reserve_bytes);
    cJSON_AddNumberToObject(j, "stream_bytes_per_token", (double)dev->stream_bytes);
    cJSON_AddNumberToObject(j, "bandwidth_gbps", dev->bw_gbps);
    cJSON_AddNumberToObject(j, "seconds_per_token", dev->seconds_per_token);
    if (dev->id.kind == TD_DEVICE_CPU) {
        cJSON *numa = cJSON_AddArrayToObject(j, "numa");
        for (int n = 0; numa && n < dev->n_numa; n++) {
            cJSON *o = cJSON_CreateObject();
            if (!o) break;
            cJSON_AddNumberToObject(o, "node", n);
            cJSON_AddNumberToObject(o, "bytes", (double)dev->numa_bytes[n]);
            cJSON_AddNumberToObject(o, "budget", (double)dev->numa_budget[n]);
            cJSON_AddNumberToObject(o, "stream_bytes_per_token", (double)dev->numa_stream[n]);
            cJSON_AddItemToArray(numa, o);
        }
    }
    return j;
}

static cJSON *td_json_module(const td_plan *plan, const td_plan_module *pm)
{
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    char dev[16], w[16], numa[24];
    cJSON_AddStringToObject(j, "name", pm->m.name);
    cJSON_AddStringToObject(j, "kind", td_module_kind_name(pm->m.kind));
    cJSON_AddNumberToObject(j, "layer", pm->m.layer);
    cJSON_AddStringToObject(j, "device", td_device_id_str(pm->place.device, dev, sizeof dev));
    cJSON_AddStringToObject(j, "kernel", td_kernels_name(pm->place.kernel));
    cJSON_AddStringToObject(j, "weights", td_weights_str(&pm->place, w, sizeof w));
    cJSON_AddStringToObject(j, "numa", td_numa_policy_str(&pm->place, numa, sizeof numa));
    cJSON_AddStringToObject(j, "type", td_type_name(pm->type));
    cJSON_AddNumberToObject(j, "bytes", (double)pm->bytes);
    cJSON_AddNumberToObject(j, "stored_bytes", (double)pm->m.bytes);
    cJSON_AddNumberToObject(j, "stream_bytes_per_token", (double)pm->stream_bytes);
    cJSON_AddStringToObject(j, "rule", pm->origin);
    if (pm->place.device.kind == TD_DEVICE_CPU) {
        cJSON *nb = cJSON_AddArrayToObject(j, "numa_bytes");
        for (int n = 0; nb && n < plan->devices[0].n_numa; n++)
            cJSON_AddItemToArray(nb, cJSON_CreateNumber((double)pm->node_bytes[n]));
    }
    return j;
}

static void td_json_auto_rules(cJSON *j, const td_rules *rules)
{
    cJSON *arr = cJSON_AddArrayToObject(j, "auto_rules");
    for (int i = 0; arr && rules && i < td_rules_count(rules); i++) {
        const td_rule *rule = td_rules_at(rules, i);
        if (rule->origin != TD_RULE_AUTO) continue;
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        if (!mem) continue;
        td_rule_write_yaml(rule, mem);
        fclose(mem);
        cJSON_AddItemToArray(arr, cJSON_CreateString(text ? text : ""));
        free(text);
    }
}

char *td_plan_json(const td_plan *plan, const td_rules *rules)
{
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddBoolToObject(j, "fits", plan->fits);
    cJSON_AddStringToObject(j, "model_type", plan->hp.model_type);
    cJSON_AddStringToObject(j, "types_from", plan->types_from);
    cJSON_AddStringToObject(j, "rules_file", rules ? td_rules_file(rules) : "");
    cJSON_AddNumberToObject(j, "ctx", (double)plan->ctx);
    cJSON_AddNumberToObject(j, "kv_elem_bytes", plan->kv_elem_bytes);
    cJSON_AddNumberToObject(j, "kv_bytes_per_token", (double)plan->kv_bytes_per_token);
    cJSON_AddNumberToObject(j, "mtp_kv_bytes_per_token", (double)plan->mtp_kv_bytes_per_token);
    cJSON_AddNumberToObject(j, "kv_bytes", (double)plan->kv_bytes);
    cJSON_AddNumberToObject(j, "weight_bytes", (double)plan->weight_bytes);
    cJSON_AddNumberToObject(j, "decode_tok_s_estimate", plan->decode_tok_s);
    cJSON_AddBoolToObject(j, "mtp", plan->has_mtp);
    cJSON *devs = cJSON_AddObjectToObject(j, "devices");
    for (int i = 0; devs && i < plan->n_devices; i++)
        cJSON_AddItemToObject(devs, plan->devices[i].name, td_json_device(&plan->devices[i]));
    cJSON *mods = cJSON_AddArrayToObject(j, "modules");
    for (int i = 0; mods && i < plan->n_modules; i++) cJSON_AddItemToArray(mods, td_json_module(plan, &plan->modules[i]));
    td_json_auto_rules(j, rules);
    cJSON *over = cJSON_AddArrayToObject(j, "overflows");
    for (int i = 0; over && i < plan->n_overflows; i++) {
        const td_plan_overflow *o = &plan->overflows[i];
        cJSON *oj = cJSON_CreateObject();
        if (!oj) break;
        cJSON_AddStringToObject(oj, "device", plan->devices[o->device].name);
        cJSON_AddNumberToObject(oj, "numa_node", o->numa_node);
        cJSON_AddNumberToObject(oj, "over_bytes", (double)o->over_bytes);
        cJSON_AddStringToObject(oj, "advice", o->advice);
        cJSON_AddItemToArray(over, oj);
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return NULL;
    char *out = td_strdup(s);
    cJSON_free(s);
    return out;
}
