/* Reads rule files with libyaml's document API. Every node keeps its position, so every error names
 * file:line:column and says what was expected. Both tandem's format (match/place) and KTransformers'
 * (match/replace) are read here; what KTransformers classes mean lives in td_rules_kt.c. */
#include "td_rules_impl.h"

#include "td_alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

typedef struct td_yctx {
    td_rules *r;
    yaml_document_t *doc;
    const char *file;
} td_yctx;

static td_src_loc td_yloc(const td_yctx *c, const yaml_node_t *n)
{
    return (td_src_loc){c->file, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
}

static td_status td_yerr(const td_yctx *c, const yaml_node_t *n, const char *fmt, ...) TD_PRINTF(3, 4);
static td_status td_yerr(const td_yctx *c, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return td_fail(TD_E_FORMAT, "%s:%d:%d: %s", c->file, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1,
                   msg);
}

static const char *td_ynode_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

/* The text of a scalar node; errors for other nodes, and for scalars with NUL characters. */
static td_status td_yscalar(const td_yctx *c, const yaml_node_t *n, const char *what, const char **out)
{
    if (n->type != YAML_SCALAR_NODE) return td_yerr(c, n, "%s must be a single value, found %s", what, td_ynode_kind(n));
    const char *s = (const char *)n->data.scalar.value;
    if (strlen(s) != n->data.scalar.length) return td_yerr(c, n, "%s contains a NUL character", what);
    *out = s;
    return TD_OK;
}

static bool td_yis_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0;
}

static bool td_yquoted(const yaml_node_t *n)
{
    return n->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
           n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
}

static bool td_parse_uint(const char *s, int hi, int *out)
{
    if (!*s || strlen(s) > 9) return false;
    int v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        v = v * 10 + (*s - '0');
    }
    if (v > hi) return false;
    *out = v;
    return true;
}

/* Walks a mapping: calls `fn` for each key; rejects non-scalar and repeated keys. */
typedef td_status (*td_ykey_fn)(td_yctx *c, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *ud);

static td_status td_ymap(td_yctx *c, const yaml_node_t *n, const char *what, td_ykey_fn fn, void *ud)
{
    if (n->type != YAML_MAPPING_NODE) return td_yerr(c, n, "%s must be a mapping, found %s", what, td_ynode_kind(n));
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (!k || !v) return td_yerr(c, n, "%s is incomplete", what);
        const char *key = NULL;
        TD_TRY(td_yscalar(c, k, "a key", &key));
        for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
            const yaml_node_t *k2 = yaml_document_get_node(c->doc, q->key);
            if (k2 && k2->type == YAML_SCALAR_NODE && strcmp((const char *)k2->data.scalar.value, key) == 0)
                return td_yerr(c, k, "'%s' is given twice in %s", key, what);
        }
        TD_TRY(fn(c, key, k, v, ud));
    }
    return TD_OK;
}

static bool td_ykey_is(const yaml_node_t *pair_owner_map, const yaml_document_t *doc, const char *key)
{
    for (yaml_node_pair_t *p = pair_owner_map->data.mapping.pairs.start; p < pair_owner_map->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = yaml_document_get_node((yaml_document_t *)doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0) return true;
    }
    return false;
}

/* ------------------------------------------------------------------ tandem rules */

static td_status td_tan_name(td_yctx *c, td_rule *rule, const yaml_node_t *v)
{
    const char *s = NULL;
    TD_TRY(td_yscalar(c, v, "name", &s));
    if (!*s) return td_yerr(c, v, "name is empty; expected a regex over module names such as '\\.mlp\\.experts$'");
    rule->name = td_strdup(s);
    if (!rule->name) return td_fail(TD_E_NOMEM, "out of memory");
    rule->name_loc = td_yloc(c, v);
    return td_rules_compile(c->r, rule, td_yquoted(v) ? 1 : 0);
}

static td_status td_tan_layers(td_yctx *c, td_rule *rule, const yaml_node_t *v)
{
    static const char *const expected = "expected a layer range such as 3-60, [3, 60] or 7";
    enum { MAX_LAYER = 1 << 20 };
    int lo, hi;
    if (v->type == YAML_SEQUENCE_NODE) {
        yaml_node_item_t *it = v->data.sequence.items.start;
        if (v->data.sequence.items.top - it != 2) return td_yerr(c, v, "layers: a list needs two numbers; %s", expected);
        const yaml_node_t *a = yaml_document_get_node(c->doc, it[0]);
        const yaml_node_t *b = yaml_document_get_node(c->doc, it[1]);
        const char *sa = NULL, *sb = NULL;
        if (!a || !b) return td_yerr(c, v, "layers: %s", expected);
        TD_TRY(td_yscalar(c, a, "layers", &sa));
        TD_TRY(td_yscalar(c, b, "layers", &sb));
        if (!td_parse_uint(sa, MAX_LAYER, &lo)) return td_yerr(c, a, "layers: '%s' is not a layer number; %s", sa, expected);
        if (!td_parse_uint(sb, MAX_LAYER, &hi)) return td_yerr(c, b, "layers: '%s' is not a layer number; %s", sb, expected);
    } else {
        const char *s = NULL;
        TD_TRY(td_yscalar(c, v, "layers", &s));
        char buf[32];
        snprintf(buf, sizeof buf, "%s", s);
        char *dash = strchr(buf, '-');
        if (dash) *dash = '\0';
        if (strlen(s) >= sizeof buf || !td_parse_uint(buf, MAX_LAYER, &lo) ||
            !td_parse_uint(dash ? dash + 1 : buf, MAX_LAYER, &hi))
            return td_yerr(c, v, "layers: '%s' is not a range; %s", s, expected);
    }
    if (lo > hi) return td_yerr(c, v, "layers: %d-%d is empty (the first layer is after the last); %s", lo, hi, expected);
    rule->has_layers = true;
    rule->layer_lo = lo;
    rule->layer_hi = hi;
    rule->layers_loc = td_yloc(c, v);
    return TD_OK;
}

static td_status td_tan_match_key(td_yctx *c, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *ud)
{
    td_rule *rule = ud;
    if (strcmp(key, "name") == 0) return td_tan_name(c, rule, v);
    if (strcmp(key, "layers") == 0) return td_tan_layers(c, rule, v);
    return td_yerr(c, k, "unknown key '%s' in match (expected name or layers)", key);
}

/* weights: targets a conversion can produce without extra data (IQ types need an importance matrix, FP8 its
 * block scales, q8_K is an activation format). */
static bool td_convert_target_ok(td_type t)
{
    switch (t) {
    case TD_TYPE_F32: case TD_TYPE_F16: case TD_TYPE_BF16: case TD_TYPE_Q8_0: case TD_TYPE_Q5_0:
    case TD_TYPE_Q4_0: case TD_TYPE_Q6_K: case TD_TYPE_Q5_K: case TD_TYPE_Q4_K: case TD_TYPE_Q3_K:
    case TD_TYPE_Q2_K: return true;
    default: return false;
    }
}

static td_status td_tan_place_key(td_yctx *c, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *ud)
{
    td_rule *rule = ud;
    td_placement *p = &rule->place;
    const char *s = NULL;
    TD_TRY(td_yscalar(c, v, key, &s));
    if (strcmp(key, "device") == 0) {
        if (!td_device_id_parse(s, &p->device))
            return td_yerr(c, v, "device: '%s' is not a device; expected cpu or cuda:N (cuda:0, cuda:1, ...)", s);
        rule->set |= TD_PLACE_DEVICE;
        rule->field_loc[TD_FIELD_DEVICE] = td_yloc(c, v);
    } else if (strcmp(key, "kernel") == 0) {
        if (!td_kernels_from_name(s, &p->kernel))
            return td_yerr(c, v, "kernel: '%s' is not a kernel; expected auto, ref, avx2, avx512 or amx", s);
        rule->set |= TD_PLACE_KERNEL;
        rule->field_loc[TD_FIELD_KERNEL] = td_yloc(c, v);
    } else if (strcmp(key, "weights") == 0) {
        td_type t;
        if (strcmp(s, "keep") == 0) p->weights = TD_WEIGHTS_KEEP;
        else if (strcmp(s, "repack") == 0) p->weights = TD_WEIGHTS_REPACK;
        else if (td_type_from_name(s, &t) && td_convert_target_ok(t)) p->weights = TD_WEIGHTS_CONVERT, p->convert_to = t;
        else
            return td_yerr(c, v,
                           "weights: '%s' is not keep, repack or a type tandem converts to (f32, f16, bf16, q8_0, "
                           "q5_0, q4_0, q6_k, q5_k, q4_k, q3_k, q2_k)",
                           s);
        rule->set |= TD_PLACE_WEIGHTS;
        rule->field_loc[TD_FIELD_WEIGHTS] = td_yloc(c, v);
    } else if (strcmp(key, "numa") == 0) {
        if (strcmp(s, "split") == 0) p->numa = TD_NUMA_SPLIT;
        else if (strcmp(s, "interleave") == 0) p->numa = TD_NUMA_INTERLEAVE;
        else if (strncmp(s, "node:", 5) == 0 && td_parse_uint(s + 5, 1023, &p->numa_node)) p->numa = TD_NUMA_NODE;
        else return td_yerr(c, v, "numa: '%s' is not a policy; expected split, interleave or node:N", s);
        rule->set |= TD_PLACE_NUMA;
        rule->field_loc[TD_FIELD_NUMA] = td_yloc(c, v);
    } else {
        return td_yerr(c, k, "unknown key '%s' in place (expected device, kernel, weights or numa)", key);
    }
    return TD_OK;
}

/* Combinations no device can honour. */
static td_status td_tan_check(const td_rule *rule)
{
    char where[160], dev[24];
    if (!(rule->set & TD_PLACE_DEVICE) || rule->place.device.kind == TD_DEVICE_CPU) return TD_OK;
    td_device_id_str(rule->place.device, dev, sizeof dev);
    if ((rule->set & TD_PLACE_KERNEL) && rule->place.kernel != TD_KERNELS_AUTO)
        return td_fail(TD_E_FORMAT,
                       "%s: kernel %s is a CPU kernel, but this rule places modules on %s; GPU modules take kernel: auto "
                       "(or place them on cpu)",
                       td_src_loc_str(&rule->field_loc[TD_FIELD_KERNEL], where, sizeof where),
                       td_kernels_name(rule->place.kernel), dev);
    if (rule->set & TD_PLACE_NUMA)
        return td_fail(TD_E_FORMAT,
                       "%s: numa applies to host memory, but this rule places modules on %s; drop numa or place them on "
                       "cpu",
                       td_src_loc_str(&rule->field_loc[TD_FIELD_NUMA], where, sizeof where), dev);
    return TD_OK;
}

typedef struct td_tan_rule_ud {
    td_rule *rule;
    bool has_place;
} td_tan_rule_ud;

static td_status td_tan_rule_key(td_yctx *c, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *vud)
{
    td_tan_rule_ud *ud = vud;
    if (strcmp(key, "match") == 0) {
        if (td_yis_null(v)) return TD_OK; /* `match:` alone matches every module */
        return td_ymap(c, v, "match", td_tan_match_key, ud->rule);
    }
    if (strcmp(key, "place") == 0) {
        ud->has_place = true;
        return td_ymap(c, v, "place", td_tan_place_key, ud->rule);
    }
    if (strcmp(key, "replace") == 0 || strcmp(key, "recursive") == 0)
        return td_yerr(c, k,
                       "'%s' is KTransformers syntax, but this file's first rule uses tandem's place:; a file holds "
                       "one kind of rules",
                       key);
    return td_yerr(c, k, "unknown key '%s' in a rule (expected match or place)", key);
}

static td_status td_tan_rule_parse(td_yctx *c, const yaml_node_t *n, td_rule *rule)
{
    td_tan_rule_ud ud = {rule, false};
    TD_TRY(td_ymap(c, n, "a rule", td_tan_rule_key, &ud));
    if (!ud.has_place)
        return td_yerr(c, n, "this rule has no place:; expected place: {device: cpu | cuda:N, ...}");
    return td_tan_check(rule);
}

/* ------------------------------------------------------------------ KTransformers rules */

typedef struct td_kt_ud {
    td_rule *rule;
    td_kt_rule *kt;
    bool has_replace;
    const char *gen_op;
    const yaml_node_t *gen_op_node;
    const char *backend;
    const yaml_node_t *backend_node;
} td_kt_ud;

static td_status td_kt_device(td_yctx *c, const yaml_node_t *v, const char *what, td_device_id *out)
{
    const char *s = NULL;
    TD_TRY(td_yscalar(c, v, what, &s));
    if (!td_device_id_parse(s, out))
        return td_yerr(c, v, "%s: '%s' is not a device tandem has; expected cpu, cuda or cuda:N", what, s);
    return TD_OK;
}

static td_status td_kt_match_key(td_yctx *c, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *vud)
{
    td_kt_ud *ud = vud;
    const char *s = NULL;
    if (strcmp(key, "name") == 0) {
        TD_TRY(td_yscalar(c, v, "name", &s));
        ud->rule->name = td_strdup(s);
        if (!ud->rule->name) return td_fail(TD_E_NOMEM, "out of memory");
        ud->rule->name_loc = td_yloc(c, v);
        return td_rules_compile(c->r, ud->rule, td_yquoted(v) ? 1 : 0);
    }
    if (strcmp(key, "class") == 0) {
        TD_TRY(td_yscalar(c, v, "class", &s));
        if (!td_kt_kind_from_class(s, &ud->kt->match_kind))
            return td_yerr(c, v,
                           "unknown class '%s' in match; tandem knows torch.nn.Linear, torch.nn.Embedding, "
                           "torch.nn.ModuleList and the DeepSeek-V2/V3 classes (DeepseekV3Attention, DeepseekV3MoE, "
                           "DeepseekV3MLP, MoEGate, DeepseekV3RMSNorm, the rotary embeddings, DeepseekV3DecoderLayer, "
                           "DeepseekV3Model)",
                           s);
        ud->kt->match_class_loc = td_yloc(c, v);
        return TD_OK;
    }
    return td_yerr(c, k, "unknown key '%s' in match (KTransformers rules match by name and class)", key);
}

static td_status td_kt_kwargs_key(td_yctx *c, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *vud)
{
    (void)k;
    td_kt_ud *ud = vud;
    td_device_id ignored;
    if (strcmp(key, "generate_device") == 0 || strcmp(key, "device") == 0) {
        TD_TRY(td_kt_device(c, v, key, &ud->kt->device));
        ud->kt->has_device = true;
        ud->kt->device_loc = td_yloc(c, v);
    } else if (strcmp(key, "prefill_device") == 0 || strcmp(key, "out_device") == 0) {
        TD_TRY(td_kt_device(c, v, key, &ignored)); /* checked; tandem plans decode placement only */
    } else if (strcmp(key, "generate_op") == 0) {
        TD_TRY(td_yscalar(c, v, key, &ud->gen_op));
        ud->gen_op_node = v;
    } else if (strcmp(key, "backend") == 0) {
        TD_TRY(td_yscalar(c, v, key, &ud->backend));
        ud->backend_node = v;
    }
    /* other kwargs (prefill_op, absorb_for_prefill, transfer_map, ...) tune KTransformers' operators */
    return TD_OK;
}

static td_status td_kt_replace_key(td_yctx *c, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *vud)
{
    td_kt_ud *ud = vud;
    if (strcmp(key, "class") == 0) {
        const char *s = NULL;
        TD_TRY(td_yscalar(c, v, "class", &s));
        if (!td_kt_op_from_class(s, &ud->kt->op))
            return td_yerr(c, v,
                           "unknown class '%s' in replace; tandem maps KTransformers' DeepSeek operators (default, "
                           "KTransformersLinear, KTransformersExperts, KDeepseekV2MoE/KDeepseekV3MoE, KMoEGate, "
                           "KDeepseekV2Attention/KDeepseekV3Attention, KDeepseekV2Model, RMSNorm, kDeepseekV3MLP, "
                           "the RoPE classes)",
                           s);
        snprintf(ud->kt->op_class, sizeof ud->kt->op_class, "%s", s);
        ud->kt->op_loc = td_yloc(c, v);
        return TD_OK;
    }
    if (strcmp(key, "kwargs") == 0) {
        if (td_yis_null(v)) return TD_OK;
        return td_ymap(c, v, "kwargs", td_kt_kwargs_key, ud);
    }
    if (strcmp(key, "device") == 0) { /* older files put the device here */
        TD_TRY(td_kt_device(c, v, key, &ud->kt->device));
        ud->kt->has_device = true;
        ud->kt->device_loc = td_yloc(c, v);
        return TD_OK;
    }
    return td_yerr(c, k, "unknown key '%s' in replace (expected class, kwargs or device)", key);
}

static td_status td_kt_rule_key(td_yctx *c, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *vud)
{
    td_kt_ud *ud = vud;
    if (strcmp(key, "match") == 0) return td_ymap(c, v, "match", td_kt_match_key, ud);
    if (strcmp(key, "replace") == 0) {
        ud->has_replace = true;
        return td_ymap(c, v, "replace", td_kt_replace_key, ud);
    }
    if (strcmp(key, "recursive") == 0) {
        const char *s = NULL;
        TD_TRY(td_yscalar(c, v, "recursive", &s));
        if (strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0) ud->kt->recursive = true;
        else if (strcasecmp(s, "false") == 0 || strcasecmp(s, "no") == 0) ud->kt->recursive = false;
        else return td_yerr(c, v, "recursive: '%s' is not a boolean; expected True or False", s);
        return TD_OK;
    }
    if (strcmp(key, "place") == 0)
        return td_yerr(c, k,
                       "'place' is tandem syntax, but this file's first rule uses KTransformers' replace:; a file holds "
                       "one kind of rules");
    return td_yerr(c, k, "unknown key '%s' in a KTransformers rule (expected match, replace or recursive)", key);
}

/* Turns the rule's operator, device, generate_op and backend into a placement, refusing what cannot run. */
static td_status td_kt_finish(td_yctx *c, const yaml_node_t *n, td_kt_ud *ud)
{
    td_rule *rule = ud->rule;
    td_kt_rule *kt = ud->kt;
    if (!rule->name && kt->match_kind == TD_KT_ANY)
        return td_yerr(c, n, "this rule's match has neither name nor class; KTransformers needs at least one");
    if (!ud->has_replace) return td_yerr(c, n, "this rule has no replace:; expected replace: {class: ..., kwargs: ...}");
    rule->set = TD_PLACE_DEVICE | TD_PLACE_KERNEL | TD_PLACE_WEIGHTS;
    rule->place.device = kt->has_device ? kt->device : (td_device_id){TD_DEVICE_CUDA, 0};
    rule->field_loc[TD_FIELD_DEVICE] = kt->has_device ? kt->device_loc : rule->loc;
    rule->place.kernel = TD_KERNELS_AUTO;
    rule->place.weights = TD_WEIGHTS_KEEP;
    rule->place.convert_to = TD_TYPE_COUNT;
    bool on_cpu = rule->place.device.kind == TD_DEVICE_CPU;
    char dev[24];
    td_device_id_str(rule->place.device, dev, sizeof dev);
    if (ud->gen_op) {
        bool cpu_only, gpu_only;
        if (!td_kt_generate_op_ok(ud->gen_op, kt->op, &cpu_only, &gpu_only))
            return td_yerr(c, ud->gen_op_node,
                           "generate_op '%s' is not a %s operator tandem knows (linear: KLinearMarlin, VLinearMarlin, "
                           "KLinearTorch, KLinearFP8, KLinearCPUInfer; experts: KExpertsCPU, KExpertsTorch, "
                           "KExpertsMarlin)",
                           ud->gen_op, kt->op == TD_KT_OP_EXPERTS ? "experts" : "linear");
        if ((cpu_only && !on_cpu) || (gpu_only && on_cpu))
            return td_yerr(c, ud->gen_op_node, "generate_op '%s' runs on the %s, but generate_device is %s",
                           ud->gen_op, cpu_only ? "CPU" : "GPU", dev);
    }
    if (ud->backend) {
        bool repack;
        if (!td_kt_backend_kernel(ud->backend, &rule->place.kernel, &repack))
            return td_yerr(c, ud->backend_node,
                           "backend '%s' is unknown; expected llamafile, AMXInt4, AMXInt8 or AMXBF16", ud->backend);
        if (!on_cpu && rule->place.kernel != TD_KERNELS_AUTO)
            return td_yerr(c, ud->backend_node, "backend '%s' is a CPU backend, but generate_device is %s",
                           ud->backend, dev);
        if (repack) rule->place.weights = TD_WEIGHTS_REPACK;
    }
    return TD_OK;
}

static td_status td_kt_rule_parse(td_yctx *c, const yaml_node_t *n, td_rule *rule)
{
    rule->kt = td_calloc(1, sizeof *rule->kt);
    if (!rule->kt) return td_fail(TD_E_NOMEM, "out of memory");
    rule->kt->recursive = true;
    snprintf(rule->kt->op_class, sizeof rule->kt->op_class, "default");
    td_kt_ud ud = {.rule = rule, .kt = rule->kt};
    TD_TRY(td_ymap(c, n, "a rule", td_kt_rule_key, &ud));
    return td_kt_finish(c, n, &ud);
}

/* ------------------------------------------------------------------ the file */

static td_status td_rules_from_doc(td_yctx *c, const yaml_node_t *root)
{
    if (!root || td_yis_null(root)) {
        c->r->format = TD_RULES_TANDEM; /* an empty file: defaults everywhere */
        return TD_OK;
    }
    if (root->type != YAML_SEQUENCE_NODE)
        return td_yerr(c, root,
                       "a rules file is a list of rules, found %s; expected lines such as\n"
                       "  - match: {name: '\\.mlp\\.experts$'}\n    place: {device: cpu}",
                       td_ynode_kind(root));
    for (yaml_node_item_t *it = root->data.sequence.items.start; it < root->data.sequence.items.top; it++) {
        const yaml_node_t *n = yaml_document_get_node(c->doc, *it);
        if (!n) return td_yerr(c, root, "a rule is missing");
        if (n->type != YAML_MAPPING_NODE)
            return td_yerr(c, n, "a rule must be a mapping with match and place, found %s", td_ynode_kind(n));
        if (c->r->format == TD_RULES_NONE)
            c->r->format = td_ykey_is(n, c->doc, "replace") ? TD_RULES_KTRANSFORMERS : TD_RULES_TANDEM;
        td_rule *rule = td_rules_insert(c->r, c->r->n);
        if (!rule) return td_fail(TD_E_NOMEM, "out of memory");
        rule->origin = TD_RULE_FILE;
        rule->loc = td_yloc(c, n);
        TD_TRY(c->r->format == TD_RULES_KTRANSFORMERS ? td_kt_rule_parse(c, n, rule) : td_tan_rule_parse(c, n, rule));
    }
    if (c->r->format == TD_RULES_NONE) c->r->format = TD_RULES_TANDEM;
    return TD_OK;
}

static td_status td_yaml_syntax_error(const yaml_parser_t *p, const char *file)
{
    if (p->error == YAML_MEMORY_ERROR) return td_fail(TD_E_NOMEM, "out of memory");
    const yaml_mark_t *m = &p->problem_mark;
    return td_fail(TD_E_FORMAT, "%s:%d:%d: not valid YAML: %s%s%s", file, (int)m->line + 1, (int)m->column + 1,
                   p->problem ? p->problem : "syntax error", p->context ? " " : "", p->context ? p->context : "");
}

td_status td_rules_parse_yaml(td_rules *r, const char *text, size_t len, const char *name)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return td_fail(TD_E_NOMEM, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    td_status st;
    if (!yaml_parser_load(&parser, &doc)) {
        st = td_yaml_syntax_error(&parser, name);
        yaml_parser_delete(&parser);
        return st;
    }
    td_yctx c = {r, &doc, name};
    st = td_rules_from_doc(&c, yaml_document_get_root_node(&doc));
    if (st == TD_OK) {
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            st = td_yaml_syntax_error(&parser, name);
        } else {
            const yaml_node_t *root = yaml_document_get_root_node(&next);
            if (root) {
                td_yctx c2 = {r, &next, name};
                st = td_yerr(&c2, root, "a second YAML document; a rules file holds one list of rules");
            }
            yaml_document_delete(&next);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return st;
}
