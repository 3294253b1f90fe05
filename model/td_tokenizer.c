/* td_tokenizer: building the tables from plain arrays, and the lookups everything else uses. */
#include "td_alloc.h"
#include "td_tokenizer_impl.h"

#include <stdio.h>
#include <string.h>

#define TD_TOK_MAX_TOKENS      (1 << 24)
#define TD_TOK_MAX_TOKEN_BYTES (1u << 16)

/* ------------------------------------------------------------------ byte-level alphabet */

/* GPT-2's bytes_to_unicode: the printable Latin-1 bytes stand for themselves; the other 68 bytes take
 * the code points 256, 257, ... in byte order. */
static bool td_bytelevel_is_self(unsigned b)
{
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
}

uint32_t td_bytelevel_char(uint8_t b)
{
    if (td_bytelevel_is_self(b)) return b;
    uint32_t n = 0;
    for (unsigned i = 0; i < b; i++) n += !td_bytelevel_is_self(i);
    return 256 + n;
}

int td_bytelevel_byte(uint32_t cp)
{
    if (cp < 256) return td_bytelevel_is_self(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t n = cp - 256;
    for (unsigned b = 0; b < 256; b++)
        if (!td_bytelevel_is_self(b) && n-- == 0) return (int)b;
    return -1;
}

/* ------------------------------------------------------------------ hashing */

uint64_t td_tok_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static uint32_t td_pow2_at_least(uint64_t n)
{
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

static td_status td_strmap_init(td_strmap *m, int64_t n)
{
    uint32_t cap = td_pow2_at_least((uint64_t)n * 2 + 1);
    m->slots = td_malloc((size_t)cap * sizeof(int32_t));
    if (!m->slots) return td_fail(TD_E_NOMEM, "out of memory for the tokenizer's vocabulary table");
    memset(m->slots, 0xff, (size_t)cap * sizeof(int32_t));
    m->mask = cap - 1;
    return TD_OK;
}

int32_t td_strmap_get(const td_tokenizer *t, const td_strmap *m, const char *s, size_t n)
{
    if (!m->slots) return -1;
    for (uint32_t i = (uint32_t)td_tok_hash(s, n) & m->mask;; i = (i + 1) & m->mask) {
        int32_t id = m->slots[i];
        if (id < 0) return -1;
        if (t->text_len[id] == n && memcmp(td_tok_text(t, id), s, n) == 0) return id;
    }
}

/* Inserts id unless its text is present already (the first entry wins). */
static void td_strmap_put(td_tokenizer *t, td_strmap *m, int32_t id)
{
    const char *s = td_tok_text(t, id);
    size_t n = t->text_len[id];
    for (uint32_t i = (uint32_t)td_tok_hash(s, n) & m->mask;; i = (i + 1) & m->mask) {
        int32_t o = m->slots[i];
        if (o < 0) {
            m->slots[i] = id;
            return;
        }
        if (t->text_len[o] == n && memcmp(td_tok_text(t, o), s, n) == 0) return;
    }
}

static uint32_t td_pair_hash(uint64_t key)
{
    key *= 0x9e3779b97f4a7c15ull;
    return (uint32_t)(key >> 32);
}

static td_status td_mergemap_init(td_mergemap *m, int64_t n)
{
    uint32_t cap = td_pow2_at_least((uint64_t)n * 2 + 1);
    m->keys = td_calloc(cap, sizeof(uint64_t));
    m->rank = td_malloc((size_t)cap * sizeof(int32_t));
    m->id = td_malloc((size_t)cap * sizeof(int32_t));
    if (!m->keys || !m->rank || !m->id) return td_fail(TD_E_NOMEM, "out of memory for the tokenizer's merge table");
    m->mask = cap - 1;
    return TD_OK;
}

/* A later merge of the same pair replaces the earlier one, as a hash map built from the list does. */
static void td_mergemap_put(td_mergemap *m, int32_t left, int32_t right, int32_t rank, int32_t id)
{
    uint64_t key = ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) + 1;
    for (uint32_t i = td_pair_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == 0 || m->keys[i] == key) {
            m->keys[i] = key;
            m->rank[i] = rank;
            m->id[i] = id;
            return;
        }
    }
}

/* ------------------------------------------------------------------ building */

static size_t td_vocab_token_len(const td_tokenizer_vocab *v, int32_t i)
{
    if (!v->tokens[i]) return 0;
    return v->token_lens ? v->token_lens[i] : strlen(v->tokens[i]);
}

/* Decodes one code point of valid UTF-8 at s (n bytes left); returns its length, 0 if invalid. */
static size_t td_utf8_next(const uint8_t *s, size_t n, uint32_t *cp)
{
    size_t len = td_utf8_valid_prefix(s, n < 4 ? n : 4);
    if (len == 0) return 0;
    uint8_t c = s[0];
    size_t k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (k > len) return 0;
    uint32_t v = k == 1 ? c : k == 2 ? (c & 0x1Fu) : k == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t i = 1; i < k; i++) v = v << 6 | (s[i] & 0x3Fu);
    *cp = v;
    return k;
}

/* A token decodes to the bytes its characters stand for in the byte-level alphabet; a token with any
 * character outside it (DeepSeek's "<｜User｜>") decodes to its own UTF-8, as tokenizers' ByteLevel
 * decoder does. Writes into dst (room for n bytes) and returns the length. */
static size_t td_token_decoded(const char *s, size_t n, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = td_utf8_next((const uint8_t *)s + i, n - i, &cp);
        int b = k ? td_bytelevel_byte(cp) : -1;
        if (b < 0) {
            memcpy(dst, s, n);
            return n;
        }
        dst[o++] = (char)b;
        i += k;
    }
    return o;
}

static td_status td_tok_fill_texts(td_tokenizer *t, const td_tokenizer_vocab *v)
{
    uint64_t total = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        size_t n = td_vocab_token_len(v, i);
        if (n > TD_TOK_MAX_TOKEN_BYTES)
            return td_fail(TD_E_FORMAT, "%s: token %d is %zu bytes long (more than %u); the vocabulary is corrupt",
                           v->source, i, n, TD_TOK_MAX_TOKEN_BYTES);
        total += 2 * (uint64_t)n;
    }
    t->text = td_malloc((size_t)total + 1);
    if (!t->text)
        return td_fail(TD_E_NOMEM, "out of memory for the tokenizer's %llu bytes of token text",
                       (unsigned long long)total);
    uint64_t off = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        size_t n = td_vocab_token_len(v, i);
        uint8_t a = v->tokens[i] ? (v->attrs ? v->attrs[i] : TD_TOKEN_NORMAL) : TD_TOKEN_UNUSED;
        if (a >= TD_TOKEN_ATTR_COUNT)
            return td_fail(TD_E_FORMAT, "%s: token %d has attribute %u (0..%d expected)", v->source, i, a,
                           TD_TOKEN_ATTR_COUNT - 1);
        if (a != TD_TOKEN_UNUSED && n == 0)
            return td_fail(TD_E_FORMAT, "%s: token %d is an empty string; every token needs at least one byte",
                           v->source, i);
        t->attr[i] = a;
        t->added_flags[i] = v->added_flags && (a == TD_TOKEN_SPECIAL || a == TD_TOKEN_ADDED) ? v->added_flags[i] : 0;
        t->text_off[i] = off;
        t->text_len[i] = (uint32_t)n;
        if (n) memcpy(t->text + off, v->tokens[i], n);
        off += n;
        size_t d = a == TD_TOKEN_UNUSED ? 0 : td_token_decoded(v->tokens[i], n, t->text + off);
        t->dec_off[i] = off;
        t->dec_len[i] = (uint32_t)d;
        if (d > t->max_dec_len) t->max_dec_len = d;
        off += d;
    }
    t->text[off] = '\0';
    return TD_OK;
}

static td_status td_tok_build_maps(td_tokenizer *t)
{
    int64_t n_added = 0;
    for (int32_t i = 0; i < t->n_tokens; i++) n_added += t->attr[i] == TD_TOKEN_SPECIAL || t->attr[i] == TD_TOKEN_ADDED;
    TD_TRY(td_strmap_init(&t->vocab, t->n_tokens));
    TD_TRY(td_strmap_init(&t->added, n_added));
    /* normal tokens first, so that merges find them even if an added token has the same text */
    for (int32_t i = 0; i < t->n_tokens; i++)
        if (t->attr[i] == TD_TOKEN_NORMAL) td_strmap_put(t, &t->vocab, i);
    t->added_lens = td_malloc((size_t)(n_added + 1) * sizeof(uint32_t));
    if (!t->added_lens) return td_fail(TD_E_NOMEM, "out of memory");
    for (int32_t i = 0; i < t->n_tokens; i++) {
        if (t->attr[i] != TD_TOKEN_SPECIAL && t->attr[i] != TD_TOKEN_ADDED) continue;
        td_strmap_put(t, &t->vocab, i);
        td_strmap_put(t, &t->added, i);
        t->added_first[(uint8_t)td_tok_text(t, i)[0]] = 1;
        if (t->added_flags[i] & TD_ADDED_NORMALIZED) t->any_normalized_added = true;
        uint32_t len = t->text_len[i];
        int k = 0;
        while (k < t->n_added_lens && t->added_lens[k] > len) k++;
        if (k < t->n_added_lens && t->added_lens[k] == len) continue;
        memmove(t->added_lens + k + 1, t->added_lens + k, (size_t)(t->n_added_lens - k) * sizeof(uint32_t));
        t->added_lens[k] = len;
        t->n_added_lens++;
    }
    for (int b = 0; b < 256; b++) {
        char u[4];
        uint32_t cp = td_bytelevel_char((uint8_t)b);
        size_t n = cp < 0x80 ? 1 : 2; /* the alphabet stays below U+0800 */
        if (n == 1)
            u[0] = (char)cp;
        else {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
        }
        t->byte_id[b] = td_strmap_get(t, &t->vocab, u, n);
    }
    return TD_OK;
}

static td_status td_tok_build_merges(td_tokenizer *t, const td_tokenizer_vocab *v)
{
    TD_TRY(td_mergemap_init(&t->merges, v->n_merges));
    char *buf = NULL;
    size_t cap = 0;
    td_status st = TD_OK;
    for (int32_t r = 0; r < v->n_merges && st == TD_OK; r++) {
        const char *m = v->merges[r];
        if (!m) {
            st = td_fail(TD_E_FORMAT, "%s: merge %d is missing", v->source, r);
            break;
        }
        size_t n = v->merge_lens ? v->merge_lens[r] : strlen(m);
        const char *sp = n > 1 ? memchr(m + 1, ' ', n - 1) : NULL;
        if (!sp || sp + 1 == m + n || memchr(sp + 1, ' ', (size_t)(m + n - sp - 1))) {
            st = td_fail(TD_E_FORMAT, "%s: merge %d ('%.*s') is not two tokens separated by one space", v->source, r,
                         (int)(n < 80 ? n : 80), m);
            break;
        }
        size_t nl = (size_t)(sp - m), nr = n - nl - 1;
        int32_t left = td_strmap_get(t, &t->vocab, m, nl), right = td_strmap_get(t, &t->vocab, sp + 1, nr);
        if (nl + nr > cap) {
            cap = (nl + nr) * 2;
            char *nb = td_realloc(buf, cap);
            if (!nb) {
                st = td_fail(TD_E_NOMEM, "out of memory");
                break;
            }
            buf = nb;
        }
        memcpy(buf, m, nl);
        memcpy(buf + nl, sp + 1, nr);
        int32_t merged = td_strmap_get(t, &t->vocab, buf, nl + nr);
        if (left < 0 || right < 0 || merged < 0) {
            const char *which = left < 0 ? "its left part" : right < 0 ? "its right part" : "the merged token";
            st = td_fail(TD_E_FORMAT, "%s: merge %d ('%.*s'): %s is not in the vocabulary", v->source, r,
                         (int)(n < 80 ? n : 80), m, which);
            break;
        }
        td_mergemap_put(&t->merges, left, right, r, merged);
    }
    td_free(buf);
    return st;
}

static td_status td_tok_check_id_field(const td_tokenizer_vocab *v, int32_t id, const char *what)
{
    if (id < -1 || id >= v->n_tokens)
        return td_fail(TD_E_FORMAT, "%s: the %s id %d is outside the vocabulary (0..%d)", v->source, what, id,
                       v->n_tokens - 1);
    return TD_OK;
}

static td_status td_tok_build(td_tokenizer *t, const td_tokenizer_vocab *v)
{
    t->n_tokens = v->n_tokens;
    size_t n = (size_t)v->n_tokens;
    t->text_off = td_malloc(n * sizeof(uint64_t));
    t->dec_off = td_malloc(n * sizeof(uint64_t));
    t->text_len = td_malloc(n * sizeof(uint32_t));
    t->dec_len = td_malloc(n * sizeof(uint32_t));
    t->attr = td_malloc(n);
    t->added_flags = td_malloc(n);
    t->source = td_strdup(v->source ? v->source : "tokenizer");
    if (!t->text_off || !t->dec_off || !t->text_len || !t->dec_len || !t->attr || !t->added_flags || !t->source)
        return td_fail(TD_E_NOMEM, "out of memory for a tokenizer of %d tokens", v->n_tokens);
    if (v->chat_template && !(t->chat_template = td_strdup(v->chat_template)))
        return td_fail(TD_E_NOMEM, "out of memory");
    TD_TRY(td_tok_check_id_field(v, v->unk_id, "unknown-token"));
    TD_TRY(td_tok_check_id_field(v, v->bos_id, "BOS"));
    TD_TRY(td_tok_check_id_field(v, v->eos_id, "EOS"));
    TD_TRY(td_tok_check_id_field(v, v->pad_id, "padding"));
    t->unk_id = v->unk_id;
    t->bos_id = v->bos_id;
    t->eos_id = v->eos_id;
    t->pad_id = v->pad_id;
    t->add_bos = v->add_bos && v->bos_id >= 0;
    t->add_eos = v->add_eos && v->eos_id >= 0;
    t->ignore_merges = v->ignore_merges;
    TD_TRY(td_tok_fill_texts(t, v));
    TD_TRY(td_tok_build_maps(t));
    TD_TRY(td_tok_build_merges(t, v));
    if (v->pretok == TD_PRETOK_DEEPSEEK_V3) return td_pretok_compile(&t->pretok, td_pretok_deepseek_v3, 3, t->source);
    return td_pretok_compile(&t->pretok, v->split_patterns, v->n_split_patterns, t->source);
}

td_status td_tokenizer_create(const td_tokenizer_vocab *vocab, td_tokenizer **out)
{
    *out = NULL;
    td_tokenizer_vocab named = *vocab;
    if (!named.source) named.source = "tokenizer";
    const td_tokenizer_vocab *v = &named;
    const char *src = v->source;
    if (v->n_tokens < 1 || v->n_tokens > TD_TOK_MAX_TOKENS)
        return td_fail(TD_E_FORMAT, "%s: %d tokens is out of range (1..%d)", src, v->n_tokens, TD_TOK_MAX_TOKENS);
    if (!v->tokens) return td_fail(TD_E_ARG, "%s: no token list", src);
    if (v->n_merges < 0 || (v->n_merges > 0 && !v->merges))
        return td_fail(TD_E_FORMAT, "%s: bad merge list (%d merges)", src, v->n_merges);
    if ((unsigned)v->pretok >= TD_PRETOK_KIND_COUNT) return td_fail(TD_E_ARG, "%s: unknown pre-tokenizer", src);
    td_tokenizer *t = td_calloc(1, sizeof *t);
    if (!t) return td_fail(TD_E_NOMEM, "out of memory");
    td_status st = td_tok_build(t, v);
    if (st != TD_OK) {
        td_tokenizer_free(t);
        return st;
    }
    *out = t;
    return TD_OK;
}

void td_tokenizer_free(td_tokenizer *t)
{
    if (!t) return;
    td_pretok_free(&t->pretok);
    td_free(t->text);
    td_free(t->text_off);
    td_free(t->text_len);
    td_free(t->dec_off);
    td_free(t->dec_len);
    td_free(t->attr);
    td_free(t->added_flags);
    td_free(t->vocab.slots);
    td_free(t->added.slots);
    td_free(t->added_lens);
    td_free(t->merges.keys);
    td_free(t->merges.rank);
    td_free(t->merges.id);
    td_free(t->chat_template);
    td_free(t->source);
    td_free(t);
}

bool td_pretok_from_name(const char *name, td_pretok_kind *out)
{
    /* the name llama.cpp's converter writes for DeepSeek-V3, R1 and V3.1 */
    if (strcmp(name, "deepseek-v3") != 0) return false;
    *out = TD_PRETOK_DEEPSEEK_V3;
    return true;
}

/* ------------------------------------------------------------------ accessors */

int32_t td_tokenizer_n_tokens(const td_tokenizer *t)
{
    return t->n_tokens;
}
int32_t td_tokenizer_bos(const td_tokenizer *t)
{
    return t->bos_id;
}
int32_t td_tokenizer_eos(const td_tokenizer *t)
{
    return t->eos_id;
}
const char *td_tokenizer_chat_template(const td_tokenizer *t)
{
    return t->chat_template;
}
const char *td_tokenizer_source(const td_tokenizer *t)
{
    return t->source;
}
size_t td_tokenizer_max_token_bytes(const td_tokenizer *t)
{
    return t->max_dec_len;
}

td_token_attr td_tokenizer_attr(const td_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_tokens ? (td_token_attr)t->attr[id] : TD_TOKEN_UNUSED;
}

int32_t td_tokenizer_find(const td_tokenizer *t, const char *text)
{
    return td_strmap_get(t, &t->vocab, text, strlen(text));
}

const char *td_tokenizer_token_bytes(const td_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_tokens) return NULL;
    *len = t->dec_len[id];
    return t->text + t->dec_off[id];
}

td_status td_tokenizer_check_id(const td_tokenizer *t, int64_t id)
{
    if (id < 0 || id >= t->n_tokens)
        return td_fail(TD_E_ARG, "token id %lld is outside the vocabulary of %s (0..%d)", (long long)id, t->source,
                       t->n_tokens - 1);
    return TD_OK;
}

td_status td_tokens_push(td_tokens *v, int32_t id)
{
    if (v->n == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = td_realloc(v->ids, (size_t)cap * sizeof(int32_t));
        if (!p) return td_fail(TD_E_NOMEM, "out of memory for %lld token ids", (long long)cap);
        v->ids = p;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return TD_OK;
}

void td_tokens_free(td_tokens *v)
{
    td_free(v->ids);
    *v = (td_tokens){0};
}
