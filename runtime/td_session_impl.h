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

/* Where non-finite values first appear (td_session_finite.c). Every chunk's outputs are checked; when
 * they hold a NaN or Inf, the chunk runs again with probes at each module's output, which record the
 * first site in the order of the computation. Off, a probe costs one branch. */
typedef enum td_site {
    TD_SITE_EMBED = 0,   /* the embedding rows */
    TD_SITE_MTP_PROJ,    /* the MTP block's eh_proj of [enorm(embedding); hnorm(hidden)] */
    TD_SITE_ATTN,        /* a layer's attention output (input norm, MLA, o_proj) */
    TD_SITE_DENSE,       /* a dense layer's FFN output */
    TD_SITE_ROUTER,      /* a MoE layer's routing weights */
    TD_SITE_EXPERTS,     /* the routed experts' weighted sum */
    TD_SITE_SHARED,      /* the shared experts' output */
    TD_SITE_FINAL_NORM,  /* the final norm (the MTP block's shared_head.norm) */
    TD_SITE_HEAD,        /* the logits */
    TD_SITE_COUNT
} td_site;

typedef struct td_finite_probe {
    bool on, found;
    int layer;    /* -1 outside the decoder layers; n_layers is the MTP block */
    td_site site;
    int64_t row;  /* within the chunk */
    int expert;   /* for TD_SITE_EXPERTS: the routed expert whose output it is (-1 unknown) */
} td_finite_probe;

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
    td_finite_probe finite;
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

/* td_session_finite.c. Probes record the first non-finite module output while s->finite.on. */
void td_probe_slow(td_session *s, int layer, td_site site, const float *x, int64_t rows, int64_t width);
static inline void td_probe(td_session *s, int layer, td_site site, const float *x, int64_t rows, int64_t width)
{
    if (s->finite.on && !s->finite.found) td_probe_slow(s, layer, site, x, rows, width);
}
/* After TD_SITE_EXPERTS tripped: which of the failing row's routed experts gives a non-finite output. */
void td_probe_find_expert(td_session *s, const td_moe_weights *moe, const float *xn, const int32_t *ids);
/* The error after a chunk at position pos0 gave non-finite outputs and its re-run with probes has ended. */
td_status td_finite_error(td_session *s, int64_t pos0, const char *what);

/* Rotates adjacent pairs of n_vec vectors of dr values each at position pos. */
void td_rope_apply(const td_session *s, float *v, int64_t pos);
td_status td_rope_tables(td_session *s);

#endif
