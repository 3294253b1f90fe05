/* Internals shared by the forward-pass files (td_session.c, td_session_mtp.c, td_attention.c, td_router.c). */
#ifndef TD_SESSION_IMPL_H
#define TD_SESSION_IMPL_H

#include "td_engine.h"

struct td_engine {
    td_model *model;
    td_cpu *cpu;
    td_engine_params p;
};

/* The latent cache of one layer: normalized c_kv and the roped shared key, per position. */
typedef struct td_kv_layer {
    float *ckv;   /* [n_ctx][r] */
    float *krope; /* [n_ctx][dr] */
} td_kv_layer;

/* Scratch for one forward call of up to B tokens over a context of C positions. */
typedef struct td_scratch {
    float *x, *xn, *tmp;       /* [B][H] */
    float *qa;                 /* [B][q_lora] */
    float *q;                  /* [B][nh*(dn+dr)] */
    float *kva;                /* [B][r+dr] */
    float *attn_out;           /* [B][nh*dv] */
    float *qn_h;               /* [B][dn]: one head's q_nope, gathered */
    float *qlat;               /* [B][r] */
    float *olat;               /* [B][r] */
    float *scores;             /* [B][C] */
    float *k_h, *v_h;          /* [C][dn], [C][dv]: one head decompressed */
    float *o_h;                /* [B][dv] */
    float *router;             /* [B][E] */
    float *choice;             /* [E] */
    int32_t *ids;              /* [B][k] */
    float *weights;            /* [B][k] */
    float *moe_out;            /* [B][H] */
    float *emb2;               /* [B][2H]: MTP input */
} td_scratch;

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
    td_session_params p;
    int64_t n_ctx, max_batch;
    int64_t pos, mtp_pos;
    td_kv_layer *kv;           /* [n_layers] */
    td_kv_layer mtp_kv;
    float *rope_cos, *rope_sin;/* [n_ctx][dr/2] */
    td_scratch s;
    float *logits;             /* [V] of the last position */
    float *hidden;             /* [H] final-normed hidden of the last position */
    float *mtp_logits;         /* [V] */
    td_trace *trace;
    int32_t *tokens;           /* [n_ctx] the token at each position */
    td_mtp_state mtp;
    td_expert_counts *expert_counts; /* [n_layers + 1] or NULL */
};

/* One decoder layer on s->s.x (n tokens at positions pos0..), with cache `kv`. */
void td_layer_forward(td_session *s, const td_layer_weights *l, td_kv_layer *kv, int64_t pos0, int64_t n,
                      int32_t *trace_topk);
/* MLA: x += attention(rmsnorm(x)) for n tokens. */
void td_attention_forward(td_session *s, const td_attn_weights *a, td_kv_layer *kv, int64_t pos0, int64_t n);
/* Chooses experts for n tokens from xn: ids/weights [n][k]. */
void td_router_select(td_session *s, const td_moe_weights *moe, const float *xn, int64_t n, int32_t *ids,
                      float *weights);
/* td_session_mtp.c: buffers, and the hooks of forward and rewind. */
td_status td_mtp_state_alloc(td_session *s);
void td_mtp_state_free(td_session *s);
/* After a chunk of n tokens ran at p0..p0+n-1 with final-normed hidden [n][H]. */
td_status td_mtp_after_chunk(td_session *s, const int32_t *tokens, int64_t p0, int64_t n, const float *hidden);
void td_mtp_on_rewind(td_session *s, int64_t pos);

/* Rotates adjacent pairs of n_vec vectors of dr values each at position pos. */
void td_rope_apply(const td_session *s, float *v, int64_t pos);
td_status td_rope_tables(td_session *s);

#endif
