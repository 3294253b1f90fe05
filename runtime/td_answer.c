#include "td_answer.h"

#include "td_alloc.h"
#include "td_strbuf.h"

#include <string.h>

struct td_answer {
    const td_tokenizer *tok;
    td_detok *detok;
    int32_t eos, think_open, think_close;
    /* per answer */
    const td_answer_params *p;
    td_strbuf text; /* everything emitted */
    td_strbuf held; /* text that may be the start of a stop string */
    td_gen_piece held_kind;
    bool in_think;
    bool oom;
};

const char *td_gen_stop_name(td_gen_stop s)
{
    static const char *names[TD_GEN_STOP_COUNT] = {"eos", "max_tokens", "stop_string", "cancelled", "context_full"};
    return (unsigned)s < TD_GEN_STOP_COUNT ? names[s] : "?";
}

td_status td_answer_create(const td_tokenizer *t, td_answer **out)
{
    *out = NULL;
    td_answer *x = td_calloc(1, sizeof *x);
    if (!x) return td_fail(TD_E_NOMEM, "out of memory");
    x->tok = t;
    x->eos = td_tokenizer_eos(t);
    x->think_open = td_tokenizer_find(t, "<think>");
    x->think_close = td_tokenizer_find(t, "</think>");
    td_status st = td_detok_create(t, false, &x->detok);
    if (st != TD_OK) {
        td_answer_free(x);
        return st;
    }
    *out = x;
    return TD_OK;
}

void td_answer_free(td_answer *x)
{
    if (!x) return;
    td_detok_free(x->detok);
    td_strbuf_free(&x->text);
    td_strbuf_free(&x->held);
    td_free(x);
}

td_status td_answer_check(const td_answer_params *p)
{
    if (p->n_stop < 0 || p->n_stop > TD_GEN_MAX_STOP || (p->n_stop && !p->stop))
        return td_fail(TD_E_ARG, "%d stop strings (0..%d)", p->n_stop, TD_GEN_MAX_STOP);
    for (int i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0]) return td_fail(TD_E_ARG, "stop string %d is empty", i);
    return TD_OK;
}

void td_answer_begin(td_answer *x, const td_answer_params *p)
{
    x->p = p;
    td_strbuf_clear(&x->text);
    td_strbuf_clear(&x->held);
    x->in_think = p->starts_thinking;
    x->oom = false;
    td_detok_reset(x->detok);
    td_detok_show_special(x->detok, p->show_special);
}

bool td_answer_oom(const td_answer *x)
{
    return x->oom;
}

const char *td_answer_text(const td_answer *x, size_t *len)
{
    if (len) *len = x->text.n;
    return x->text.p ? x->text.p : "";
}

/* ------------------------------------------------------------------ text out */

static void td_buf_put(td_answer *x, td_strbuf *b, const char *s, size_t n)
{
    td_strbuf_put(b, s, n);
    if (b->oom) x->oom = true;
}

static void td_emit(td_answer *x, td_gen_piece kind, const char *s, size_t n)
{
    if (n == 0) return;
    td_buf_put(x, &x->text, s, n);
    if (x->p->on_text) x->p->on_text(x->p->user, kind, s, n);
}

static void td_flush_held(td_answer *x)
{
    td_emit(x, x->held_kind, x->held.p, x->held.n);
    x->held.n = 0;
}

/* Streams text of one kind, holding back a tail that could begin a stop string. True when a stop string
 * appeared: the text before it is emitted, the rest dropped. */
static bool td_push_text(td_answer *x, td_gen_piece kind, const char *s, size_t n)
{
    const td_answer_params *p = x->p;
    if (p->n_stop == 0) {
        td_emit(x, kind, s, n);
        return false;
    }
    if (x->held.n && kind != x->held_kind) td_flush_held(x);
    x->held_kind = kind;
    td_buf_put(x, &x->held, s, n);
    if (x->oom) return false;
    const char *h = x->held.p;
    size_t hn = x->held.n, first = hn;
    for (int i = 0; i < p->n_stop; i++) {
        const char *hit = memmem(h, hn, p->stop[i], strlen(p->stop[i]));
        if (hit && (size_t)(hit - h) < first) first = (size_t)(hit - h);
    }
    if (first < hn) {
        td_emit(x, kind, h, first);
        x->held.n = 0;
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
    td_emit(x, kind, h, hn - keep);
    memmove(x->held.p, h + hn - keep, keep);
    x->held.n = keep;
    return false;
}

/* Bytes of a character the detokenizer still holds become U+FFFD at a tag or at the end. */
static bool td_flush_detok(td_answer *x)
{
    size_t n;
    const char *s = td_detok_flush(x->detok, &n);
    return n ? td_push_text(x, x->in_think ? TD_PIECE_THINK : TD_PIECE_TEXT, s, n) : false;
}

bool td_answer_take(td_answer *x, int32_t tok, td_gen_stop *stop)
{
    if (tok == x->eos && !x->p->ignore_eos) {
        *stop = TD_GEN_STOP_EOS;
        return true;
    }
    if (tok >= 0 && (tok == x->think_open || tok == x->think_close)) {
        if (td_flush_detok(x)) {
            *stop = TD_GEN_STOP_STRING;
            return true;
        }
        td_flush_held(x);
        bool open = tok == x->think_open;
        size_t n;
        const char *s = td_tokenizer_token_bytes(x->tok, tok, &n);
        td_emit(x, open ? TD_PIECE_THINK_OPEN : TD_PIECE_THINK_CLOSE, s, n);
        x->in_think = open;
        return false;
    }
    size_t n = 0;
    const char *s = tok < td_tokenizer_n_tokens(x->tok) ? td_detok_push(x->detok, tok, &n) : NULL;
    if (s && n && td_push_text(x, x->in_think ? TD_PIECE_THINK : TD_PIECE_TEXT, s, n)) {
        *stop = TD_GEN_STOP_STRING;
        return true;
    }
    return false;
}

void td_answer_end(td_answer *x, td_gen_stop stop)
{
    if (stop != TD_GEN_STOP_STRING && !td_flush_detok(x)) td_flush_held(x);
}
