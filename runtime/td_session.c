/* Sessions: their caches (one per layer, on the layer's attention backend), position bookkeeping, and the
 * forward calls, split into chunks of at most one batch. */
#include "td_alloc.h"
#include "td_session_impl.h"

#include <string.h>

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

td_status td_session_forward(td_session *s, const int32_t *tokens, int64_t n, float *logits_all, float *hidden_all)
{
    td_forward_item item = {.s = s, .tokens = tokens, .n = n, .logits_all = logits_all, .hidden_all = hidden_all};
    return td_engine_forward_batch(s->e, &item, 1);
}

/* Runs the items in calls of at most max_batch rows: each call takes the next rows of every item that
 * has rows left, in order, so a session's rows stay in position order. */
td_status td_engine_forward_batch(td_engine *e, const td_forward_item *items, int n_items)
{
    const td_hparams *hp = &e->model->hp;
    int64_t B = e->p.max_batch;
    if (n_items < 1 || n_items > TD_FWD_MAX_SEQS)
        return td_fail(TD_E_ARG, "a forward call takes 1 to %d sessions, not %d", TD_FWD_MAX_SEQS, n_items);
    for (int i = 0; i < n_items; i++) {
        td_session *s = items[i].s;
        if (s->e != e) return td_fail(TD_E_ARG, "session %d of the call belongs to another engine", i);
        for (int j = 0; j < i; j++)
            if (items[j].s == s) return td_fail(TD_E_ARG, "the call names one session twice (items %d and %d)", j, i);
        TD_TRY(td_check_tokens(s, items[i].tokens, items[i].n, s->pos));
        if (s->trace && (n_items > 1 || items[i].n > B))
            return td_fail(TD_E_ARG, "tracing needs one forward call of one session: %lld tokens, batch of %lld",
                           (long long)items[i].n, (long long)B);
    }
    int64_t done[TD_FWD_MAX_SEQS] = {0};
    for (;;) {
        td_forward_item call[TD_FWD_MAX_SEQS];
        int n_call = 0;
        int64_t rows = 0;
        for (int i = 0; i < n_items && rows < B; i++) {
            int64_t left = items[i].n - done[i];
            if (left == 0) continue;
            int64_t c = left < B - rows ? left : B - rows;
            call[n_call++] = (td_forward_item){
                .s = items[i].s, .tokens = items[i].tokens + done[i], .n = c,
                .logits_all = items[i].logits_all ? items[i].logits_all + done[i] * hp->vocab_size : NULL,
                .hidden_all = items[i].hidden_all ? items[i].hidden_all + done[i] * hp->hidden_size : NULL};
            done[i] += c;
            rows += c;
        }
        if (n_call == 0) return TD_OK;
        TD_TRY(td_forward_main(e, call, n_call));
    }
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
        TD_TRY(td_forward_mtp(s, hidden + done * H, next_tokens + done, c, logits_all ? logits_all + done * V : NULL,
                              mtp_hidden ? mtp_hidden + done * H : NULL));
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

td_status td_session_create(td_engine *e, const td_session_params *p, td_session **out)
{
    *out = NULL;
    const td_model *m = e->model;
    const td_hparams *hp = &m->hp;
    td_session_params params = p ? *p : (td_session_params){0};
    int64_t n_ctx = params.n_ctx;
    if (n_ctx == 0) n_ctx = hp->max_position_embeddings < 4096 ? hp->max_position_embeddings : 4096;
    if (n_ctx < 1 || n_ctx > (1ll << 24))
        return td_fail(TD_E_ARG, "context length %lld is out of range (1..16777216)", (long long)n_ctx);
    if ((uint64_t)params.attn >= TD_ATTN_PATH_COUNT) return td_fail(TD_E_ARG, "unknown attention path");
    if ((unsigned)params.kv_type >= TD_KV_TYPE_COUNT) return td_fail(TD_E_ARG, "unknown KV cache type");
    if (params.kv_type == TD_KV_AUTO) params.kv_type = e->p.kernels == TD_KERNELS_REF ? TD_KV_F32 : TD_KV_BF16;
    TD_TRY(td_engine_reserve_ctx(e, n_ctx));
    td_session *s = td_calloc(1, sizeof *s);
    if (!s) return td_fail(TD_E_NOMEM, "out of memory");
    s->e = e;
    s->p = params;
    s->n_ctx = n_ctx;
    s->max_batch = e->p.max_batch;
    td_status st = TD_OK;
    s->kv = td_calloc((size_t)hp->n_layers, sizeof *s->kv);
    if (!s->kv) st = td_fail(TD_E_NOMEM, "out of memory");
    for (int l = 0; l < hp->n_layers && st == TD_OK; l++) {
        td_backend *b = e->backends[e->layer[l].attn];
        st = b->i->kv_new(b, n_ctx, params.kv_type, &s->kv[l]);
    }
    if (st == TD_OK && m->mtp) {
        td_backend *b = e->backends[e->layer[hp->n_layers].attn];
        st = b->i->kv_new(b, n_ctx, params.kv_type, &s->mtp_kv);
    }
    if (st == TD_OK) st = td_alloc_floats(&s->logits, (size_t)hp->vocab_size);
    if (st == TD_OK) st = td_alloc_floats(&s->mtp_logits, (size_t)hp->vocab_size);
    if (st == TD_OK) st = td_alloc_floats(&s->hidden, (size_t)hp->hidden_size);
    if (st == TD_OK && !(s->tokens = td_malloc((size_t)n_ctx * sizeof(int32_t))))
        st = td_fail(TD_E_NOMEM, "out of memory for the token list of %lld positions", (long long)n_ctx);
    if (st == TD_OK && m->mtp) st = td_mtp_state_alloc(s);
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
    td_engine *e = s->e;
    const td_hparams *hp = &e->model->hp;
    for (int l = 0; s->kv && l < hp->n_layers; l++) {
        td_backend *b = e->backends[e->layer[l].attn];
        if (s->kv[l]) b->i->kv_free(b, s->kv[l]);
    }
    if (s->mtp_kv) {
        td_backend *b = e->backends[e->layer[hp->n_layers].attn];
        b->i->kv_free(b, s->mtp_kv);
    }
    td_free(s->kv);
    td_free(s->logits);
    td_free(s->mtp_logits);
    td_free(s->hidden);
    td_free(s->tokens);
    td_mtp_state_free(s);
    td_free(s);
}

int64_t td_session_pos(const td_session *s) { return s->pos; }
int64_t td_session_ctx(const td_session *s) { return s->n_ctx; }
int64_t td_session_kv_bytes_per_token(const td_session *s)
{
    return td_model_kv_bytes_per_token(s->e->model, td_kv_type_bytes(s->p.kv_type));
}
td_kv_type td_session_kv_type(const td_session *s) { return s->p.kv_type; }
td_engine *td_session_engine(const td_session *s) { return s->e; }
td_model *td_session_model(const td_session *s) { return s->e->model; }
td_attn_path td_session_attn_path(const td_session *s) { return s->p.attn; }
const float *td_session_logits(const td_session *s) { return s->logits; }
const float *td_session_hidden(const td_session *s) { return s->hidden; }
const int32_t *td_session_tokens(const td_session *s) { return s->tokens; }
const float *td_session_mtp_logits(const td_session *s) { return s->mtp_logits; }
bool td_session_has_mtp(const td_session *s) { return s->e->model->mtp != NULL; }
int64_t td_session_mtp_pos(const td_session *s) { return s->mtp_pos; }
void td_session_set_trace(td_session *s, td_trace *trace) { s->trace = trace; }
void td_session_set_attn_path(td_session *s, td_attn_path path) { s->p.attn = path; }
void td_session_count_experts(td_session *s, td_expert_counts *counts) { s->expert_counts = counts; }
void td_engine_count_experts(td_engine *e, td_expert_counts *counts) { e->expert_counts = counts; }

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
