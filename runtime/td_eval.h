/* td_eval: the correctness contract. Runs a model on a reference file's prompt (one prefill), then
 * decodes the reference's greedy continuation through the KV cache with teacher forcing, and compares
 * logits, argmaxes and MTP logits with the reference.
 *
 * Two tiers judge the numbers (tools/cmd_eval.c): `exact` holds them to the float64 reference, and
 * `bf16` to what plain bf16 inference makes on the same fixture (td_bf16_yardstick, from the shared
 * bf16-reference.json). The bf16 tier needs to know which positions a near-tied router score sent to
 * other experts: td_eval_run finds them by running the exact path (reference kernels, f32 KV cache)
 * beside the session under test and comparing the experts each MoE layer chose at every position. */
#ifndef TD_EVAL_H
#define TD_EVAL_H

#include "td_engine.h"

#include <stddef.h>

typedef struct td_eval_params {
    td_attn_path attn;         /* attention form for the prefill (decode steps use the session default) */
    bool progress;             /* dots on stderr */
    bool routing;              /* compare every position's experts with the exact path's (a second engine
                                  on the same model: reference kernels, f32 KV cache) */
    int routing_threads;       /* that engine's threads (0: all cores) */
} td_eval_params;

/* One group of positions, counted as bf16-reference.json counts them: the prompt's T positions
 * (prefill), then the G-1 teacher-forced decode steps after the first (the first greedy token is scored
 * by the prompt's last position, which the prefill holds). */
typedef struct td_eval_part {
    int64_t positions;
    int64_t top1;                /* argmax equal to the reference's (at decode steps: the greedy token) */
    int64_t kld_positions;       /* positions with reference logits (decode steps need greedy_logits) */
    double kld_mean;             /* over those; -1 when none */
    int64_t flipped;             /* positions whose experts differ from the exact path's in some MoE
                                    layer; -1 when routing was not compared */
    int64_t clean_kld_positions; /* positions with reference logits and the exact path's experts */
    double kld_mean_clean;       /* over those; -1 when none or not compared */
} td_eval_part;

typedef struct td_eval_result {
    int64_t prompt_tokens, greedy_steps;
    double prefill_max_rel_err;   /* max|ours-ref| / max|ref| over the prompt logits */
    double decode_max_rel_err;    /* same over greedy_logits (-1 when the file has none) */
    double logits_max_rel_err;    /* the larger of the two */
    double top1_agree;            /* fraction of prompt positions and decode steps whose argmax matches */
    double kld_mean;              /* mean KL(ref || ours) over the same positions */
    double kld_max;
    int64_t greedy_match;         /* decode steps whose argmax equals greedy_ids */
    bool has_mtp_ref, has_mtp_model;
    double mtp_max_rel_err;       /* -1 when not compared */
    double mtp_top1_agree;
    double min_greedy_margin;     /* from the reference's metadata, -1 if absent */
    /* by position, as the bf16 tier's yardstick counts them (prefill + decode = all) */
    td_eval_part prefill, decode, all;
    bool routing_compared;
    int64_t exact_route_mismatch; /* prompt positions where the exact path's experts differ from the
                                     reference file's topk.L (-1: the file has none, or not compared) */
} td_eval_result;

/* `ref_path` is a reference.safetensors. The session must be fresh (position 0) and hold prompt + steps. */
td_status td_eval_run(td_session *s, const char *ref_path, const td_eval_params *p, td_eval_result *out);

/* Writes a reference file in the fixtures' format (../shared/fixtures/README.md) from the model's own
 * outputs, through the same calls td_eval_run makes: input_ids [T] (the prompt), logits [T][V] of one
 * prefill, greedy_ids [G] and greedy_logits [G][V] decoding one token at a time, mtp_logits [T-1][V] when
 * the model has an MTP block, and min_greedy_margin in __metadata__. The session must be fresh. */
typedef struct td_eval_reference_info {
    int64_t prompt_tokens, greedy_steps;
    bool mtp;
    double min_greedy_margin;
} td_eval_reference_info;
td_status td_eval_write_reference(td_session *s, const int32_t *prompt, int64_t T, int64_t G, const char *path,
                                  td_eval_reference_info *info);

/* Comparison helpers, also used by tests. */
double td_max_rel_err(const float *ours, const float *ref, int64_t n);
/* KL(softmax(ref) || softmax(ours)) over one row of n logits, in double. */
double td_kl_logits(const float *ref, const float *ours, int64_t n);

/* What plain bf16 inference makes on one fixture: variant A ("official-style": bf16 weights, activations
 * and matmul outputs, fp32 accumulation; norms, softmax, RoPE and the router in fp32) of the fixture's
 * entry in bf16-reference.json, main head. */
typedef struct td_bf16_yardstick {
    char fixture[128];      /* the entry's name */
    int64_t positions;      /* logits.n: prompt + greedy steps - 1 */
    int64_t flipped;        /* route_mismatch_positions: positions whose experts differ from float64's */
    double kld_mean_clean;  /* logits.kld_mean_clean: over the other positions */
    double top1;            /* logits.top1: over all positions */
} td_bf16_yardstick;

/* Finds the first of `names` that has an entry in the text of a bf16-reference.json (a list of
 * {"fixture": name, "variants": {"A": {...}}}). TD_E_NOT_FOUND when none has one; TD_E_FORMAT, naming the
 * field, when the text is not such a list or the entry lacks a number the tier needs. `src` names the
 * text in messages. */
td_status td_bf16_yardstick_parse(const char *json, size_t len, const char *src, const char *const *names,
                                  int n_names, td_bf16_yardstick *out);
td_status td_bf16_yardstick_load(const char *path, const char *const *names, int n_names, td_bf16_yardstick *out);

/* The bf16 tier's limits from a yardstick, and its verdict on a result (which must have compared routing):
 * the clean KL at most 2x the yardstick's, at most one flipped position more, top-1 at most 0.02 lower. */
typedef struct td_bf16_limits {
    double kld_mean_clean_max;
    int64_t flipped_max;
    double top1_min;
} td_bf16_limits;
td_bf16_limits td_bf16_tier_limits(const td_bf16_yardstick *y);
bool td_bf16_tier_passes(const td_eval_result *r, const td_bf16_limits *lim);
/* The fraction of all positions whose argmax matches (the tier's top-1). */
double td_eval_part_top1(const td_eval_part *p);

#endif
