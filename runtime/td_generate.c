#include "td_generate.h"

#include "td_alloc.h"
#include "td_clock.h"
#include "td_strbuf.h"

#include <math.h>
#include <string.h>

#define TD_GEN_MAX_PENDING   16
#define TD_GEN_PREFILL_CHUNK 128 /* prompt tokens per forward call, so that Ctrl-C is heard during a long prefill */

struct td_generator {
    td_session *s;
    const td_tokenizer *tok;
    td_sampler *sampler;
    td_detok *detok;
    td_tokens cache; /* the tokens at positions 0..pos-1 of the session */
    int32_t pending[TD_GEN_MAX_PENDING];
    int n_pending;
    td_gen_step_fn step;
    void *step_ctx;
    int32_t eos, think_open, think_close;
    /* per call */
    const td_gen_params *p;
    td_strbuf text; /* everything emitted */
    td_strbuf held; /* text that may be the start of a stop string */
    td_gen_piece held_kind;
    bool in_think;
    bool oom;
    int64_t drafted, accepted;
};

const char *td_gen_stop_name(td_gen_stop s)
{
    static const char *names[TD_GEN_STOP_COUNT] = {"eos", "max_tokens", "stop_string", "cancelled", "context_full"};
    return (unsigned)s < TD_GEN_STOP_COUNT ? names[s] : "?";
}

/* ------------------------------------------------------------------ lifecycle */

static td_status td_step_plain(td_generator *g, void *ctx, int32_t *out, int *n, int max_out)
{
    (void)ctx;
    (void)max_out;
    TD_TRY(td_generator_flush_pending(g));
    out[0] = td_sampler_sample(g->sampler, td_session_logits(g->s));
    *n = 1;
    return td_generator_set_pending(g, out, 1);
}

td_status td_generator_create(td_session *s, const td_tokenizer *t, td_sampler *sampler, td_generator **out)
{
    *out = NULL;
    const td_model *m = td_session_model(s);
    int64_t V = m->hp.vocab_size;
    if (td_sampler_n_vocab(sampler) != V)
        return td_fail(TD_E_ARG, "the sampler covers %lld tokens but the model has %lld",
                       (long long)td_sampler_n_vocab(sampler), (long long)V);
    if (td_tokenizer_n_tokens(t) > V)
        return td_fail(TD_E_FORMAT,
                       "the tokenizer (%s) has %d tokens but %s only scores %lld: they do not belong "
                       "together",
                       td_tokenizer_source(t), td_tokenizer_n_tokens(t), m->path, (long long)V);
    td_generator *g = td_calloc(1, sizeof *g);
    if (!g) return td_fail(TD_E_NOMEM, "out of memory");
    g->s = s;
    g->tok = t;
    g->sampler = sampler;
    g->step = td_step_plain;
    g->eos = td_tokenizer_eos(t);
    g->think_open = td_tokenizer_find(t, "<think>");
    g->think_close = td_tokenizer_find(t, "</think>");
    td_status st = td_detok_create(t, false, &g->detok);
    /* the cache's token list holds at most the context: sized once, so decoding never grows it */
    int64_t ctx = td_session_ctx(s);
    if (st == TD_OK && !(g->cache.ids = td_malloc((size_t)ctx * sizeof(int32_t))))
        st = td_fail(TD_E_NOMEM, "out of memory for a token list of %lld positions", (long long)ctx);
    g->cache.cap = g->cache.ids ? ctx : 0;
    if (st != TD_OK) {
        td_generator_free(g);
        return st;
    }
    *out = g;
    return TD_OK;
}

void td_generator_free(td_generator *g)
{
    if (!g) return;
    td_detok_free(g->detok);
    td_tokens_free(&g->cache);
    td_strbuf_free(&g->text);
    td_strbuf_free(&g->held);
    td_free(g);
}

void td_generator_set_step(td_generator *g, td_gen_step_fn fn, void *ctx)
{
    g->step = fn ? fn : td_step_plain;
    g->step_ctx = fn ? ctx : NULL;
}

void td_generator_reset(td_generator *g)
{
    g->cache.n = 0;
    g->n_pending = 0;
    td_session_rewind(g->s, 0);
}

td_session *td_generator_session(td_generator *g)
{
    return g->s;
}
int64_t td_generator_ctx_used(const td_generator *g)
{
    return td_session_pos(g->s) + g->n_pending;
}
td_sampler *td_generator_sampler(td_generator *g)
{
    return g->sampler;
}

const char *td_generator_text(const td_generator *g, size_t *len)
{
    if (len) *len = g->text.n;
    return g->text.p ? g->text.p : "";
}

void td_generator_count_drafts(td_generator *g, int64_t drafted, int64_t accepted)
{
    g->drafted += drafted;
    g->accepted += accepted;
}

/* ------------------------------------------------------------------ the cache */

static td_status td_cache_forward(td_generator *g, const int32_t *tokens, int64_t n, float *logits_all)
{
    TD_TRY(td_session_forward(g->s, tokens, n, logits_all, NULL));
    for (int64_t i = 0; i < n; i++) TD_TRY(td_tokens_push(&g->cache, tokens[i]));
    return TD_OK;
}

td_status td_generator_flush_pending(td_generator *g)
{
    if (g->n_pending == 0) return TD_OK;
    int n = g->n_pending;
    g->n_pending = 0;
    return td_cache_forward(g, g->pending, n, NULL);
}

td_status td_generator_set_pending(td_generator *g, const int32_t *tokens, int n)
{
    if (n < 0 || n > TD_GEN_MAX_PENDING)
        return td_fail(TD_E_ARG, "%d pending tokens (at most %d)", n, TD_GEN_MAX_PENDING);
    memmove(g->pending, tokens, (size_t)n * sizeof(int32_t));
    g->n_pending = n;
    return TD_OK;
}

int td_generator_pending(const td_generator *g, const int32_t **tokens)
{
    *tokens = g->pending;
    return g->n_pending;
}

td_status td_generator_forward(td_generator *g, const int32_t *tokens, int64_t n, float *logits_all)
{
    if (g->n_pending) return td_fail(TD_E_ARG, "%d tokens are pending: flush them before running more", g->n_pending);
    return td_cache_forward(g, tokens, n, logits_all);
}

td_status td_generator_rewind(td_generator *g, int64_t pos)
{
    TD_TRY(td_session_rewind(g->s, pos));
    if (g->cache.n > pos) g->cache.n = pos;
    return TD_OK;
}

/* ------------------------------------------------------------------ text out */

static void td_buf_put(td_generator *g, td_strbuf *b, const char *s, size_t n)
{
    td_strbuf_put(b, s, n);
    if (b->oom) g->oom = true;
}

static void td_emit(td_generator *g, td_gen_piece kind, const char *s, size_t n)
{
    if (n == 0) return;
    td_buf_put(g, &g->text, s, n);
    if (g->p->on_text) g->p->on_text(g->p->user, kind, s, n);
}

static void td_flush_held(td_generator *g)
{
    td_emit(g, g->held_kind, g->held.p, g->held.n);
    g->held.n = 0;
}

/* Streams text of one kind, holding back a tail that could begin a stop string. True when a stop string
 * appeared: the text before it is emitted, the rest dropped. */
static bool td_push_text(td_generator *g, td_gen_piece kind, const char *s, size_t n)
{
    const td_gen_params *p = g->p;
    if (p->n_stop == 0) {
        td_emit(g, kind, s, n);
        return false;
    }
    if (g->held.n && kind != g->held_kind) td_flush_held(g);
    g->held_kind = kind;
    td_buf_put(g, &g->held, s, n);
    if (g->oom) return false;
    const char *h = g->held.p;
    size_t hn = g->held.n, first = hn;
    for (int i = 0; i < p->n_stop; i++) {
        const char *hit = memmem(h, hn, p->stop[i], strlen(p->stop[i]));
        if (hit && (size_t)(hit - h) < first) first = (size_t)(hit - h);
    }
    if (first < hn) {
        td_emit(g, kind, h, first);
        g->held.n = 0;
        return true;
    }
    size_t keep = 0;
    for (int i = 0; i < p->n_stop; i++) {
        size_t sl = strlen(p->stop[i]);
        for (size_t L = sl - 1 < hn ? sl - 1 : hn; L > keep; L--)
            if (memcmp(h + hn - L, p->stop[i], L) == 0) {
                keep = L;
                break;
            }
    }
    td_emit(g, kind, h, hn - keep);
    memmove(g->held.p, h + hn - keep, keep);
    g->held.n = keep;
    return false;
}

/* Bytes of a character the detokenizer still holds become U+FFFD at a tag or at the end. */
static bool td_flush_detok(td_generator *g)
{
    size_t n;
    const char *s = td_detok_flush(g->detok, &n);
    return n ? td_push_text(g, g->in_think ? TD_PIECE_THINK : TD_PIECE_TEXT, s, n) : false;
}

/* One generated token: its text, or a reasoning tag. True when generation stops here. */
static bool td_take_token(td_generator *g, int32_t tok, td_gen_stop *stop)
{
    if (tok == g->eos && !g->p->ignore_eos) {
        *stop = TD_GEN_STOP_EOS;
        return true;
    }
    if (tok >= 0 && (tok == g->think_open || tok == g->think_close)) {
        if (td_flush_detok(g)) {
            *stop = TD_GEN_STOP_STRING;
            return true;
        }
        td_flush_held(g);
        bool open = tok == g->think_open;
        size_t n;
        const char *s = td_tokenizer_token_bytes(g->tok, tok, &n);
        td_emit(g, open ? TD_PIECE_THINK_OPEN : TD_PIECE_THINK_CLOSE, s, n);
        g->in_think = open;
        return false;
    }
    size_t n = 0;
    const char *s = tok < td_tokenizer_n_tokens(g->tok) ? td_detok_push(g->detok, tok, &n) : NULL;
    if (s && n && td_push_text(g, g->in_think ? TD_PIECE_THINK : TD_PIECE_TEXT, s, n)) {
        *stop = TD_GEN_STOP_STRING;
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------ the loop */

static td_status td_check_params(const td_generator *g, const int32_t *prompt, int64_t n, const td_gen_params *p)
{
    if (n < 1) return td_fail(TD_E_ARG, "the prompt is empty: give at least one token");
    if (p->max_tokens < 0) return td_fail(TD_E_ARG, "max tokens %lld is negative", (long long)p->max_tokens);
    if (p->n_stop < 0 || p->n_stop > TD_GEN_MAX_STOP || (p->n_stop && !p->stop))
        return td_fail(TD_E_ARG, "%d stop strings (0..%d)", p->n_stop, TD_GEN_MAX_STOP);
    for (int i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0]) return td_fail(TD_E_ARG, "stop string %d is empty", i);
    int64_t ctx = td_session_ctx(g->s);
    if (n > ctx)
        return td_fail(TD_E_ARG, "the prompt has %lld tokens but the context holds %lld (raise --ctx)", (long long)n,
                       (long long)ctx);
    (void)prompt;
    return TD_OK;
}

/* Rewinds to the longest prefix the cache shares with the prompt (keeping at least the last prompt token
 * to run, whose logits start the answer) and runs the rest. */
static td_status td_prefill(td_generator *g, const int32_t *prompt, int64_t n, td_gen_stats *st, bool *cancelled)
{
    if (td_session_pos(g->s) != g->cache.n) g->cache.n = 0; /* the session was used elsewhere */
    g->n_pending = 0;
    int64_t c = 0;
    while (c < g->cache.n && c < n - 1 && g->cache.ids[c] == prompt[c]) c++;
    TD_TRY(td_session_rewind(g->s, c));
    g->cache.n = c;
    st->reused_tokens = c;
    for (int64_t i = c; i < n; i += TD_GEN_PREFILL_CHUNK) {
        if (g->p->cancel && *g->p->cancel) {
            *cancelled = true;
            return TD_OK;
        }
        int64_t k = n - i < TD_GEN_PREFILL_CHUNK ? n - i : TD_GEN_PREFILL_CHUNK;
        TD_TRY(td_cache_forward(g, prompt + i, k, NULL));
        st->prompt_tokens += k;
    }
    return TD_OK;
}

static td_status td_decode(td_generator *g, td_tokens *out_tokens, td_gen_stats *st)
{
    const td_gen_params *p = g->p;
    int64_t ctx = td_session_ctx(g->s);
    int32_t buf[TD_GEN_MAX_PENDING];
    for (;;) {
        if (p->cancel && *p->cancel) {
            st->stop = TD_GEN_STOP_CANCELLED;
            return TD_OK;
        }
        if (td_session_pos(g->s) + g->n_pending > ctx) {
            st->stop = TD_GEN_STOP_CONTEXT;
            return TD_OK;
        }
        int64_t left = p->max_tokens ? p->max_tokens - st->gen_tokens : TD_GEN_MAX_PENDING;
        int max_out = left < TD_GEN_MAX_PENDING ? (int)left : TD_GEN_MAX_PENDING, k = 0;
        TD_TRY(g->step(g, g->step_ctx, buf, &k, max_out));
        if (k < 1 || k > max_out) return td_fail(TD_E_ARG, "a decode step returned %d tokens (1..%d)", k, max_out);
        st->steps++;
        for (int i = 0; i < k; i++) {
            st->gen_tokens++;
            if (out_tokens) TD_TRY(td_tokens_push(out_tokens, buf[i]));
            if (td_take_token(g, buf[i], &st->stop)) return TD_OK;
            if (p->max_tokens && st->gen_tokens >= p->max_tokens) {
                st->stop = TD_GEN_STOP_MAX_TOKENS;
                return TD_OK;
            }
        }
        if (g->oom) return td_fail(TD_E_NOMEM, "out of memory for the generated text");
    }
}

td_status td_generate(td_generator *g, const int32_t *prompt, int64_t n, const td_gen_params *p, td_tokens *out_tokens,
                      td_gen_stats *stats)
{
    td_gen_stats st = {.mtp_acceptance = NAN, .ctx_size = td_session_ctx(g->s)};
    TD_TRY(td_check_params(g, prompt, n, p));
    g->p = p;
    td_strbuf_clear(&g->text);
    td_strbuf_clear(&g->held);
    g->in_think = p->starts_thinking;
    g->oom = false;
    g->drafted = g->accepted = 0;
    td_detok_reset(g->detok);
    td_detok_show_special(g->detok, p->show_special);

    bool cancelled = false;
    double t0 = td_now();
    td_status rc = td_prefill(g, prompt, n, &st, &cancelled);
    double t1 = td_now();
    if (rc == TD_OK && cancelled)
        st.stop = TD_GEN_STOP_CANCELLED;
    else if (rc == TD_OK)
        rc = td_decode(g, out_tokens, &st);
    double t2 = td_now();
    if (rc == TD_OK && st.stop != TD_GEN_STOP_STRING && !td_flush_detok(g)) td_flush_held(g);
    if (rc == TD_OK && g->oom) rc = td_fail(TD_E_NOMEM, "out of memory for the generated text");

    st.prompt_s = t1 - t0;
    st.decode_s = t2 - t1;
    st.prompt_tok_s = st.prompt_s > 0 ? (double)st.prompt_tokens / st.prompt_s : 0;
    st.decode_tok_s = st.decode_s > 0 && st.gen_tokens ? (double)st.gen_tokens / st.decode_s : 0;
    st.tokens_per_step = st.steps ? (double)st.gen_tokens / (double)st.steps : 1.0;
    if (g->drafted > 0) st.mtp_acceptance = (double)g->accepted / (double)g->drafted;
    st.ctx_used = td_generator_ctx_used(g);
    if (stats) *stats = st;
    g->p = NULL;
    return rc;
}
