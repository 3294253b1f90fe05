/* td_rules: placement rules. An ordered list of rules; the first one that matches a module decides where
 * it runs. Rules come from, in the order they are tried:
 *   1. --override 'regex=device[,regex=device...]' (like llama.cpp's -ot),
 *   2. rules --auto chose,
 *   3. a rules file: tandem's own YAML (match/place) or a KTransformers file (match/replace), as is.
 * Modules no rule matches get td_placement_default().
 *
 * tandem rule file (YAML): a list of
 *   - match: {name: <PCRE2 regex over canonical module names>, layers: 3-60 | [3, 60] | 7}
 *     place: {device: cpu | cuda:N, kernel: auto|ref|avx2|avx512|amx,
 *             weights: keep | repack | <type>, numa: split | interleave | node:N}
 * Every key is optional: a rule without `match` matches every module; fields a rule leaves out take the
 * defaults of the module's kind. Regexes search (unanchored, like Python's re.search and llama.cpp's -ot);
 * anchor them with ^ and $. Errors name file:line:column and say what was expected. */
#ifndef TD_RULES_H
#define TD_RULES_H

#include "td_kernels.h"
#include "td_model.h"
#include "td_status.h"
#include "td_types.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum td_device_kind {
    TD_DEVICE_CPU = 0,
    TD_DEVICE_CUDA = 1,
    TD_DEVICE_KIND_COUNT
} td_device_kind;

typedef struct td_device_id {
    td_device_kind kind;
    int index; /* cuda:index; 0 for the cpu */
} td_device_id;

/* "cpu", "cuda" (= cuda:0), "cuda:N", and llama.cpp's buffer names "CPU", "CUDA0". */
bool td_device_id_parse(const char *s, td_device_id *out);
const char *td_device_id_str(td_device_id d, char *buf, size_t cap);
bool td_device_id_eq(td_device_id a, td_device_id b);

typedef enum td_numa_policy {
    TD_NUMA_NONE = 0,       /* not in host memory (a GPU module) */
    TD_NUMA_SPLIT = 1,      /* routed experts divided between the nodes, each expert on one node */
    TD_NUMA_INTERLEAVE = 2, /* pages spread round-robin over all nodes */
    TD_NUMA_NODE = 3,       /* everything on one node */
    TD_NUMA_POLICY_COUNT
} td_numa_policy;

typedef enum td_weights_mode {
    TD_WEIGHTS_KEEP = 0,    /* as stored in the file */
    TD_WEIGHTS_REPACK = 1,  /* same type, rearranged for the kernel */
    TD_WEIGHTS_CONVERT = 2, /* converted to another type at load */
    TD_WEIGHTS_MODE_COUNT
} td_weights_mode;

typedef struct td_placement {
    td_device_id device;
    td_kernels kernel;
    td_weights_mode weights;
    td_type convert_to; /* with TD_WEIGHTS_CONVERT */
    td_numa_policy numa;
    int numa_node;      /* with TD_NUMA_NODE */
} td_placement;

/* The documented defaults for a module no rule places: on the cpu, kernel auto, weights keep; routed
 * experts split over the NUMA nodes, everything else interleaved. */
void td_placement_default(td_module_kind kind, td_placement *out);
/* "cpu auto keep split" style one-liners for tables. */
const char *td_numa_policy_str(const td_placement *p, char *buf, size_t cap);
const char *td_weights_str(const td_placement *p, char *buf, size_t cap);

/* Where something was written. Files: 1-based line and column. Overrides: file is "--override #N", line 1,
 * column within that option's value. */
typedef struct td_src_loc {
    const char *file; /* NULL: not from a file (auto, defaults) */
    int line, col;
} td_src_loc;
/* "rules.yaml:12:5", or "--override #1, column 3". */
const char *td_src_loc_str(const td_src_loc *loc, char *buf, size_t cap);

typedef enum td_rule_origin {
    TD_RULE_FILE = 0,
    TD_RULE_OVERRIDE = 1,
    TD_RULE_AUTO = 2,
    TD_RULE_ORIGIN_COUNT
} td_rule_origin;

typedef enum td_rules_format {
    TD_RULES_NONE = 0,          /* no file loaded */
    TD_RULES_TANDEM = 1,
    TD_RULES_KTRANSFORMERS = 2,
    TD_RULES_FORMAT_COUNT
} td_rules_format;

enum {
    TD_PLACE_DEVICE = 1u << 0,
    TD_PLACE_KERNEL = 1u << 1,
    TD_PLACE_WEIGHTS = 1u << 2,
    TD_PLACE_NUMA = 1u << 3,
};
typedef enum td_place_field {
    TD_FIELD_DEVICE = 0,
    TD_FIELD_KERNEL = 1,
    TD_FIELD_WEIGHTS = 2,
    TD_FIELD_NUMA = 3,
    TD_FIELD_COUNT
} td_place_field;

struct td_kt_rule;

typedef struct td_rule {
    td_rule_origin origin;
    td_src_loc loc;             /* the rule itself (its '-' in a file) */
    char *name;                 /* regex source; NULL matches every name */
    td_src_loc name_loc;
    bool has_layers;
    int layer_lo, layer_hi;     /* inclusive */
    td_src_loc layers_loc;
    unsigned set;               /* TD_PLACE_* fields the rule gives */
    td_placement place;         /* the fields in `set` */
    td_src_loc field_loc[TD_FIELD_COUNT];
    void *re;                   /* compiled regex (pcre2_code) */
    struct td_kt_rule *kt;      /* KTransformers details; NULL for tandem rules */
} td_rule;

typedef struct td_rules td_rules;

td_status td_rules_create(td_rules **out);
void td_rules_free(td_rules *r);

/* Appends the rules of a file. One file per td_rules (tandem or KTransformers format, detected from the
 * first rule: `place:` or `replace:`). */
td_status td_rules_load_file(td_rules *r, const char *path);
/* The same from text; `name` is used in messages. */
td_status td_rules_load_text(td_rules *r, const char *text, size_t len, const char *name);
/* One --override value: 'regex=device[,regex=device...]'. Each pair becomes a rule tried before the file.
 * Commas inside (), [] or {} belong to the regex. The regex is matched against the canonical module name
 * and against the llama.cpp GGUF names of the module's tensors (so 'exps=CPU' works as it does there). */
td_status td_rules_add_override(td_rules *r, const char *spec);
/* A rule chosen by --auto: the named modules of layers lo..hi go to `device`. */
td_status td_rules_add_auto(td_rules *r, const char *name_regex, int lo, int hi, td_device_id device);
/* Drops the rules --auto added. */
void td_rules_clear_auto(td_rules *r);

/* A rules file by path, or a preset by name ("deepseek-v3-1gpu-24gb", with or without .yaml) looked up in
 * $TANDEM_RULES_DIR, then in presets_dir. Returns name itself when nothing matches (the loader then says
 * it is missing), else buf. */
const char *td_rules_resolve_path(const char *name, const char *presets_dir, char *buf, size_t cap);

td_rules_format td_rules_get_format(const td_rules *r);
/* The file the rules came from ("" if none). */
const char *td_rules_file(const td_rules *r);
/* Rules in the order they are tried (overrides, auto, then the file's). */
int td_rules_count(const td_rules *r);
const td_rule *td_rules_at(const td_rules *r, int i);

typedef struct td_rule_match {
    int rule;             /* index for td_rules_at(); -1: no rule matched */
    bool kt_default;      /* a KTransformers file matched nothing: its default device (cuda:0) */
    td_placement place;   /* the rule's fields over the kind's defaults */
    unsigned set;         /* fields the rule gave */
} td_rule_match;

/* Finds the placement of a module (name, kind and layer are used). `hp` tells MoE from dense layers for
 * KTransformers class matching. Errors: a regex that exceeds its match budget. */
td_status td_rules_match(const td_rules *r, const td_module *m, const td_hparams *hp, td_rule_match *out);
/* Whether rule i (of tandem's format or an override) matches the module by itself, earlier rules aside. */
td_status td_rules_rule_matches(const td_rules *r, int i, const td_module *m, const td_hparams *hp, bool *hit);
/* Where the placement came from: "rules.yaml:12:3", "--override #1", "--auto", "defaults". */
const char *td_rule_match_origin(const td_rules *r, const td_rule_match *mm, char *buf, size_t cap);

/* Writes a tandem rule (as a file would hold it) to f; used to print what --auto chose. */
void td_rule_write_yaml(const td_rule *rule, FILE *f);

/* The llama.cpp GGUF tensor names of a module's tensors, for override matching: calls fn for each. */
void td_module_gguf_names(const td_module *m, const td_hparams *hp, void (*fn)(const char *name, void *ctx),
                          void *ctx);

#endif
