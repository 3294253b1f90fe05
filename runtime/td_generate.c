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
    td_answer *out; /* the text of the current answer */
    td_tokens cache; /* the tokens at positions 0..pos-1 of the session */
    int32_t pending[TD_GEN_MAX_PENDING];
    int n_pending;
    td_gen_step_fn step;
    void *step_ctx;
    /* per call */
    const td_gen_params *p;
    td_answer_params sp;
    int64_t drafted, accepted;
};

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
    td_status st = td_answer_create(t, &g->out);
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
    td_answer_free(g->out);
    td_tokens_free(&g->cache);
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
    return td_answer_text(g->out, len);
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

/* ------------------------------------------------------------------ the loop */

static td_status td_check_params(const td_generator *g, const int32_t *prompt, int64_t n, const td_gen_params *p)
{
    if (n < 1) return td_fail(TD_E_ARG, "the prompt is empty: give at least one token");
    if (p->max_tokens < 0) return td_fail(TD_E_ARG, "max tokens %lld is negative", (long long)p->max_tokens);
    td_answer_params sp = {.stop = p->stop, .n_stop = p->n_stop};
    TD_TRY(td_answer_check(&sp));
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
            if (td_answer_take(g->out, buf[i], &st->stop)) return TD_OK;
            if (p->max_tokens && st->gen_tokens >= p->max_tokens) {
                st->stop = TD_GEN_STOP_MAX_TOKENS;
                return TD_OK;
            }
        }
        if (td_answer_oom(g->out)) return td_fail(TD_E_NOMEM, "out of memory for the generated text");
    }
}

td_status td_generate(td_generator *g, const int32_t *prompt, int64_t n, const td_gen_params *p, td_tokens *out_tokens,
                      td_gen_stats *stats)
{
    td_gen_stats st = {.mtp_acceptance = NAN, .ctx_size = td_session_ctx(g->s)};
    TD_TRY(td_check_params(g, prompt, n, p));
    g->p = p;
    g->sp = (td_answer_params){.stop = p->stop,
                                   .n_stop = p->n_stop,
                                   .show_special = p->show_special,
                                   .ignore_eos = p->ignore_eos,
                                   .starts_thinking = p->starts_thinking,
                                   .on_text = p->on_text,
                                   .user = p->user};
    td_answer_begin(g->out, &g->sp);
    g->drafted = g->accepted = 0;

    bool cancelled = false;
    double t0 = td_now();
    td_status rc = td_prefill(g, prompt, n, &st, &cancelled);
    double t1 = td_now();
    if (rc == TD_OK && cancelled)
        st.stop = TD_GEN_STOP_CANCELLED;
    else if (rc == TD_OK)
        rc = td_decode(g, out_tokens, &st);
    double t2 = td_now();
    if (rc == TD_OK) td_answer_end(g->out, st.stop);
    if (rc == TD_OK && td_answer_oom(g->out)) rc = td_fail(TD_E_NOMEM, "out of memory for the generated text");

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
