/* Sessions: cache and scratch allocation, the layer loop, and position bookkeeping. */
#include "td_alloc.h"
#include "td_dequant.h"
#include "td_ops.h"
#include "td_session_impl.h"

#include <stdlib.h>
#include <string.h>

static int td_cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Distinct experts among n tokens' k choices (a pairwise scan: n*k is small for the batches counted). */
static void td_count_experts(td_expert_counts *c, const int32_t *ids, int64_t n, int k)
{
    int64_t distinct = 0;
    for (int64_t i = 0; i < n * k; i++) {
        int64_t j = 0;
        while (j < i && ids[j] != ids[i]) j++;
        distinct += j == i;
    }
    c->calls[n]++;
    c->distinct[n] += distinct;
}

static void td_mlp_forward(td_session *s, const td_layer_weights *l, int64_t n, int32_t *trace_topk)
{
    const td_hparams *hp = &s->e->model->hp;
    td_cpu *cpu = s->e->cpu;
    td_scratch *sc = &s->s;
    int64_t H = hp->hidden_size;
    for (int64_t t = 0; t < n; t++) td_rmsnorm(sc->xn + t * H, sc->x + t * H, l->ffn_norm, H, hp->rms_norm_eps);
    if (!l->is_moe) {
        td_cpu_ffn(cpu, &l->dense, sc->xn, n, sc->tmp);
        td_probe(s, l->index, TD_SITE_DENSE, sc->tmp, n, H);
        for (int64_t i = 0; i < n * H; i++) sc->x[i] += sc->tmp[i];
        return;
    }
    int k = hp->n_experts_per_tok;
    td_router_select(s, &l->moe, sc->xn, n, sc->ids, sc->weights);
    td_probe(s, l->index, TD_SITE_ROUTER, sc->weights, n, k);
    if (s->expert_counts && n <= TD_EXPERT_COUNT_MAX_BATCH) td_count_experts(&s->expert_counts[l->index], sc->ids, n, k);
    if (trace_topk) {
        memcpy(trace_topk, sc->ids, (size_t)(n * k) * sizeof(int32_t));
        for (int64_t t = 0; t < n; t++) qsort(trace_topk + t * k, (size_t)k, sizeof(int32_t), td_cmp_i32);
    }
    memset(sc->moe_out, 0, (size_t)(n * H) * sizeof(float));
    td_moe_batch b = {.n_tok = n, .k = k, .ids = sc->ids, .weights = sc->weights, .x = sc->xn, .out = sc->moe_out};
    td_cpu_moe(cpu, l->moe.experts, hp->n_routed_experts, &b);
    td_probe(s, l->index, TD_SITE_EXPERTS, sc->moe_out, n, H);
    if (s->finite.found && s->finite.site == TD_SITE_EXPERTS) td_probe_find_expert(s, &l->moe, sc->xn, sc->ids);
    if (l->moe.has_shared) {
        td_cpu_ffn(cpu, &l->moe.shared, sc->xn, n, sc->tmp);
        td_probe(s, l->index, TD_SITE_SHARED, sc->tmp, n, H);
        for (int64_t i = 0; i < n * H; i++) sc->moe_out[i] += sc->tmp[i];
    }
    for (int64_t i = 0; i < n * H; i++) sc->x[i] += sc->moe_out[i];
}

void td_layer_forward(td_session *s, const td_layer_weights *l, td_kv_layer *kv, int64_t pos0, int64_t n,
                      int32_t *trace_topk)
{
    td_attention_forward(s, &l->attn, kv, pos0, n);
    td_probe(s, l->index, TD_SITE_ATTN, s->s.tmp, n, s->e->model->hp.hidden_size); /* tmp: the o_proj output */
    td_mlp_forward(s, l, n, trace_topk);
}

/* final norm and head for rows of s->s.x: all rows into logits_all, and the last into s->logits */
static void td_head(td_session *s, const float *norm, const td_matrix *head, int64_t n, float *logits_all,
                    float *hidden_all, float *last_logits, float *last_hidden)
{
    const td_hparams *hp = &s->e->model->hp;
    td_scratch *sc = &s->s;
    int64_t H = hp->hidden_size;
    for (int64_t t = 0; t < n; t++) td_rmsnorm(sc->xn + t * H, sc->x + t * H, norm, H, hp->rms_norm_eps);
    if (hidden_all) memcpy(hidden_all, sc->xn, (size_t)(n * H) * sizeof(float));
    if (last_hidden) memcpy(last_hidden, sc->xn + (n - 1) * H, (size_t)H * sizeof(float));
    if (logits_all) {
        td_cpu_linear(s->e->cpu, head, sc->xn, n, logits_all);
        memcpy(last_logits, logits_all + (n - 1) * hp->vocab_size, (size_t)hp->vocab_size * sizeof(float));
    } else {
        td_cpu_linear(s->e->cpu, head, sc->xn + (n - 1) * H, 1, last_logits);
    }
}

static td_status td_check_tokens(const td_session *s, const int32_t *tokens, int64_t n, int64_t pos)
{
    const td_hparams *hp = &s->e->model->hp;
    if (n < 1) return td_fail(TD_E_ARG, "no tokens to run");
    if (pos + n > s->n_ctx)
        return td_fail(TD_E_ARG, "context is full: %lld + %lld tokens exceed the %lld positions of this session (raise --ctx)",
                       (long long)pos, (long long)n, (long long)s->n_ctx);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->vocab_size)
            return td_fail(TD_E_ARG, "token id %d at index %lld is outside the vocabulary (0..%lld)", tokens[i],
                           (long long)i, (long long)hp->vocab_size - 1);
    return TD_OK;
}

static void td_embed(td_session *s, const td_matrix *embed, const int32_t *tokens, int64_t n, float *out)
{
    int64_t H = s->e->model->hp.hidden_size;
    for (int64_t t = 0; t < n; t++) td_matrix_dequant_row(embed, tokens[t], out + t * H);
}

/* One forward call's rows: the tokens, the MTP block's input hidden rows, and the optional outputs. */
typedef struct td_chunk {
    const int32_t *tokens;
    const float *hidden; /* MTP only: [n][H] */
    int64_t n;
    float *logits_all;   /* [n][V] or NULL */
    float *hidden_all;   /* [n][H] or NULL */
} td_chunk;

typedef void (*td_chunk_fn)(td_session *s, const td_chunk *c);

/* The final norm's rows (all of them) and the logits (the rows computed) while probing. */
static void td_probe_head(td_session *s, int layer, const td_chunk *c, const float *last_logits)
{
    const td_hparams *hp = &s->e->model->hp;
    td_probe(s, layer, TD_SITE_FINAL_NORM, s->s.xn, c->n, hp->hidden_size);
    if (c->logits_all) {
        td_probe(s, layer, TD_SITE_HEAD, c->logits_all, c->n, hp->vocab_size);
    } else {
        td_probe(s, layer, TD_SITE_HEAD, last_logits, 1, hp->vocab_size);
        if (s->finite.found && s->finite.site == TD_SITE_HEAD) s->finite.row = c->n - 1;
    }
}

/* Embedding, decoder layers and head of the main model at s->pos (which does not advance). */
static void td_main_compute(td_session *s, const td_chunk *c)
{
    const td_model *m = s->e->model;
    int64_t H = m->hp.hidden_size, n = c->n;
    td_trace *tr = s->trace;
    td_embed(s, &m->embed, c->tokens, n, s->s.x);
    td_probe(s, -1, TD_SITE_EMBED, s->s.x, n, H);
    if (tr && tr->hidden && tr->hidden[0]) memcpy(tr->hidden[0], s->s.x, (size_t)(n * H) * sizeof(float));
    for (int l = 0; l < m->hp.n_layers; l++) {
        int32_t *topk = tr && tr->topk ? tr->topk[l] : NULL;
        td_layer_forward(s, &m->layers[l], &s->kv[l], s->pos, n, topk);
        if (tr && tr->hidden && tr->hidden[l + 1]) memcpy(tr->hidden[l + 1], s->s.x, (size_t)(n * H) * sizeof(float));
    }
    td_head(s, m->norm, &m->head, n, c->logits_all, c->hidden_all, s->logits, s->hidden);
    td_probe_head(s, -1, c, s->logits);
}

/* The MTP block at s->mtp_pos (which does not advance): x = eh_proj([enorm(emb(t+1)); hnorm(h_t)]), the
 * embedding first, then its decoder layer and head. */
static void td_mtp_compute(td_session *s, const td_chunk *c)
{
    const td_model *m = s->e->model;
    const td_mtp_weights *w = m->mtp;
    int64_t H = m->hp.hidden_size, n = c->n;
    int L = m->hp.n_layers;
    double eps = m->hp.rms_norm_eps;
    td_scratch *sc = &s->s;
    td_embed(s, &w->embed, c->tokens, n, sc->tmp);
    td_probe(s, L, TD_SITE_EMBED, sc->tmp, n, H);
    for (int64_t t = 0; t < n; t++) {
        td_rmsnorm(sc->emb2 + t * 2 * H, sc->tmp + t * H, w->enorm, H, eps);
        td_rmsnorm(sc->emb2 + t * 2 * H + H, c->hidden + t * H, w->hnorm, H, eps);
    }
    td_cpu_linear(s->e->cpu, &w->eh_proj, sc->emb2, n, sc->x);
    td_probe(s, L, TD_SITE_MTP_PROJ, sc->x, n, H);
    td_layer_forward(s, &w->layer, &s->mtp_kv, s->mtp_pos, n, NULL);
    td_head(s, w->head_norm, &w->head, n, c->logits_all, c->hidden_all, s->mtp_logits, NULL);
    td_probe_head(s, L, c, s->mtp_logits);
}

/* Runs a chunk and checks what it hands on: every row of the outputs given, else the last row's logits and
 * hidden (what decoding reads). On a NaN or Inf the chunk runs again with the probes on, to name the module
 * where it first appears; the positions have not advanced, so the session stays usable. */
static td_status td_chunk_run(td_session *s, td_chunk_fn compute, const td_chunk *c, int64_t pos0,
                              const float *last_logits, const float *last_hidden, const char *what)
{
    const td_hparams *hp = &s->e->model->hp;
    compute(s, c);
    const float *lg = c->logits_all ? c->logits_all : last_logits, *hd = c->hidden_all ? c->hidden_all : last_hidden;
    int64_t rows = c->logits_all ? c->n : 1, hrows = c->hidden_all ? c->n : 1;
    if (td_first_nonfinite(lg, rows * hp->vocab_size) < 0 && (!hd || td_first_nonfinite(hd, hrows * hp->hidden_size) < 0))
        return TD_OK;
    td_trace *trace = s->trace;
    td_expert_counts *counts = s->expert_counts;
    s->trace = NULL;
    s->expert_counts = NULL;
    s->finite = (td_finite_probe){.on = true};
    compute(s, c);
    s->trace = trace;
    s->expert_counts = counts;
    return td_finite_error(s, pos0, what);
}

static td_status td_forward_chunk(td_session *s, const int32_t *tokens, int64_t n, float *logits_all,
                                  float *hidden_all)
{
    const td_model *m = s->e->model;
    int64_t p0 = s->pos;
    memcpy(s->tokens + p0, tokens, (size_t)n * sizeof(int32_t));
    if (m->mtp && !hidden_all) hidden_all = s->mtp.chunk_hidden; /* the MTP rows need every position's hidden */
    td_chunk c = {.tokens = tokens, .n = n, .logits_all = logits_all, .hidden_all = hidden_all};
    TD_TRY(td_chunk_run(s, td_main_compute, &c, p0, s->logits, s->hidden, "the model's output"));
    s->pos += n;
    return m->mtp ? td_mtp_after_chunk(s, tokens, p0, n, hidden_all) : TD_OK;
}

td_status td_session_forward(td_session *s, const int32_t *tokens, int64_t n, float *logits_all, float *hidden_all)
{
    TD_TRY(td_check_tokens(s, tokens, n, s->pos));
    const td_hparams *hp = &s->e->model->hp;
    if (s->trace && n > s->max_batch)
        return td_fail(TD_E_ARG, "tracing needs one forward call: %lld tokens exceed the batch of %lld", (long long)n,
                       (long long)s->max_batch);
    for (int64_t done = 0; done < n;) {
        int64_t c = n - done < s->max_batch ? n - done : s->max_batch;
        TD_TRY(td_forward_chunk(s, tokens + done, c, logits_all ? logits_all + done * hp->vocab_size : NULL,
                                hidden_all ? hidden_all + done * hp->hidden_size : NULL));
        done += c;
    }
    return TD_OK;
}

td_status td_session_mtp_forward(td_session *s, const float *hidden, const int32_t *next_tokens, int64_t n,
                                 float *logits_all, float *mtp_hidden)
{
    const td_model *m = s->e->model;
    if (!m->mtp) return td_fail(TD_E_NOT_FOUND, "%s has no MTP block", m->path);
    TD_TRY(td_check_tokens(s, next_tokens, n, s->mtp_pos));
    s->mtp.chainable = false;
    int64_t H = m->hp.hidden_size, V = m->hp.vocab_size;
    for (int64_t done = 0; done < n;) {
        int64_t c = n - done < s->max_batch ? n - done : s->max_batch;
        td_chunk ch = {.tokens = next_tokens + done, .hidden = hidden + done * H, .n = c,
                       .logits_all = logits_all ? logits_all + done * V : NULL,
                       .hidden_all = mtp_hidden ? mtp_hidden + done * H : NULL};
        TD_TRY(td_chunk_run(s, td_mtp_compute, &ch, s->mtp_pos, s->mtp_logits, NULL, "the MTP block's output"));
        s->mtp_pos += c;
        done += c;
    }
    return TD_OK;
}

/* ------------------------------------------------------------------ lifecycle */

static td_status td_alloc_floats(float **p, size_t n)
{
    *p = td_malloc_aligned((n ? n : 1) * sizeof(float), 64);
    return *p ? TD_OK : td_fail(TD_E_NOMEM, "out of memory for session buffers (%zu floats)", n);
}

static td_status td_kv_alloc(td_kv_layer *kv, const td_hparams *hp, int64_t n_ctx)
{
    TD_TRY(td_alloc_floats(&kv->ckv, (size_t)(n_ctx * hp->kv_lora_rank)));
    TD_TRY(td_alloc_floats(&kv->krope, (size_t)(n_ctx * hp->qk_rope_head_dim)));
    return TD_OK;
}

static void td_kv_free(td_kv_layer *kv)
{
    td_free(kv->ckv);
    td_free(kv->krope);
}

static td_status td_scratch_alloc(td_scratch *sc, const td_hparams *hp, int64_t B, int64_t C)
{
    size_t H = (size_t)hp->hidden_size, nh = (size_t)hp->n_heads, r = (size_t)hp->kv_lora_rank;
    size_t dn = (size_t)hp->qk_nope_head_dim, dr = (size_t)hp->qk_rope_head_dim, dv = (size_t)hp->v_head_dim;
    size_t E = (size_t)(hp->n_routed_experts ? hp->n_routed_experts : 1);
    size_t k = (size_t)(hp->n_experts_per_tok ? hp->n_experts_per_tok : 1), b = (size_t)B, c = (size_t)C;
    TD_TRY(td_alloc_floats(&sc->x, b * H));
    TD_TRY(td_alloc_floats(&sc->xn, b * H));
    TD_TRY(td_alloc_floats(&sc->tmp, b * H));
    TD_TRY(td_alloc_floats(&sc->qa, b * (size_t)(hp->q_lora_rank ? hp->q_lora_rank : 1)));
    TD_TRY(td_alloc_floats(&sc->q, b * nh * (dn + dr)));
    TD_TRY(td_alloc_floats(&sc->kva, b * (r + dr)));
    TD_TRY(td_alloc_floats(&sc->attn_out, b * nh * dv));
    TD_TRY(td_alloc_floats(&sc->qn_h, b * dn));
    TD_TRY(td_alloc_floats(&sc->qlat, b * r));
    TD_TRY(td_alloc_floats(&sc->olat, b * r));
    TD_TRY(td_alloc_floats(&sc->scores, b * c));
    TD_TRY(td_alloc_floats(&sc->k_h, c * dn));
    TD_TRY(td_alloc_floats(&sc->v_h, c * dv));
    TD_TRY(td_alloc_floats(&sc->o_h, b * dv));
    TD_TRY(td_alloc_floats(&sc->router, b * E));
    TD_TRY(td_alloc_floats(&sc->choice, E));
    TD_TRY(td_alloc_floats(&sc->weights, b * k));
    TD_TRY(td_alloc_floats(&sc->moe_out, b * H));
    TD_TRY(td_alloc_floats(&sc->emb2, b * 2 * H));
    sc->ids = td_malloc(b * k * sizeof(int32_t));
    return sc->ids ? TD_OK : td_fail(TD_E_NOMEM, "out of memory");
}

static void td_scratch_free(td_scratch *sc)
{
    float *all[] = {sc->x,      sc->xn,  sc->tmp,    sc->qa,     sc->q,      sc->kva,     sc->attn_out,
                    sc->qn_h,   sc->qlat, sc->olat,  sc->scores, sc->k_h,    sc->v_h,     sc->o_h,
                    sc->router, sc->choice, sc->weights, sc->moe_out, sc->emb2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) td_free(all[i]);
    td_free(sc->ids);
}

td_status td_session_create(td_engine *e, const td_session_params *p, td_session **out)
{
    *out = NULL;
    const td_hparams *hp = &e->model->hp;
    td_session_params params = p ? *p : (td_session_params){0};
    int64_t n_ctx = params.n_ctx;
    if (n_ctx == 0) n_ctx = hp->max_position_embeddings < 4096 ? hp->max_position_embeddings : 4096;
    if (n_ctx < 1 || n_ctx > (1ll << 24))
        return td_fail(TD_E_ARG, "context length %lld is out of range (1..16777216)", (long long)n_ctx);
    if ((uint64_t)params.attn >= TD_ATTN_PATH_COUNT) return td_fail(TD_E_ARG, "unknown attention path");
    td_session *s = td_calloc(1, sizeof *s);
    if (!s) return td_fail(TD_E_NOMEM, "out of memory");
    s->e = e;
    s->p = params;
    s->n_ctx = n_ctx;
    s->max_batch = e->p.max_batch;
    td_status st = TD_OK;
    s->kv = td_calloc((size_t)hp->n_layers, sizeof *s->kv);
    if (!s->kv) st = td_fail(TD_E_NOMEM, "out of memory");
    for (int l = 0; l < hp->n_layers && st == TD_OK; l++) st = td_kv_alloc(&s->kv[l], hp, n_ctx);
    if (st == TD_OK && e->model->mtp) st = td_kv_alloc(&s->mtp_kv, hp, n_ctx);
    if (st == TD_OK) st = td_scratch_alloc(&s->s, hp, s->max_batch, n_ctx);
    if (st == TD_OK) st = td_alloc_floats(&s->logits, (size_t)hp->vocab_size);
    if (st == TD_OK) st = td_alloc_floats(&s->mtp_logits, (size_t)hp->vocab_size);
    if (st == TD_OK) st = td_alloc_floats(&s->hidden, (size_t)hp->hidden_size);
    if (st == TD_OK) st = td_rope_tables(s);
    if (st == TD_OK && !(s->tokens = td_malloc((size_t)n_ctx * sizeof(int32_t))))
        st = td_fail(TD_E_NOMEM, "out of memory for the token list of %lld positions", (long long)n_ctx);
    if (st == TD_OK && e->model->mtp) st = td_mtp_state_alloc(s);
    if (st != TD_OK) {
        td_session_free(s);
        return st;
    }
    *out = s;
    return TD_OK;
}

void td_session_free(td_session *s)
{
    if (!s) return;
    if (s->kv)
        for (int l = 0; l < s->e->model->hp.n_layers; l++) td_kv_free(&s->kv[l]);
    td_free(s->kv);
    td_kv_free(&s->mtp_kv);
    td_scratch_free(&s->s);
    td_free(s->logits);
    td_free(s->mtp_logits);
    td_free(s->hidden);
    td_free(s->rope_cos);
    td_free(s->rope_sin);
    td_free(s->tokens);
    td_mtp_state_free(s);
    td_free(s);
}

int64_t td_session_pos(const td_session *s) { return s->pos; }
int64_t td_session_ctx(const td_session *s) { return s->n_ctx; }
int64_t td_session_kv_bytes_per_token(const td_session *s)
{
    return td_model_kv_bytes_per_token(s->e->model, (int)sizeof(float));
}
const float *td_session_logits(const td_session *s) { return s->logits; }
const float *td_session_hidden(const td_session *s) { return s->hidden; }
const int32_t *td_session_tokens(const td_session *s) { return s->tokens; }
const float *td_session_mtp_logits(const td_session *s) { return s->mtp_logits; }
bool td_session_has_mtp(const td_session *s) { return s->e->model->mtp != NULL; }
int64_t td_session_mtp_pos(const td_session *s) { return s->mtp_pos; }
void td_session_set_trace(td_session *s, td_trace *trace) { s->trace = trace; }
void td_session_set_attn_path(td_session *s, td_attn_path path) { s->p.attn = path; }
void td_session_count_experts(td_session *s, td_expert_counts *counts) { s->expert_counts = counts; }

td_status td_session_rewind(td_session *s, int64_t pos)
{
    if (pos < 0 || pos > s->pos)
        return td_fail(TD_E_ARG, "cannot rewind to position %lld (the session is at %lld)", (long long)pos,
                       (long long)s->pos);
    td_mtp_on_rewind(s, pos);
    s->pos = pos;
    return TD_OK;
}

td_status td_session_mtp_rewind(td_session *s, int64_t pos)
{
    if (pos < 0 || pos > s->mtp_pos)
        return td_fail(TD_E_ARG, "cannot rewind the MTP cache to %lld (it is at %lld)", (long long)pos,
                       (long long)s->mtp_pos);
    s->mtp_pos = pos;
    if (s->mtp.good > pos) s->mtp.good = pos;
    s->mtp.chainable = false;
    return TD_OK;
}
