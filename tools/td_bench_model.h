/* What the whole-model benchmarks (bench decode, prefill, mtp) share: their common options, the model
 * (a file, or a synthetic one built in memory with --synth), the plan that predicts its memory, the
 * engine, a session and the timing interposer; the bytes one decode step reads; the resident set; and
 * the extrapolation of measured dense and MoE layer times to the whole model. */
#ifndef TD_BENCH_MODEL_H
#define TD_BENCH_MODEL_H

#include "td_bench_prof.h"
#include "td_cli.h"
#include "td_engine.h"
#include "td_plan.h"
#include "td_roofline.h"
#include "td_synth.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct td_bm_opts {
    const char *model_path;   /* --model */
    td_synth_params synth;    /* --synth CONFIG (synth.config set), --layers, --type, --seed, --keep-mtp */
    const char *rules;        /* --rules (default: the cpu-only preset) */
    int64_t ctx;              /* --ctx: positions the session holds (default 4096) */
    int threads;
    td_kernels kernels;
    td_kv_type kv_type;
    td_moe_async moe_async;
    int extrapolate_layers;   /* 0: none */
    uint64_t membw_size;      /* bytes of the bandwidth probe (0: td_bm_membw_bytes) */
    bool json;
} td_bm_opts;

void td_bm_opts_init(td_bm_opts *o);
/* The options every model benchmark takes, for its --help. */
extern const char td_bm_options_help[];
/* Consumes one common option at a's current position: 1 when it did, 0 when it is not one of them, -1 on a
 * usage error (already printed). */
int td_bm_parse(td_args *a, td_bm_opts *o);
/* After parsing: exactly one of --model and --synth, and the rest consistent; prints and returns false. */
bool td_bm_check(const td_bm_opts *o, const char *cmd);

typedef struct td_bm {
    td_bm_opts o;
    char name[320];      /* the model as reports name it */
    td_model *model;
    td_rules *rules;
    td_plan *plan;
    td_engine *engine;
    td_session *s;
    td_prof prof;
    double build_s;      /* building (synth) or opening the model */
} td_bm;

td_status td_bm_open(const td_bm_opts *o, td_bm *b);
/* Opens the engine and session again with another MoE submission mode; the model stays. */
td_status td_bm_reopen(td_bm *b, td_moe_async mode);
void td_bm_close(td_bm *b);

/* Read bandwidth in this process. The buffer: --membw-size, else max(8 x last-level cache, 1 GiB) capped at
 * 2 GiB, so that the probe does not push the model's own pages out of memory. */
td_status td_bm_membw(const td_bm *b, td_membw_result *out);

/* Touches every page of the model's weights, so that timing starts with them resident. Returns seconds. */
double td_bm_prefault(const td_bm *b);

/* Resident memory of this process (/proc/self/status), bytes. */
typedef struct td_bm_rss {
    uint64_t rss, anon, file, shmem;
} td_bm_rss;
void td_bm_rss_read(td_bm_rss *r);
/* The plan's prediction for the CPU: weights + KV cache at the session's context. */
uint64_t td_bm_predicted_bytes(const td_bm *b);
/* Prints and adds to j (under `key`) one resident-set reading against the prediction; within
 * max(5%, 256 MiB) is "ok". */
void td_bm_rss_report(const td_bm *b, const char *when, const td_bm_rss *r, cJSON *j, const char *key);

/* Weight bytes one step over n_rows tokens reads in main layer l, with `experts` distinct routed experts
 * (MoE layers); norms and the router included. */
uint64_t td_bm_layer_weight_bytes(const td_model *m, const td_layer_weights *l, double experts);
/* Bytes of one routed expert (gate, up, down) of a MoE layer. */
uint64_t td_bm_expert_bytes(const td_layer_weights *l);
/* Distinct routed experts per MoE call over the main layers, as a profiler counted them. */
double td_bm_distinct_per_call(const td_bm *b, const td_prof *p);
/* Latent cache bytes one layer reads per cached position. */
uint64_t td_bm_kv_bytes_per_pos(const td_bm *b);

/* The whole model's seconds per call (of `calls` profiled, each taking wall_per_call) for n_layers layers:
 * everything outside the decoder layers as measured, plus first_k_dense dense layers and the rest MoE at
 * the profiler's per-layer means. False when a kind of layer needed is not in the model. */
bool td_bm_extrapolate(const td_bm *b, const td_prof *p, int n_layers, double calls, double wall_per_call,
                       double *seconds);
/* Bytes per step of n_layers layers (the model's own count for 0) the same way: weights per dense and MoE
 * layer (the distinct experts per MoE call p counted), the KV at `mean_pos` cached positions
 * per layer, the embedding row and the head. */
uint64_t td_bm_extrapolate_bytes(const td_bm *b, const td_prof *p, int n_layers, double mean_pos);

/* The per-layer time split (ms per call, by module kind, from p's books) of dense and MoE layers and the
 * outside part, printed and added to j as "layer_ms". */
void td_bm_split_report(const td_bm *b, const td_prof *p, double calls, cJSON *j);

/* Common fields of the JSON line: the model, kernels, threads, KV type, context. */
void td_bm_json_common(const td_bm *b, cJSON *j, const char *bench);

#endif
