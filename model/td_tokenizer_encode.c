/* Encoding text to ids: added tokens first, then the pre-tokenizer, then BPE on each piece. */
#include "td_alloc.h"
#include "td_tokenizer_impl.h"

#include <string.h>

typedef struct td_encode_ctx {
    const td_tokenizer *t;
    td_pretok_run *run;
    td_bpe_scratch *bpe;
    td_tokens *out;
} td_encode_ctx;

static td_status td_encode_piece(void *ctx, const char *s, size_t n)
{
    td_encode_ctx *c = ctx;
    return td_bpe_encode_piece(c->t, c->bpe, s, n, c->out);
}

/* Unicode White_Space, which lstrip/rstrip of an added token swallow. */
static bool td_is_white_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* The code point that ends just before s[end] (valid UTF-8), and its length. */
static size_t td_prev_char(const char *s, size_t begin, size_t end, uint32_t *cp)
{
    size_t i = end - 1;
    while (i > begin && ((uint8_t)s[i] & 0xC0) == 0x80) i--;
    size_t k = end - i;
    uint8_t c = (uint8_t)s[i];
    uint32_t v = k == 1 ? c : k == 2 ? (c & 0x1Fu) : k == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t j = 1; j < k; j++) v = v << 6 | ((uint8_t)s[i + j] & 0x3Fu);
    *cp = v;
    return k;
}

static size_t td_next_char(const char *s, size_t i, uint32_t *cp)
{
    uint8_t c = (uint8_t)s[i];
    size_t k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    uint32_t v = k == 1 ? c : k == 2 ? (c & 0x1Fu) : k == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t j = 1; j < k; j++) v = v << 6 | ((uint8_t)s[i + j] & 0x3Fu);
    *cp = v;
    return k;
}

/* The longest added token of this pass (normalized or not) that starts at s[i], or -1. */
static int32_t td_added_at(const td_tokenizer *t, const char *s, size_t i, size_t end, bool normalized, size_t *len)
{
    if (!t->added_first[(uint8_t)s[i]]) return -1;
    for (int k = 0; k < t->n_added_lens; k++) {
        size_t L = t->added_lens[k];
        if (i + L > end) continue;
        int32_t id = td_strmap_get(t, &t->added, s + i, L);
        if (id >= 0 && ((t->added_flags[id] & TD_ADDED_NORMALIZED) != 0) == normalized) {
            *len = L;
            return id;
        }
    }
    return -1;
}

/* Splits s[begin, end) at the added tokens of one pass; the stretches between go to the next pass (the
 * normalized added tokens), then to the pre-tokenizer. */
static td_status td_encode_pass(td_encode_ctx *c, const char *s, size_t begin, size_t end, int pass)
{
    const td_tokenizer *t = c->t;
    bool normalized = pass == 1;
    bool last_pass = pass == 1 || !t->any_normalized_added;
    size_t start = begin;
    for (size_t i = begin; i < end;) {
        size_t L;
        int32_t id = t->n_added_lens ? td_added_at(t, s, i, end, normalized, &L) : -1;
        if (id < 0) {
            i++;
            continue;
        }
        size_t ms = i, me = i + L;
        uint32_t cp;
        if (t->added_flags[id] & TD_ADDED_LSTRIP)
            for (size_t k; ms > start && (k = td_prev_char(s, start, ms, &cp)) && td_is_white_space(cp);) ms -= k;
        if (t->added_flags[id] & TD_ADDED_RSTRIP)
            for (size_t k; me < end && (k = td_next_char(s, me, &cp)) && td_is_white_space(cp);) me += k;
        if (ms > start) {
            if (last_pass)
                TD_TRY(td_pretok_split(&t->pretok, c->run, s + start, ms - start, td_encode_piece, c));
            else
                TD_TRY(td_encode_pass(c, s, start, ms, 1));
        }
        TD_TRY(td_tokens_push(c->out, id));
        start = i = me;
    }
    if (end > start) {
        if (last_pass) return td_pretok_split(&t->pretok, c->run, s + start, end - start, td_encode_piece, c);
        return td_encode_pass(c, s, start, end, 1);
    }
    return TD_OK;
}

td_status td_tokenizer_encode(const td_tokenizer *t, const char *text, size_t len, bool add_special, td_tokens *out)
{
    size_t valid = td_utf8_valid_prefix((const uint8_t *)text, len);
    if (valid != len)
        return td_fail(TD_E_FORMAT,
                       "the text is not valid UTF-8 at byte %zu (0x%02x); convert it to UTF-8 first "
                       "(e.g. with iconv)",
                       valid, (uint8_t)text[valid]);
    if (add_special && t->add_bos) TD_TRY(td_tokens_push(out, t->bos_id));
    td_encode_ctx c = {.t = t, .out = out};
    td_status st = td_pretok_run_create(&t->pretok, &c.run);
    if (st == TD_OK) st = td_bpe_scratch_create(&c.bpe);
    if (st == TD_OK) st = td_encode_pass(&c, text, 0, len, 0);
    if (st == TD_OK && add_special && t->add_eos) st = td_tokens_push(out, t->eos_id);
    td_bpe_scratch_free(c.bpe);
    td_pretok_run_free(c.run);
    return st;
}
