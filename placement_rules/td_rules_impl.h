/* Internals shared by the rules files: the rules container, KTransformers rule details, regex helpers. */
#ifndef TD_RULES_IMPL_H
#define TD_RULES_IMPL_H

#include "td_rules.h"

/* What a KTransformers module class is, as far as placement is concerned. */
typedef enum td_kt_kind {
    TD_KT_ANY = 0,         /* the rule gives no class */
    TD_KT_LINEAR = 1,      /* torch.nn.Linear: every projection, lm_head, eh_proj */
    TD_KT_EMBEDDING = 2,   /* torch.nn.Embedding */
    TD_KT_MODULE_LIST = 3, /* torch.nn.ModuleList: mlp.experts */
    TD_KT_ATTENTION = 4,   /* DeepseekV3Attention */
    TD_KT_MLP = 5,         /* DeepseekV3MLP: dense layers and shared experts */
    TD_KT_MOE = 6,         /* DeepseekV3MoE: the MoE block (gate, experts, shared experts) */
    TD_KT_GATE = 7,        /* MoEGate: the router */
    TD_KT_NORM = 8,        /* DeepseekV3RMSNorm */
    TD_KT_ROPE = 9,        /* rotary embeddings (no weights) */
    TD_KT_LAYER = 10,      /* DeepseekV3DecoderLayer */
    TD_KT_MODEL = 11,      /* DeepseekV3Model ("model") */
    TD_KT_ROOT = 12,       /* DeepseekV3ForCausalLM ("") */
    TD_KT_KIND_COUNT
} td_kt_kind;

/* The operator a KTransformers rule injects, by what it can replace. */
typedef enum td_kt_op {
    TD_KT_OP_DEFAULT = 0,   /* "default": keeps the module, sets its device */
    TD_KT_OP_LINEAR = 1,
    TD_KT_OP_EXPERTS = 2,
    TD_KT_OP_MOE = 3,
    TD_KT_OP_GATE = 4,
    TD_KT_OP_ATTENTION = 5,
    TD_KT_OP_MODEL = 6,
    TD_KT_OP_ROPE = 7,
    TD_KT_OP_NORM = 8,
    TD_KT_OP_MLP = 9,
    TD_KT_OP_COUNT
} td_kt_op;

typedef struct td_kt_rule {
    td_kt_kind match_kind;      /* TD_KT_ANY without match.class */
    td_src_loc match_class_loc;
    td_kt_op op;
    char op_class[96];          /* as written, for messages */
    td_src_loc op_loc;
    bool has_device;            /* generate_device given (else KTransformers' default, cuda) */
    td_device_id device;
    td_src_loc device_loc;
    bool recursive;
} td_kt_rule;

struct td_rules {
    td_rule *rules;
    int n, cap;
    int n_override, n_auto;     /* rules[0, n_override) overrides, then auto, then the file's */
    int n_override_opts;        /* --override options seen, for their labels */
    td_rules_format format;
    char *file;
    char **strings;             /* owned labels ("--override #1") */
    int n_strings, cap_strings;
    void *gctx;                 /* pcre2_general_context: allocations through td_alloc */
    void *cctx;                 /* pcre2_compile_context with a pattern length limit */
    void *mctx;                 /* pcre2_match_context with match limits */
};

/* Inserts a zeroed rule at index `at` and returns it (NULL when out of memory). */
td_rule *td_rules_insert(td_rules *r, int at);
/* Frees what a rule owns and zeroes it. */
void td_rule_release(td_rule *rule);
/* A module's placement when `rule` matched it: the rule's fields over the kind's defaults. */
void td_rule_apply(const td_rule *rule, td_module_kind kind, td_rule_match *out);
/* Keeps a copy of s alive as long as the rules; NULL when out of memory. */
const char *td_rules_keep_string(td_rules *r, const char *s);
/* Compiles rule->name; on a bad regex, an error at the regex's position (col_shift: characters between
 * the location's column and the pattern's first character). */
td_status td_rules_compile(td_rules *r, td_rule *rule, int col_shift);
/* Searches the rule's regex in subject. */
td_status td_rules_search(const td_rules *r, const td_rule *rule, const char *subject, bool *matched);

/* KTransformers: class names (the part after the last dot) to kinds and operators. */
bool td_kt_kind_from_class(const char *cls, td_kt_kind *out);
bool td_kt_op_from_class(const char *cls, td_kt_op *out);
/* Checks a generate_op/backend value; fills the kernel it implies. `op` is the rule's operator. */
bool td_kt_generate_op_ok(const char *gen_op, td_kt_op op, bool *cpu_only, bool *gpu_only);
bool td_kt_backend_kernel(const char *backend, td_kernels *kernel, bool *repack);
/* Resolves a module under a KTransformers file (after overrides and auto rules missed). */
td_status td_kt_resolve(const td_rules *r, const td_module *m, const td_hparams *hp, td_rule_match *out);

/* YAML loading (td_rules_yaml.c). */
td_status td_rules_parse_yaml(td_rules *r, const char *text, size_t len, const char *name);

#endif
