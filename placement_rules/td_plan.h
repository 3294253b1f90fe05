/* td_plan: "will it fit, and how fast?" before anything loads. From the hyperparameters and the type of
 * every tensor (read from a model's headers, or assumed), the rules and the devices, the planner gives
 * every module a device, kernel, weight format and NUMA policy, adds up the bytes per device and per
 * NUMA node (weights, KV cache at the context, runtime reserve), refuses plans that don't fit (saying by
 * how much and which rule to change), and estimates decode speed from the bytes each device streams per
 * token and its bandwidth (a roofline: the sum over devices of bytes / bandwidth, the NUMA nodes of the
 * host working in parallel).
 *
 * The module list is the one td_model builds (same names, same bytes): a test keeps the two together. */
#ifndef TD_PLAN_H
#define TD_PLAN_H

#include "td_devices.h"
#include "td_hparams.h"
#include "td_model.h"
#include "td_rules.h"
#include "td_tensor.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* --assume-type: the types a model would have, when planning without its file.
 *   q4_k    every matrix q4_K (embedding and head included); router, norms and biases f32
 *   q4_k_m  as q4_k, with q6_K for the head and for the down projections (and kv_b) of the layers
 *           llama.cpp's Q4_K_M recipe upgrades (the first and last eighth, and every third between);
 *           an approximation: the file's headers give the exact bytes
 *   q8_0    every matrix q8_0; router, norms and biases f32
 *   bf16    everything bf16 except the router bias (f32), as Hugging Face checkpoints
 *   fp8     the official DeepSeek-V3 layout: projections f8_e4m3 with f32 128x128 block scales;
 *           embedding, head and router bf16; norms bf16; router bias f32
 * A matrix whose rows are not whole blocks of the type falls back to the next type that fits
 * (q4_K/q6_K -> q5_0 -> q8_0 -> f16), as llama.cpp's quantizer does. */
typedef enum td_assume_type {
    TD_ASSUME_NONE = 0,
    TD_ASSUME_Q4_K = 1,
    TD_ASSUME_Q4_K_M = 2,
    TD_ASSUME_Q8_0 = 3,
    TD_ASSUME_BF16 = 4,
    TD_ASSUME_FP8 = 5,
    TD_ASSUME_COUNT
} td_assume_type;

bool td_assume_type_from_name(const char *name, td_assume_type *out);
const char *td_assume_type_name(td_assume_type t);

typedef struct td_plan_params {
    const td_hparams *hp;
    const td_tensor_dir *dir;   /* tensor types and presence from a model's headers (NULL: assume_type) */
    td_assume_type assume_type; /* overrides the file's types when set */
    bool no_mtp;                /* plan without the MTP block even if the config has one */
    const td_rules *rules;      /* NULL: the defaults for every module */
    const td_devices *devices;
    int64_t ctx;                /* tokens the KV cache holds (0: 4096) */
    int kv_elem_bytes;          /* bytes per cached value (0: 2, bf16) */
} td_plan_params;

typedef struct td_plan_module {
    td_module m;                /* canonical name, kind, layer, weight bytes and elements as stored */
    uint64_t bytes;             /* on its device, after any conversion the rule asks for */
    td_type type;               /* the type holding most of its bytes (projections first) */
    td_type type2;              /* a second type among its projections (TD_TYPE_COUNT if none) */
    td_placement place;
    td_rule_match match;        /* which rule placed it */
    char origin[96];            /* "rules.yaml:12", "--override #1", "--auto", "defaults" */
    uint64_t node_bytes[TD_MAX_NUMA]; /* on the cpu: bytes per NUMA node */
    uint64_t stream_bytes;      /* weight bytes read per decoded token */
} td_plan_module;

typedef struct td_plan_device {
    td_device_id id;
    char name[16];              /* "cpu", "cuda:0" */
    uint64_t weight_bytes;
    uint64_t kv_bytes;          /* KV cache at ctx of the layers whose attention runs here */
    uint64_t reserve_bytes;
    uint64_t bytes;             /* weight + kv + reserve */
    uint64_t budget;
    uint64_t stream_bytes;      /* weights and KV read per decoded token */
    double bw_gbps;
    double seconds_per_token;
    int n_numa;                 /* cpu only */
    uint64_t numa_bytes[TD_MAX_NUMA];
    uint64_t numa_budget[TD_MAX_NUMA];
    uint64_t numa_stream[TD_MAX_NUMA];
} td_plan_device;

/* A budget the plan exceeds. */
typedef struct td_plan_overflow {
    int device;                 /* index into devices */
    int numa_node;              /* -1: the device as a whole */
    uint64_t over_bytes;
    char advice[640];           /* which rule to change, and how */
} td_plan_overflow;

typedef struct td_plan {
    td_plan_module *modules;
    int n_modules;
    td_plan_device devices[1 + TD_MAX_GPUS]; /* cpu, then cuda:0.. */
    int n_devices;
    td_hparams hp;
    int64_t ctx;
    int kv_elem_bytes;
    int64_t kv_bytes_per_token;     /* main layers (70,272 for DeepSeek-V3 in bf16) */
    int64_t mtp_kv_bytes_per_token; /* the MTP block's own cache (0 without one) */
    uint64_t kv_bytes;              /* all caches at ctx */
    uint64_t weight_bytes;
    double decode_tok_s;            /* roofline estimate for plain decoding (MTP not counted) */
    bool has_mtp;
    char types_from[96];            /* "file headers", "--assume-type q4_k" */
    bool fits;
    td_plan_overflow overflows[1 + TD_MAX_GPUS + TD_MAX_NUMA];
    int n_overflows;
    struct td_plan_extra *extra; /* planner internals */
} td_plan;

/* Builds the plan. Returns TD_OK for a plan that doesn't fit (fits = false, overflows say why); errors
 * are for rules that cannot apply (a nonexistent device or NUMA node, numa: split on a module without
 * experts, a conversion the rows don't allow), each naming the rule's file:line:column. */
td_status td_plan_build(const td_plan_params *p, td_plan **out);
void td_plan_free(td_plan *plan);

/* TD_E_NOMEM with every overflow's message when the plan doesn't fit; TD_OK otherwise. */
td_status td_plan_require_fit(const td_plan *plan);

/* --auto: fills each GPU's leftover memory with whole MoE layers' routed experts, best first (most decode
 * time saved per byte; ties go to the layers whose attention is on that GPU, then the lower layer).
 * Adds the chosen rules to `rules` (tried after overrides, before the file), then rebuilds the plan. */
td_status td_plan_auto(const td_plan_params *p, td_rules *rules, td_plan **out);

/* A plan for a model already opened: hparams and tensor types from it. */
td_status td_plan_for_model(const td_model *m, const td_rules *rules, const td_devices *devices, int64_t ctx,
                            int kv_elem_bytes, td_plan **out);

/* What the engine can run of a plan today: the same model's modules; weights kept or repacked, not
 * converted; one kernel family for all modules, which becomes the engine's kernels when it asked for auto.
 * Devices are checked by the engine (a module that no backend of the build can run is refused there).
 * Repack is a layout hint the engine does not act on yet. */
td_status td_plan_engine_check(const td_plan *plan, const td_model *m, td_kernels *kernels);

/* The index of a module by name, -1 if absent. */
int td_plan_find(const td_plan *plan, const char *name);

/* A readable table: modules (grouped where they repeat), devices, NUMA nodes, KV cache, speed, verdict. */
void td_plan_print(const td_plan *plan, const td_rules *rules, FILE *f, bool verbose);
/* Warns on f about rules that do nothing: a rules file without rules, and every rule of a tandem file or of
 * --override that places no module (none matches it, or earlier rules take those it matches; KTransformers
 * rules are left alone, since such files also name wrappers tandem has no module for). Each line
 * starts with prefix ("tandem rules: ") and names the rule (file:line:column and its regex). Returns how
 * many. */
int td_plan_print_idle_rules(const td_plan *plan, const td_rules *rules, const char *prefix, FILE *f);
/* The plan as JSON text (caller frees with td_free): fits, kv_bytes_per_token, decode_tok_s_estimate,
 * devices {name: {bytes, budget, ..., numa: [{node, bytes}]}}, modules [{name, device, bytes, ...}]. */
char *td_plan_json(const td_plan *plan, const td_rules *rules);

#endif
