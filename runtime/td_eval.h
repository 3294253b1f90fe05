/* td_eval: the correctness contract. Runs a model on a reference file's prompt (one prefill), then
 * decodes the reference's greedy continuation through the KV cache with teacher forcing, and compares
 * logits, argmaxes and MTP logits with the reference. */
#ifndef TD_EVAL_H
#define TD_EVAL_H

#include "td_engine.h"

typedef struct td_eval_params {
    td_attn_path attn;         /* attention form for the prefill (decode steps use the session default) */
    bool progress;             /* dots on stderr */
} td_eval_params;

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

#endif
