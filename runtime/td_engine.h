/* td_engine and td_session: running a model.
 *  - td_engine: a model made ready to compute (kernels chosen, threads started, weights materialized).
 *  - td_session: one conversation: the latent KV caches (main and MTP), the position, and scratch
 *    memory sized up front, so that decoding a token allocates nothing.
 * The forward pass appends tokens at the session's position; rewinding is just moving the position back,
 * because the cache rows past it are recomputed before they are read again. */
#ifndef TD_ENGINE_H
#define TD_ENGINE_H

#include "td_cpu.h"
#include "td_model.h"
#include "td_status.h"

#include <stdbool.h>
#include <stdint.h>

struct td_plan;

typedef struct td_engine_params {
    td_kernels kernels;     /* TD_KERNELS_AUTO by default */
    int n_threads;          /* 0: all cores */
    int64_t max_batch;      /* tokens per forward call; longer inputs are split (0: 512) */
    const struct td_plan *plan; /* optional placement (td_plan.h), kept by pointer: it must outlive the
                                   engine. GPU placements are refused until the GPU path lands. */
} td_engine_params;

typedef struct td_engine td_engine;

td_status td_engine_open(td_model *model, const td_engine_params *p, td_engine **out);
/* Does not close the model. */
void td_engine_close(td_engine *e);
td_model *td_engine_model(const td_engine *e);
td_cpu *td_engine_cpu(const td_engine *e);

typedef enum td_attn_path {
    TD_ATTN_AUTO = 0,         /* decompressed for long batches, absorbed otherwise */
    TD_ATTN_DECOMPRESSED = 1, /* K and V expanded per head from the latent cache (prefill form) */
    TD_ATTN_ABSORBED = 2,     /* W_UK folded into q and W_UV into the output (decode form) */
    TD_ATTN_PATH_COUNT
} td_attn_path;

typedef struct td_session_params {
    int64_t n_ctx;          /* positions the caches hold (0: the model's max_position_embeddings, capped at 4096) */
    td_attn_path attn;
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

/* Runs n tokens at positions pos..pos+n-1 and advances pos. logits_all ([n][V]) and hidden_all ([n][H],
 * after the final norm) are optional; the last position's logits and hidden are always kept. */
td_status td_session_forward(td_session *s, const int32_t *tokens, int64_t n, float *logits_all, float *hidden_all);
const float *td_session_logits(const td_session *s); /* [V] of the last position run */
const float *td_session_hidden(const td_session *s); /* [H] final-normed hidden of the last position */
/* Forgets positions >= pos (for rejected drafts and /reset); the MTP cache follows. */
td_status td_session_rewind(td_session *s, int64_t pos);
void td_session_set_trace(td_session *s, td_trace *trace);
void td_session_set_attn_path(td_session *s, td_attn_path path);

/* The MTP block at its positions mtp_pos..mtp_pos+n-1: row i combines hidden[i] (the main model's
 * final-normed hidden at that position) with the embedding of next_tokens[i] (the token after it) and
 * scores the token after that. logits_all [n][V] and mtp_hidden [n][H] (the block's output before the
 * head norm, for chaining drafts) are optional; the last row's logits are kept. */
bool td_session_has_mtp(const td_session *s);
int64_t td_session_mtp_pos(const td_session *s);
td_status td_session_mtp_forward(td_session *s, const float *hidden, const int32_t *next_tokens, int64_t n,
                                 float *logits_all, float *mtp_hidden);
const float *td_session_mtp_logits(const td_session *s);
td_status td_session_mtp_rewind(td_session *s, int64_t pos);

#endif
