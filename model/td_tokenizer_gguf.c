/* The vocabulary embedded in GGUF metadata, as llama.cpp's converter writes it:
 *   tokenizer.ggml.model = "gpt2" (byte-level BPE), tokenizer.ggml.pre = "deepseek-v3",
 *   tokenizer.ggml.tokens / token_type / merges, bos/eos/padding ids, add_bos_token / add_eos_token,
 *   and tokenizer.chat_template. */
#include "td_alloc.h"
#include "td_gguf.h"
#include "td_model.h"
#include "td_tokenizer_impl.h"

#include <string.h>

/* llama.cpp's token types */
enum {
    TD_GGUF_TOK_NORMAL = 1,
    TD_GGUF_TOK_UNKNOWN = 2,
    TD_GGUF_TOK_CONTROL = 3,
    TD_GGUF_TOK_USER = 4,
    TD_GGUF_TOK_UNUSED = 5,
    TD_GGUF_TOK_BYTE = 6
};

typedef struct td_gguf_vocab {
    td_tokenizer_vocab v;
    const char **tokens;
    uint32_t *lens;
    uint8_t *attrs;
    const char **merges;
    uint32_t *merge_lens;
    char *chat_template;
} td_gguf_vocab;

static void td_gguf_vocab_free(td_gguf_vocab *w)
{
    td_free(w->tokens);
    td_free(w->lens);
    td_free(w->attrs);
    td_free(w->merges);
    td_free(w->merge_lens);
    td_free(w->chat_template);
}

/* An optional id key: -1 when absent; an error when present but not a token id. */
static td_status td_gguf_opt_id(const td_gguf *g, const char *key, int32_t n, int32_t *out)
{
    *out = -1;
    if (!td_gguf_find_kv(g, key)) return TD_OK;
    int64_t v;
    TD_TRY(td_gguf_get_int(g, key, &v));
    if (v < 0 || v >= n)
        return td_fail(TD_E_FORMAT, "%s: %s = %lld is outside the vocabulary (0..%d)", td_gguf_file_path(g, 0), key,
                       (long long)v, n - 1);
    *out = (int32_t)v;
    return TD_OK;
}

static td_status td_gguf_opt_bool(const td_gguf *g, const char *key, bool dflt, bool *out)
{
    *out = dflt;
    return td_gguf_find_kv(g, key) ? td_gguf_get_bool(g, key, out) : TD_OK;
}

static td_status td_gguf_str_array(const td_gguf *g, const char *key, td_gguf_value *arr)
{
    TD_TRY(td_gguf_get_array(g, key, arr));
    if (arr->elem_type != TD_GGUF_STRING)
        return td_fail(TD_E_FORMAT, "%s: %s is an array of %s, not of strings", td_gguf_file_path(g, 0), key,
                       td_gguf_vtype_name(arr->elem_type));
    return TD_OK;
}

static td_status td_gguf_check_kind(const td_gguf *g, const char *src)
{
    char model[64], pre[64];
    td_status st = td_gguf_get_str_copy(g, "tokenizer.ggml.model", model, sizeof model);
    if (st == TD_E_NOT_FOUND)
        return td_fail(TD_E_NOT_FOUND,
                       "%s has no tokenizer (no tokenizer.ggml.* metadata); pass a tokenizer.json "
                       "with --tokenizer",
                       src);
    TD_TRY(st);
    if (strcmp(model, "gpt2") != 0)
        return td_fail(TD_E_UNSUPPORTED,
                       "%s: tokenizer.ggml.model '%s' is not supported (tandem runs byte-level BPE, "
                       "\"gpt2\")",
                       src, model);
    st = td_gguf_get_str_copy(g, "tokenizer.ggml.pre", pre, sizeof pre);
    if (st == TD_E_NOT_FOUND)
        return td_fail(TD_E_UNSUPPORTED,
                       "%s: no tokenizer.ggml.pre, so the pre-tokenizer is unknown; reconvert the "
                       "model with a current llama.cpp, or pass its tokenizer.json with --tokenizer",
                       src);
    TD_TRY(st);
    td_pretok_kind kind;
    if (!td_pretok_from_name(pre, &kind))
        return td_fail(TD_E_UNSUPPORTED,
                       "%s: pre-tokenizer '%s' is not supported (tandem knows deepseek-v3); pass "
                       "the model's tokenizer.json with --tokenizer",
                       src, pre);
    return TD_OK;
}

static td_status td_gguf_tokens(const td_gguf *g, const char *src, td_gguf_vocab *w)
{
    td_gguf_value arr, types = {0};
    TD_TRY(td_gguf_str_array(g, "tokenizer.ggml.tokens", &arr));
    if (arr.len < 1 || arr.len > (1u << 24))
        return td_fail(TD_E_FORMAT, "%s: %llu tokens in tokenizer.ggml.tokens (1..16777216)", src,
                       (unsigned long long)arr.len);
    int32_t n = (int32_t)arr.len;
    bool have_types = td_gguf_find_kv(g, "tokenizer.ggml.token_type") != NULL;
    if (have_types) {
        TD_TRY(td_gguf_get_array(g, "tokenizer.ggml.token_type", &types));
        if (types.len != arr.len)
            return td_fail(TD_E_FORMAT, "%s: tokenizer.ggml.token_type has %llu entries for %d tokens", src,
                           (unsigned long long)types.len, n);
    }
    w->tokens = td_calloc((size_t)n, sizeof *w->tokens);
    w->lens = td_calloc((size_t)n, sizeof *w->lens);
    w->attrs = td_calloc((size_t)n, 1);
    if (!w->tokens || !w->lens || !w->attrs) return td_fail(TD_E_NOMEM, "out of memory for %d tokens", n);
    for (int32_t i = 0; i < n; i++) {
        size_t len;
        TD_TRY(td_gguf_array_str(&arr, (uint64_t)i, &w->tokens[i], &len));
        if (len > UINT32_MAX) return td_fail(TD_E_FORMAT, "%s: token %d is too long", src, i);
        w->lens[i] = (uint32_t)len;
        int64_t type = TD_GGUF_TOK_NORMAL;
        if (have_types) TD_TRY(td_gguf_array_int(&types, (uint64_t)i, &type));
        switch (type) {
        case TD_GGUF_TOK_NORMAL:
        case TD_GGUF_TOK_BYTE: w->attrs[i] = TD_TOKEN_NORMAL; break;
        case TD_GGUF_TOK_UNKNOWN:
        case TD_GGUF_TOK_CONTROL: w->attrs[i] = TD_TOKEN_SPECIAL; break;
        case TD_GGUF_TOK_USER: w->attrs[i] = TD_TOKEN_ADDED; break;
        case TD_GGUF_TOK_UNUSED: w->attrs[i] = TD_TOKEN_UNUSED; break;
        default:
            return td_fail(TD_E_FORMAT, "%s: token %d has type %lld (llama.cpp's types are 1..6)", src, i,
                           (long long)type);
        }
    }
    w->v.n_tokens = n;
    w->v.tokens = w->tokens;
    w->v.token_lens = w->lens;
    w->v.attrs = w->attrs;
    return TD_OK;
}

static td_status td_gguf_merges(const td_gguf *g, const char *src, td_gguf_vocab *w)
{
    if (!td_gguf_find_kv(g, "tokenizer.ggml.merges"))
        return td_fail(TD_E_FORMAT, "%s: a BPE vocabulary without tokenizer.ggml.merges", src);
    td_gguf_value arr;
    TD_TRY(td_gguf_str_array(g, "tokenizer.ggml.merges", &arr));
    if (arr.len > (1u << 24)) return td_fail(TD_E_FORMAT, "%s: %llu merges", src, (unsigned long long)arr.len);
    size_t n = (size_t)arr.len;
    w->merges = td_calloc(n + 1, sizeof *w->merges);
    w->merge_lens = td_calloc(n + 1, sizeof *w->merge_lens);
    if (!w->merges || !w->merge_lens) return td_fail(TD_E_NOMEM, "out of memory for %zu merges", n);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        TD_TRY(td_gguf_array_str(&arr, i, &w->merges[i], &len));
        if (len > UINT32_MAX) return td_fail(TD_E_FORMAT, "%s: merge %zu is too long", src, i);
        w->merge_lens[i] = (uint32_t)len;
    }
    w->v.n_merges = (int32_t)n;
    w->v.merges = w->merges;
    w->v.merge_lens = w->merge_lens;
    return TD_OK;
}

static td_status td_gguf_specials(const td_gguf *g, td_gguf_vocab *w)
{
    int32_t n = w->v.n_tokens;
    TD_TRY(td_gguf_opt_id(g, "tokenizer.ggml.bos_token_id", n, &w->v.bos_id));
    TD_TRY(td_gguf_opt_id(g, "tokenizer.ggml.eos_token_id", n, &w->v.eos_id));
    TD_TRY(td_gguf_opt_id(g, "tokenizer.ggml.padding_token_id", n, &w->v.pad_id));
    TD_TRY(td_gguf_opt_id(g, "tokenizer.ggml.unknown_token_id", n, &w->v.unk_id));
    TD_TRY(td_gguf_opt_bool(g, "tokenizer.ggml.add_bos_token", w->v.bos_id >= 0, &w->v.add_bos));
    TD_TRY(td_gguf_opt_bool(g, "tokenizer.ggml.add_eos_token", false, &w->v.add_eos));
    if (td_gguf_find_kv(g, "tokenizer.chat_template")) {
        const char *s;
        size_t len;
        TD_TRY(td_gguf_get_str(g, "tokenizer.chat_template", &s, &len));
        if (!(w->chat_template = td_strndup(s, len))) return td_fail(TD_E_NOMEM, "out of memory");
        w->v.chat_template = w->chat_template;
    }
    return TD_OK;
}

static td_status td_tokenizer_from_gguf_named(const td_gguf *g, const char *src, td_tokenizer **out)
{
    *out = NULL;
    td_gguf_vocab w = {0};
    w.v.pretok = TD_PRETOK_DEEPSEEK_V3;
    w.v.source = src;
    td_status st = td_gguf_check_kind(g, src);
    if (st == TD_OK) st = td_gguf_tokens(g, src, &w);
    if (st == TD_OK) st = td_gguf_merges(g, src, &w);
    if (st == TD_OK) st = td_gguf_specials(g, &w);
    if (st == TD_OK) st = td_tokenizer_create(&w.v, out);
    td_gguf_vocab_free(&w);
    return st;
}

td_status td_tokenizer_load_gguf(const char *path, td_tokenizer **out)
{
    *out = NULL;
    td_gguf *g;
    TD_TRY(td_gguf_open(path, &g));
    td_status st = td_tokenizer_from_gguf_named(g, path, out);
    td_gguf_close(g);
    return st;
}

td_status td_tokenizer_from_model_gguf(const struct td_model *m, td_tokenizer **out)
{
    *out = NULL;
    if (!m->gguf) return td_tokenizer_load_gguf(m->path, out);
    return td_tokenizer_from_gguf_named(m->gguf, m->path, out);
}

td_status td_tokenizer_from_gguf(const struct td_gguf *g, td_tokenizer **out)
{
    return td_tokenizer_from_gguf_named(g, td_gguf_file_path(g, 0), out);
}
