/* Decoding ids to text: whole sequences, and streaming without ever cutting a UTF-8 character. */
#include "td_alloc.h"
#include "td_tokenizer_impl.h"

#include <string.h>

/* One sequence at s (n > 0 bytes left), after Unicode's table of well-formed UTF-8 (3-7):
 * k > 0: a complete character of k bytes; 0: a valid start cut off by the end of the input;
 * -m: ill-formed, and its maximal subpart (what one U+FFFD replaces) is m bytes. */
static int td_utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c == 0xE0)
        need = 2, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC)
        need = 2;
    else if (c == 0xED)
        need = 2, hi = 0x9F;
    else if (c == 0xEE || c == 0xEF)
        need = 2;
    else if (c == 0xF0)
        need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3)
        need = 3;
    else if (c == 0xF4)
        need = 3, hi = 0x8F;
    else
        return -1;
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) return 0;
        if (s[i] < lo || s[i] > hi) return -i;
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

size_t td_utf8_valid_prefix(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int k = td_utf8_seq(s + i, n - i);
        if (k <= 0) break;
        i += (size_t)k;
    }
    return i;
}

/* Converts src[0..n) and returns the bytes written; *consumed stops before a character cut off by the
 * end when hold_tail is set (the streaming case), else such a tail becomes one U+FFFD. */
static size_t td_utf8_convert(const uint8_t *src, size_t n, char *dst, bool hold_tail, size_t *consumed)
{
    static const char repl[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    size_t i = 0, o = 0;
    while (i < n) {
        int k = td_utf8_seq(src + i, n - i);
        if (k > 0) {
            memcpy(dst + o, src + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else if (k == 0 && hold_tail) {
            break;
        } else {
            memcpy(dst + o, repl, 3);
            o += 3;
            i += k == 0 ? n - i : (size_t)-k;
        }
    }
    *consumed = i;
    return o;
}

size_t td_utf8_lossy(const uint8_t *src, size_t n, char *dst)
{
    size_t used;
    return td_utf8_convert(src, n, dst, false, &used);
}

static bool td_token_shown(const td_tokenizer *t, int32_t id, bool show_special)
{
    return t->attr[id] != TD_TOKEN_UNUSED && (show_special || t->attr[id] != TD_TOKEN_SPECIAL);
}

td_status td_tokenizer_decode(const td_tokenizer *t, const int32_t *ids, int64_t n, bool show_special, char **out,
                              size_t *out_len)
{
    *out = NULL;
    if (out_len) *out_len = 0;
    if (n < 0) return td_fail(TD_E_ARG, "negative token count %lld", (long long)n);
    size_t raw_len = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_tokens)
            return td_fail(TD_E_ARG, "token id %d at index %lld is outside the vocabulary of %s (0..%d)", ids[i],
                           (long long)i, t->source, t->n_tokens - 1);
        if (td_token_shown(t, ids[i], show_special)) raw_len += t->dec_len[ids[i]];
    }
    uint8_t *raw = td_malloc(raw_len + 1);
    char *text = td_malloc(3 * raw_len + 1);
    if (!raw || !text) {
        td_free(raw);
        td_free(text);
        return td_fail(TD_E_NOMEM, "out of memory decoding %lld tokens", (long long)n);
    }
    size_t o = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!td_token_shown(t, ids[i], show_special)) continue;
        memcpy(raw + o, t->text + t->dec_off[ids[i]], t->dec_len[ids[i]]);
        o += t->dec_len[ids[i]];
    }
    size_t len = td_utf8_lossy(raw, raw_len, text);
    text[len] = '\0';
    td_free(raw);
    *out = text;
    if (out_len) *out_len = len;
    return TD_OK;
}

/* ------------------------------------------------------------------ streaming */

struct td_detok {
    const td_tokenizer *t;
    bool show_special;
    uint8_t *in; /* held-back bytes (< 4) followed by the new token's bytes */
    size_t held;
    char *out; /* 3 bytes per input byte at most */
};

td_status td_detok_create(const td_tokenizer *t, bool show_special, td_detok **out)
{
    *out = NULL;
    td_detok *d = td_calloc(1, sizeof *d);
    size_t cap = t->max_dec_len + 4;
    if (d) {
        d->in = td_malloc(cap);
        d->out = td_malloc(3 * cap + 1);
    }
    if (!d || !d->in || !d->out) {
        td_detok_free(d);
        return td_fail(TD_E_NOMEM, "out of memory for a streaming decoder");
    }
    d->t = t;
    d->show_special = show_special;
    *out = d;
    return TD_OK;
}

void td_detok_free(td_detok *d)
{
    if (!d) return;
    td_free(d->in);
    td_free(d->out);
    td_free(d);
}

void td_detok_reset(td_detok *d)
{
    d->held = 0;
}
void td_detok_show_special(td_detok *d, bool show)
{
    d->show_special = show;
}

const char *td_detok_push(td_detok *d, int32_t id, size_t *len)
{
    const td_tokenizer *t = d->t;
    *len = 0;
    if (id < 0 || id >= t->n_tokens) return NULL;
    d->out[0] = '\0';
    if (!td_token_shown(t, id, d->show_special)) return d->out;
    size_t n = d->held + t->dec_len[id];
    memcpy(d->in + d->held, t->text + t->dec_off[id], t->dec_len[id]);
    size_t used;
    *len = td_utf8_convert(d->in, n, d->out, true, &used);
    d->out[*len] = '\0';
    d->held = n - used;
    memmove(d->in, d->in + used, d->held);
    return d->out;
}

const char *td_detok_flush(td_detok *d, size_t *len)
{
    *len = td_utf8_lossy(d->in, d->held, d->out);
    d->out[*len] = '\0';
    d->held = 0;
    return d->out;
}
