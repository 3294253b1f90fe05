/* td_engine and td_session: running a model.
 *  - td_engine: a model made ready to compute (kernels chosen, threads started, weights materialized).
 *  - td_session: one conversation: the latent KV caches (main and MTP), the position, and scratch
 *    memory sized up front, so that decoding a token allocates nothing.
 * The forward pass appends tokens at the session's position; rewinding is just moving the position back,
 * because the cache rows past it are recomputed before they are read again. */
#ifndef TD_ENGINE_H
#define TD_ENGINE_H

#include "td_backend.h"
#include "td_cpu.h"
#include "td_model.h"
#include "td_status.h"

#include <stdbool.h>
#include <stdint.h>

struct td_plan;

/* Whether the CPU's routed experts run on a driver thread, so that moe_submit returns at once. */
typedef enum td_moe_async {
    TD_MOE_ASYNC_AUTO = 0, /* when another backend can work meanwhile (a shared expert or attention elsewhere) */
    TD_MOE_ASYNC_ON = 1,   /* always (tests, and measuring the handoff) */
    TD_MOE_ASYNC_OFF = 2,  /* never: the experts run inside moe_submit */
    TD_MOE_ASYNC_COUNT
} td_moe_async;

typedef struct td_engine_params {
    td_kernels kernels;     /* TD_KERNELS_AUTO by default */
    int n_threads;          /* 0: all cores */
    int64_t max_batch;      /* rows per forward call; longer inputs are split (0: 512) */
    const struct td_plan *plan; /* optional placement (td_plan.h), kept by pointer: it must outlive the
                                   engine. Without one, every module runs on the CPU. */
    td_moe_async moe_async;
    const char *topology;   /* hwloc synthetic topology for tests (NUMA placement); NULL: this machine */
} td_engine_params;

typedef struct td_engine td_engine;

td_status td_engine_open(td_model *model, const td_engine_params *p, td_engine **out);
/* Does not close the model. */
void td_engine_close(td_engine *e);
td_model *td_engine_model(const td_engine *e);
td_cpu *td_engine_cpu(const td_engine *e);
/* Rows per forward call (td_engine_params.max_batch as resolved): a traced call may not be longer. */
int64_t td_engine_max_batch(const td_engine *e);
/* The backends the engine computes on ([0] is the CPU), for reports. */
int td_engine_backends(const td_engine *e, td_backend *const **out);
/* The backend that computes module `index` of the model's module list. */
td_backend *td_engine_module_backend(const td_engine *e, int index);

typedef enum td_attn_path {
    TD_ATTN_AUTO = 0,         /* decompressed for long batches, absorbed otherwise */
    TD_ATTN_DECOMPRESSED = 1, /* K and V expanded per head from the latent cache (prefill form) */
    TD_ATTN_ABSORBED = 2,     /* W_UK folded into q and W_UV into the output (decode form) */
    TD_ATTN_PATH_COUNT
} td_attn_path;

typedef struct td_session_params {
    int64_t n_ctx;          /* positions the caches hold (0: the model's max_position_embeddings, capped at 4096) */
    td_attn_path attn;
    td_kv_type kv_type;     /* TD_KV_AUTO: bf16, or f32 with the reference kernels */
} td_session_params;

typedef struct td_session td_session;

/* Optional per-layer capture for debugging and layer-by-layer tests. hidden[k] receives [n][H] after
 * k decoder layers (hidden[0] = embeddings); topk[l] receives [n][top-k] expert ids of MoE layer l,
 * sorted ascending. Entries may be NULL. Positions are those of one forward call. */
typedef struct td_trace {
    float **hidden;   /* [n_layers + 1] */
    int32_t **topk;   /* [n_layers] */
} td_trace;

td_status td_session_create(td_engine *e, const td_session_params *p, td_session **out);
void td_session_free(td_session *s);

int64_t td_session_pos(const td_session *s);
int64_t td_session_ctx(const td_session *s);
/* KV cache bytes per token as this session stores it (all main layers). */
int64_t td_session_kv_bytes_per_token(const td_session *s);
td_kv_type td_session_kv_type(const td_session *s);
td_engine *td_session_engine(const td_session *s);
td_model *td_session_model(const td_session *s); /* the engine's model */
td_attn_path td_session_attn_path(const td_session *s);

/* Runs n tokens at positions pos..pos+n-1 and advances pos. logits_all ([n][V]) and hidden_all ([n][H],
 * after the final norm) are optional; the last position's logits and hidden are always kept. */
td_status td_session_forward(td_session *s, const int32_t *tokens, int64_t n, float *logits_all, float *hidden_all);
/* Several sessions in one forward call: every item's tokens run at its session's position, and the
 * routed experts of all rows are read once per layer (a server's decode step). Items must name distinct
 * sessions of this engine; each item is the same as td_session_forward on its own. */
typedef struct td_forward_item {
    td_session *s;
    const int32_t *tokens;
    int64_t n;
    float *logits_all;  /* [n][V] or NULL */
    float *hidden_all;  /* [n][H] or NULL */
} td_forward_item;
td_status td_engine_forward_batch(td_engine *e, const td_forward_item *items, int n_items);
const float *td_session_logits(const td_session *s); /* [V] of the last position run */
const float *td_session_hidden(const td_session *s); /* [H] final-normed hidden of the last position */
const int32_t *td_session_tokens(const td_session *s); /* the token at each position 0..pos-1 */
/* Forgets positions >= pos (for rejected drafts and /reset); the MTP cache follows. */
td_status td_session_rewind(td_session *s, int64_t pos);
void td_session_set_trace(td_session *s, td_trace *trace);
void td_session_set_attn_path(td_session *s, td_attn_path path);

/* The MTP block at its positions mtp_pos..mtp_pos+n-1: row i combines hidden[i] (the main model's
 * final-normed hidden at that position) with the embedding of next_tokens[i] (the token after it) and
 * scores the token after that. logits_all [n][V] and mtp_hidden [n][H] (the block's output after its
 * head norm, the counterpart of the main model's final-normed hidden, for chaining drafts) are optional;
 * the last row's logits are kept. */
bool td_session_has_mtp(const td_session *s);
int64_t td_session_mtp_pos(const td_session *s);
td_status td_session_mtp_forward(td_session *s, const float *hidden, const int32_t *next_tokens, int64_t n,
                                 float *logits_all, float *mtp_hidden);
const float *td_session_mtp_logits(const td_session *s);
td_status td_session_mtp_rewind(td_session *s, int64_t pos);

/* MTP drafting with the bookkeeping kept by the session (td_session_mtp.c). The session remembers the
 * token at every position and the final-normed hidden of the last TD_MTP_RING positions, so MTP rows run
 * lazily: a draft brings the MTP cache up to row pos-1 in one batched MTP forward. Rewinding the main
 * cache to p drops MTP rows >= p-1 (their next token may change); nothing is copied.
 *  - keep_up: catch the MTP cache up inside td_session_forward whenever a long input would push rows it
 *    still needs out of the ring (prefill). Off by default: plain decoding pays nothing.
 *  - draft: next_token is the token chosen for position pos (not run yet); the MTP block's logits for
 *    the token at pos+1 are then td_session_mtp_logits().
 *  - chain: one more draft row from the MTP block's own last output instead of the main model's hidden,
 *    with `token` (the previous draft) as its next token; the logits score the token after it. Chained
 *    rows are speculative: the next draft recomputes them from the main model's hidden. */
#define TD_MTP_RING 32
void td_session_mtp_keep_up(td_session *s, bool on);
/* False when the hidden of position pos-1 is unknown (an empty cache, or a rewind deeper than the ring
 * with no token run since): run a token first. */
bool td_session_mtp_can_draft(const td_session *s);
td_status td_session_mtp_draft(td_session *s, int32_t next_token);
td_status td_session_mtp_chain(td_session *s, int32_t token);

/* Distinct routed experts touched per MoE layer, by batch size: what decides whether verifying several
 * tokens at once pays when experts are bandwidth-bound. counts[l] is main layer l, counts[n_layers] the
 * MTP block; batches larger than TD_EXPERT_COUNT_MAX_BATCH are not counted. NULL stops counting. */
#define TD_EXPERT_COUNT_MAX_BATCH 16
typedef struct td_expert_counts {
    int64_t calls[TD_EXPERT_COUNT_MAX_BATCH + 1];    /* forward calls with a batch of n tokens */
    int64_t distinct[TD_EXPERT_COUNT_MAX_BATCH + 1]; /* distinct experts those calls routed to, summed */
} td_expert_counts;
void td_session_count_experts(td_session *s, td_expert_counts *counts);
/* The same over all rows of each forward call of the engine's main layers (the union of the experts of
 * every session in a batched call: what one step reads), counts[l] for main layer l, by the call's rows. */
void td_engine_count_experts(td_engine *e, td_expert_counts *counts);

#endif
