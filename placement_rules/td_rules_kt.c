/* KTransformers rule files, taken as they are. Their semantics, from KTransformers' documentation:
 * rules are tried in order against every module of the PyTorch model (name by regex search, class by type);
 * the first match decides; `recursive: False` keeps a rule from reaching a module's children; modules no
 * rule matches are placed on cuda:0. Their modules sit one level deeper than tandem's (each projection is
 * a torch.nn.Linear), so a tandem module is resolved by walking its KTransformers ancestors, the module
 * itself, then the projections inside it. Which operator ran it (Marlin, llamafile, AMX) becomes a kernel. */
#include "td_rules_impl.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct td_kt_name {
    const char *name;
    int value;
} td_kt_name;

static const char *td_kt_last(const char *cls)
{
    const char *dot = strrchr(cls, '.');
    return dot ? dot + 1 : cls;
}

static bool td_kt_lookup(const td_kt_name *t, size_t n, const char *cls, int *out)
{
    const char *last = td_kt_last(cls);
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, last) == 0) {
            *out = t[i].value;
            return true;
        }
    return false;
}

bool td_kt_kind_from_class(const char *cls, td_kt_kind *out)
{
    static const td_kt_name t[] = {
        {"Linear", TD_KT_LINEAR},
        {"Embedding", TD_KT_EMBEDDING},
        {"ModuleList", TD_KT_MODULE_LIST},
        {"DeepseekV2Attention", TD_KT_ATTENTION},
        {"DeepseekV3Attention", TD_KT_ATTENTION},
        {"DeepseekV2FlashAttention2", TD_KT_ATTENTION},
        {"DeepseekV3FlashAttention2", TD_KT_ATTENTION},
        {"DeepseekV2MLP", TD_KT_MLP},
        {"DeepseekV3MLP", TD_KT_MLP},
        {"DeepseekV2MoE", TD_KT_MOE},
        {"DeepseekV3MoE", TD_KT_MOE},
        {"MoEGate", TD_KT_GATE},
        {"DeepseekV3TopkRouter", TD_KT_GATE},
        {"DeepseekV2RMSNorm", TD_KT_NORM},
        {"DeepseekV3RMSNorm", TD_KT_NORM},
        {"DeepseekV2RotaryEmbedding", TD_KT_ROPE},
        {"DeepseekV2YarnRotaryEmbedding", TD_KT_ROPE},
        {"DeepseekV2LinearScalingRotaryEmbedding", TD_KT_ROPE},
        {"DeepseekV2DynamicNTKScalingRotaryEmbedding", TD_KT_ROPE},
        {"DeepseekV3RotaryEmbedding", TD_KT_ROPE},
        {"DeepseekV3YarnRotaryEmbedding", TD_KT_ROPE},
        {"DeepseekV3LinearScalingRotaryEmbedding", TD_KT_ROPE},
        {"DeepseekV3DynamicNTKScalingRotaryEmbedding", TD_KT_ROPE},
        {"DeepseekV2DecoderLayer", TD_KT_LAYER},
        {"DeepseekV3DecoderLayer", TD_KT_LAYER},
        {"DeepseekV2Model", TD_KT_MODEL},
        {"DeepseekV3Model", TD_KT_MODEL},
        {"DeepseekV2ForCausalLM", TD_KT_ROOT},
        {"DeepseekV3ForCausalLM", TD_KT_ROOT},
    };
    int v;
    if (!td_kt_lookup(t, sizeof t / sizeof *t, cls, &v)) return false;
    *out = (td_kt_kind)v;
    return true;
}

bool td_kt_op_from_class(const char *cls, td_kt_op *out)
{
    static const td_kt_name t[] = {
        {"default", TD_KT_OP_DEFAULT},
        {"KTransformersLinear", TD_KT_OP_LINEAR},
        {"KTransformersExperts", TD_KT_OP_EXPERTS},
        {"KTransformersExpertsV2", TD_KT_OP_EXPERTS},
        {"KDeepseekV2MoE", TD_KT_OP_MOE},
        {"KDeepseekV3MoE", TD_KT_OP_MOE},
        {"KDeepseekV3MoEV2", TD_KT_OP_MOE},
        {"KMoEGate", TD_KT_OP_GATE},
        {"KMoEGateDeepSeekV3", TD_KT_OP_GATE},
        {"KDeepseekV2Attention", TD_KT_OP_ATTENTION},
        {"KDeepseekV3Attention", TD_KT_OP_ATTENTION},
        {"flashinfer_attn", TD_KT_OP_ATTENTION},
        {"KDeepseekV2Model", TD_KT_OP_MODEL},
        {"KDeepseekV3Model", TD_KT_OP_MODEL},
        {"YarnRotaryEmbedding", TD_KT_OP_ROPE},
        {"YarnRotaryEmbeddingV3", TD_KT_OP_ROPE},
        {"RotaryEmbedding", TD_KT_OP_ROPE},
        {"RotaryEmbeddingV3", TD_KT_OP_ROPE},
        {"DeepSeekV3YarnRotaryEmbedding", TD_KT_OP_ROPE},
        {"RMSNorm", TD_KT_OP_NORM},
        {"KDeepseekRMSNorm", TD_KT_OP_NORM},
        {"kDeepseekV3MLP", TD_KT_OP_MLP},
        {"KDeepseekV3MLP", TD_KT_OP_MLP},
    };
    int v;
    if (!td_kt_lookup(t, sizeof t / sizeof *t, cls, &v)) return false;
    *out = (td_kt_op)v;
    return true;
}

bool td_kt_generate_op_ok(const char *gen_op, td_kt_op op, bool *cpu_only, bool *gpu_only)
{
    static const struct {
        const char *name;
        td_kt_op op;
        bool cpu_only, gpu_only;
    } t[] = {
        {"KLinearMarlin", TD_KT_OP_LINEAR, false, true},  {"VLinearMarlin", TD_KT_OP_LINEAR, false, true},
        {"KLinearFP8", TD_KT_OP_LINEAR, false, true},     {"KLinearTorch", TD_KT_OP_LINEAR, false, false},
        {"KLinearCPUInfer", TD_KT_OP_LINEAR, true, false}, {"KExpertsCPU", TD_KT_OP_EXPERTS, true, false},
        {"KExpertsTorch", TD_KT_OP_EXPERTS, false, false}, {"KExpertsMarlin", TD_KT_OP_EXPERTS, false, true},
        {"MLPCPUExperts", TD_KT_OP_EXPERTS, true, false},  {"MLPCUDAExperts", TD_KT_OP_EXPERTS, false, true},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        if (strcmp(t[i].name, gen_op) != 0) continue;
        if ((op == TD_KT_OP_LINEAR || op == TD_KT_OP_EXPERTS) && t[i].op != op) return false;
        *cpu_only = t[i].cpu_only;
        *gpu_only = t[i].gpu_only;
        return true;
    }
    return false;
}

bool td_kt_backend_kernel(const char *backend, td_kernels *kernel, bool *repack)
{
    if (strcasecmp(backend, "llamafile") == 0) {
        *kernel = TD_KERNELS_AUTO;
        *repack = false;
        return true;
    }
    if (strcasecmp(backend, "AMXInt4") == 0 || strcasecmp(backend, "AMXInt8") == 0 ||
        strcasecmp(backend, "AMXBF16") == 0) {
        *kernel = TD_KERNELS_AMX;
        *repack = true; /* AMX works on tiles: the weights are rearranged at load */
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------ resolution */

static bool td_kt_op_fits(td_kt_op op, td_kt_kind kind)
{
    static const td_kt_kind fits[TD_KT_OP_COUNT] = {
        [TD_KT_OP_DEFAULT] = TD_KT_ANY,           [TD_KT_OP_LINEAR] = TD_KT_LINEAR,
        [TD_KT_OP_EXPERTS] = TD_KT_MODULE_LIST,   [TD_KT_OP_MOE] = TD_KT_MOE,
        [TD_KT_OP_GATE] = TD_KT_GATE,             [TD_KT_OP_ATTENTION] = TD_KT_ATTENTION,
        [TD_KT_OP_MODEL] = TD_KT_MODEL,           [TD_KT_OP_ROPE] = TD_KT_ROPE,
        [TD_KT_OP_NORM] = TD_KT_NORM,             [TD_KT_OP_MLP] = TD_KT_MLP,
    };
    return fits[op] == TD_KT_ANY || fits[op] == kind;
}

static const char *td_kt_kind_name(td_kt_kind k)
{
    static const char *const names[TD_KT_KIND_COUNT] = {
        [TD_KT_ANY] = "module",          [TD_KT_LINEAR] = "torch.nn.Linear",
        [TD_KT_EMBEDDING] = "torch.nn.Embedding", [TD_KT_MODULE_LIST] = "torch.nn.ModuleList",
        [TD_KT_ATTENTION] = "DeepseekV3Attention", [TD_KT_MLP] = "DeepseekV3MLP",
        [TD_KT_MOE] = "DeepseekV3MoE",   [TD_KT_GATE] = "MoEGate",
        [TD_KT_NORM] = "DeepseekV3RMSNorm", [TD_KT_ROPE] = "rotary embedding",
        [TD_KT_LAYER] = "DeepseekV3DecoderLayer", [TD_KT_MODEL] = "DeepseekV3Model",
        [TD_KT_ROOT] = "DeepseekV3ForCausalLM",
    };
    return (k >= 0 && k < TD_KT_KIND_COUNT) ? names[k] : "?";
}

/* A node of KTransformers' module tree. */
typedef struct td_kt_node {
    char name[96];
    td_kt_kind kind;
} td_kt_node;

/* The first KTransformers rule matching a node (-1 if none); refuses an operator that cannot replace it. */
static td_status td_kt_first(const td_rules *r, const td_kt_node *n, int *out)
{
    *out = -1;
    for (int i = r->n_override + r->n_auto; i < r->n; i++) {
        const td_rule *rule = &r->rules[i];
        if (rule->kt->match_kind != TD_KT_ANY && rule->kt->match_kind != n->kind) continue;
        bool hit;
        TD_TRY(td_rules_search(r, rule, n->name, &hit));
        if (!hit) continue;
        if (!td_kt_op_fits(rule->kt->op, n->kind)) {
            char where[160];
            return td_fail(TD_E_FORMAT,
                           "%s: class %s cannot replace '%s' (a %s), which this rule's match also catches; narrow "
                           "match.name or add match.class",
                           td_src_loc_str(&rule->kt->op_loc, where, sizeof where), rule->kt->op_class, n->name,
                           td_kt_kind_name(n->kind));
        }
        *out = i;
        return TD_OK;
    }
    return TD_OK;
}

/* The KTransformers nodes of a tandem module: ancestors (outermost first), itself, then a projection in it. */
static int td_kt_nodes(const td_module *m, const td_hparams *hp, td_kt_node *nodes, int *self_at)
{
    int n = 0;
    nodes[n++] = (td_kt_node){"", TD_KT_ROOT};
    if (m->kind != TD_MODULE_HEAD) nodes[n++] = (td_kt_node){"model", TD_KT_MODEL};
    bool in_layer = m->layer >= 0 && m->kind != TD_MODULE_MTP;
    if (in_layer) {
        snprintf(nodes[n].name, sizeof nodes[n].name, "model.layers.%d", m->layer);
        nodes[n++].kind = TD_KT_LAYER;
    }
    if (m->kind == TD_MODULE_ROUTER || m->kind == TD_MODULE_EXPERTS || m->kind == TD_MODULE_SHARED_EXPERTS) {
        snprintf(nodes[n].name, sizeof nodes[n].name, "model.layers.%d.mlp", m->layer);
        nodes[n++].kind = td_hparams_layer_is_moe(hp, m->layer) ? TD_KT_MOE : TD_KT_MLP;
    }
    static const td_kt_kind self_kind[TD_MODULE_KIND_COUNT] = {
        [TD_MODULE_EMBED] = TD_KT_EMBEDDING,   [TD_MODULE_ATTN] = TD_KT_ATTENTION,
        [TD_MODULE_DENSE_MLP] = TD_KT_MLP,     [TD_MODULE_ROUTER] = TD_KT_GATE,
        [TD_MODULE_EXPERTS] = TD_KT_MODULE_LIST, [TD_MODULE_SHARED_EXPERTS] = TD_KT_MLP,
        [TD_MODULE_NORM] = TD_KT_NORM,         [TD_MODULE_HEAD] = TD_KT_LINEAR,
        [TD_MODULE_MTP] = TD_KT_LAYER,
    };
    *self_at = n;
    snprintf(nodes[n].name, sizeof nodes[n].name, "%s", m->name);
    nodes[n++].kind = self_kind[m->kind];
    static const char *const inner[TD_MODULE_KIND_COUNT] = {
        [TD_MODULE_ATTN] = "o_proj",       [TD_MODULE_DENSE_MLP] = "gate_proj",
        [TD_MODULE_EXPERTS] = "0.gate_proj", [TD_MODULE_SHARED_EXPERTS] = "gate_proj",
        [TD_MODULE_MTP] = "eh_proj",
    };
    if (inner[m->kind]) {
        snprintf(nodes[n].name, sizeof nodes[n].name, "%s.%s", m->name, inner[m->kind]);
        nodes[n++].kind = TD_KT_LINEAR;
    }
    return n;
}

td_status td_kt_resolve(const td_rules *r, const td_module *m, const td_hparams *hp, td_rule_match *out)
{
    td_kt_node nodes[8];
    int self_at;
    int n = td_kt_nodes(m, hp, nodes, &self_at);
    int self_rule = -1, inner_rule = -1;
    for (int i = 0; i < n; i++) {
        int hit;
        TD_TRY(td_kt_first(r, &nodes[i], &hit));
        if (hit < 0) continue;
        if (i > self_at) {
            inner_rule = hit;
            break;
        }
        if (i == self_at) self_rule = hit;
        /* a rule with recursive: False owns everything below the module it matched */
        if (!r->rules[hit].kt->recursive) {
            self_rule = hit;
            break;
        }
    }
    /* The weights live in the projections: their rule decides when it reaches them (in KTransformers
     * each torch.nn.Linear is placed by its own rule). */
    int hit = inner_rule >= 0 ? inner_rule : self_rule;
    if (hit >= 0) {
        out->rule = hit;
        td_rule_apply(&r->rules[hit], m->kind, out);
        return TD_OK;
    }
    /* KTransformers' own default for modules no rule matches */
    out->rule = -1;
    out->kt_default = true;
    td_placement_default(m->kind, &out->place);
    out->place.device = (td_device_id){TD_DEVICE_CUDA, 0};
    out->place.numa = TD_NUMA_NONE;
    out->set = TD_PLACE_DEVICE;
    return TD_OK;
}
