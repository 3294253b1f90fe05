/* Internals of the engine, its sessions and the forward pass (td_engine.c, td_session.c,
 * td_session_mtp.c, td_forward.c). */
#ifndef TD_SESSION_IMPL_H
#define TD_SESSION_IMPL_H

#include "td_backend.h"
#include "td_engine.h"

#define TD_MAX_BACKENDS 9   /* the CPU and up to 8 GPUs */
#define TD_FWD_MAX_SEQS 64  /* sessions in one forward call */

/* The activations of a forward call. Each has a buffer on every backend in use and is valid on a set of
 * them; the forward pass copies it to a backend that needs it and does not hold it yet. */
typedef enum td_act_id {
    TD_ACT_X = 0,    /* [rows][H] the residual stream */
    TD_ACT_XN,       /* [rows][H] a normed copy of it */
    TD_ACT_ACC,      /* [rows][H] the routed experts' sum */
    TD_ACT_TMP,      /* [rows][H] gathered rows, the MTP block's embeddings */
    TD_ACT_IDS,      /* [rows][k] int32 expert ids */
    TD_ACT_W,        /* [rows][k] their weights */
    TD_ACT_EMB2,     /* [rows][2H] the MTP block's input */
    TD_ACT_LOGITS,   /* [TD_FWD_MAX_SEQS][V] */
    TD_ACT_COUNT
} td_act_id;

typedef struct td_act {
    td_buf *on[TD_MAX_BACKENDS];
    unsigned valid;  /* backends holding the current value (bits) */
    int64_t width;   /* values per row */
} td_act;

/* Where non-finite values first appear (td_session_finite.c). Every call's outputs are checked; when they
 * hold a NaN or Inf, the call runs again with probes at each module's output, which record the first site
 * in the order of the computation. Off, a probe costs one branch. */
typedef enum td_site {
    TD_SITE_EMBED = 0,   /* the embedding rows */
    TD_SITE_MTP_PROJ,    /* the MTP block's eh_proj of [enorm(embedding); hnorm(hidden)] */
    TD_SITE_ATTN,        /* a layer's attention (input norm, MLA, o_proj, into the residual) */
    TD_SITE_DENSE,       /* a dense layer's FFN */
    TD_SITE_ROUTER,      /* a MoE layer's routing weights */
    TD_SITE_EXPERTS,     /* the routed experts' weighted sum */
    TD_SITE_SHARED,      /* the shared experts */
    TD_SITE_FINAL_NORM,  /* the final norm (the MTP block's shared_head.norm) */
    TD_SITE_HEAD,        /* the logits */
    TD_SITE_COUNT
} td_site;

typedef struct td_finite_probe {
    bool on, found;
    int layer;    /* -1 outside the decoder layers; n_layers is the MTP block */
    td_site site;
    int64_t row;  /* within the call */
    int expert;   /* for TD_SITE_EXPERTS: the routed expert whose output it is (-1 unknown) */
} td_finite_probe;

/* Which backend computes each piece of a decoder layer. */
typedef struct td_layer_backends {
    int attn, mlp, router, experts, shared; /* indices into td_engine.backends */
} td_layer_backends;

struct td_engine {
    td_model *model;
    td_engine_params p;
    td_backend *backends[TD_MAX_BACKENDS]; /* [0]: the CPU, then the GPUs */
    int n_backends;
    int gpu_device[TD_MAX_BACKENDS];       /* the CUDA device of backends[1..] */
    int *module_backend;       /* [n_modules] */
    td_layer_backends *layer;  /* [n_layers + 1]: the MTP block's layer last */
    int embed, norm, head, mtp;
    td_act act[TD_ACT_COUNT];
    float *stage;              /* [max_batch][2H] host staging between two device backends */
    int32_t *tokens;           /* [max_batch] the tokens of a call */
    int32_t *ids_host;         /* [max_batch][k] expert ids for counting and traces */
    td_expert_counts *expert_counts; /* [n_layers]: distinct experts over all rows of a call, or NULL */
    int64_t max_ctx;           /* the largest session context reserved on the backends */
    td_finite_probe finite;    /* the probes of a call that is run again to find a NaN or Inf */
};

/* MTP bookkeeping (td_session_mtp.c). Row i of the MTP cache takes the main model's final-normed hidden
 * at position i and the token at i+1. */
typedef struct td_mtp_state {
    float *ring;         /* [TD_MTP_RING][H]: final-normed hidden of position p in slot p % TD_MTP_RING */
    float *chunk_hidden; /* [max_batch][H]: the running chunk's hidden when the caller asked for none */
    float *rows;         /* [TD_MTP_RING][H]: MTP input rows gathered from the ring */
    int32_t *next;       /* [TD_MTP_RING]: the tokens after them */
    float *out;          /* [TD_MTP_RING][H]: the MTP block's head-normed output rows */
    float *last;         /* [H]: the last drafted row's output, the input of a chained draft */
    int64_t ring_lo;     /* the ring holds the hidden of positions [ring_lo, pos) */
    int64_t good;        /* rows [0, good) came from the main model's hidden and the right next token */
    int32_t good_next;   /* when good == pos: the token row pos-1 assumed for position pos */
    bool keep_up;
    bool chainable;      /* the last MTP call was a draft or chain, so `last` belongs to row mtp_pos-1 */
} td_mtp_state;

struct td_session {
    td_engine *e;
    td_session_params p;       /* kv_type resolved */
    int64_t n_ctx, max_batch;
    int64_t pos, mtp_pos;
    td_kv **kv;                /* [n_layers], each on its layer's attention backend */
    td_kv *mtp_kv;
    float *logits;             /* [V] of the last position */
    float *hidden;             /* [H] final-normed hidden of the last position */
    float *mtp_logits;         /* [V] */
    td_trace *trace;
    int32_t *tokens;           /* [n_ctx] the token at each position */
    td_mtp_state mtp;
    td_expert_counts *expert_counts; /* [n_layers + 1] or NULL */
};

/* Scratch on every backend for sessions of up to n_ctx positions. */
td_status td_engine_reserve_ctx(td_engine *e, int64_t n_ctx);

/* td_forward.c. One call of the main model over the items' tokens (at most max_batch rows in all, every
 * item's tokens checked); advances every session's position. */
td_status td_forward_main(td_engine *e, const td_forward_item *items, int n_items);
/* The MTP block over one session's rows at mtp_pos (at most max_batch); advances mtp_pos. */
td_status td_forward_mtp(td_session *s, const float *hidden, const int32_t *next_tokens, int64_t n,
                         float *logits_all, float *mtp_hidden);

/* td_session_finite.c. Whether x[0..n) holds no NaN or Inf (a vectorized scan). */
bool td_floats_finite(const float *x, int64_t n);
/* While f->on, the first rows that hold a NaN or Inf are recorded. */
void td_probe_rows(td_finite_probe *f, int layer, td_site site, const float *x, int64_t rows, int64_t width);
/* The error after a call gave non-finite outputs and its re-run with probes has ended: `what` names the
 * output, pos0 is the position of the call's row 0 in its session. */
td_status td_finite_error(td_engine *e, int64_t pos0, const char *what);

/* td_session_mtp.c: buffers, and the hooks of forward and rewind. */
td_status td_mtp_state_alloc(td_session *s);
void td_mtp_state_free(td_session *s);
/* After a chunk of n tokens ran at p0..p0+n-1 with final-normed hidden [n][H]. */
td_status td_mtp_after_chunk(td_session *s, const int32_t *tokens, int64_t p0, int64_t n, const float *hidden);
void td_mtp_on_rewind(td_session *s, int64_t pos);

#endif
