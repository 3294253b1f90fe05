/* An HF tokenizer.json (byte-level BPE) -> llama.cpp's tokenizer.ggml.* keys: tokens by id, their types,
 * the merges, BOS/EOS, and from tokenizer_config.json the add_bos/add_eos flags and the chat template. */
#include "td_gguf_convert_impl.h"

#include "td_alloc.h"
#include "td_mmap.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

enum { TD_TOK_NORMAL = 1, TD_TOK_CONTROL = 3, TD_TOK_USER_DEFINED = 4, TD_TOK_UNUSED = 5 }; /* llama.cpp's */

typedef struct td_vocab {
    const char **text;  /* [n] (into the cJSON tree or pad storage) */
    size_t *len;
    int32_t *type;
    char *pad;          /* "[PAD<id>]" strings for ids the tokenizer leaves free */
    size_t n;
} td_vocab;

static void td_vocab_free(td_vocab *v)
{
    td_free(v->text);
    td_free(v->len);
    td_free(v->type);
    td_free(v->pad);
}

static td_status td_tok_id(const cJSON *v, const char *path, const char *what, size_t limit, size_t *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= (double)limit ||
        v->valuedouble != (double)(size_t)v->valuedouble)
        return td_fail(TD_E_FORMAT, "%s: %s holds a token id that is not in 0..%zu (the model's vocab_size - 1)",
                       path, what, limit - 1);
    *out = (size_t)v->valuedouble;
    return TD_OK;
}

/* Ids 0..n-1 from model.vocab and added_tokens; n covers both and at least the model's vocab_size. */
static td_status td_vocab_build(const cJSON *root, const char *path, int64_t vocab_size, td_vocab *v)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsObject(vocab))
        return td_fail(TD_E_FORMAT, "%s: no model.vocab object (is this a Hugging Face tokenizer.json?)", path);
    if (cJSON_IsString(type) && strcmp(type->valuestring, "BPE") != 0)
        return td_fail(TD_E_UNSUPPORTED, "%s: a %s tokenizer; GGUF 'gpt2' needs BPE", path, type->valuestring);
    size_t limit = (size_t)vocab_size, n = (size_t)vocab_size;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab)
    {
        size_t id;
        TD_TRY(td_tok_id(e, path, "model.vocab", limit, &id));
    }
    cJSON_ArrayForEach(e, added)
    {
        size_t id;
        TD_TRY(td_tok_id(cJSON_GetObjectItemCaseSensitive(e, "id"), path, "added_tokens", limit, &id));
    }
    v->n = n;
    v->text = td_calloc(n, sizeof *v->text);
    v->len = td_calloc(n, sizeof *v->len);
    v->type = td_calloc(n, sizeof *v->type);
    v->pad = td_malloc(n * 16);
    if (!v->text || !v->len || !v->type || !v->pad) return td_fail(TD_E_NOMEM, "out of memory for %zu tokens", n);
    cJSON_ArrayForEach(e, vocab)
    {
        size_t id = (size_t)e->valuedouble;
        v->text[id] = e->string;
        v->type[id] = TD_TOK_NORMAL;
    }
    cJSON_ArrayForEach(e, added)
    {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsString(content)) return td_fail(TD_E_FORMAT, "%s: an added token without content", path);
        size_t id = (size_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        v->text[id] = content->valuestring;
        v->type[id] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special")) ? TD_TOK_CONTROL : TD_TOK_USER_DEFINED;
    }
    for (size_t id = 0; id < n; id++) {
        if (v->text[id]) {
            v->len[id] = strlen(v->text[id]);
            continue;
        }
        char *p = v->pad + 16 * id; /* the embedding has rows the tokenizer does not use */
        v->len[id] = (size_t)snprintf(p, 16, "[PAD%zu]", id);
        v->text[id] = p;
        v->type[id] = TD_TOK_UNUSED;
    }
    return TD_OK;
}

static td_status td_put_merges(td_gguf_writer *w, const cJSON *root, const char *path)
{
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"), "merges");
    if (!cJSON_IsArray(merges)) return td_fail(TD_E_FORMAT, "%s: no model.merges array", path);
    size_t n = (size_t)cJSON_GetArraySize(merges);
    char **items = td_calloc(n ? n : 1, sizeof *items);
    if (!items) return td_fail(TD_E_NOMEM, "out of memory");
    td_status st = TD_OK;
    size_t i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges)
    {
        const cJSON *a = cJSON_GetArrayItem(m, 0), *b = cJSON_GetArrayItem(m, 1);
        if (cJSON_IsString(m)) {
            items[i] = td_strdup(m->valuestring);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(a) && cJSON_IsString(b)) {
            size_t la = strlen(a->valuestring), lb = strlen(b->valuestring);
            items[i] = td_malloc(la + lb + 2);
            if (items[i]) snprintf(items[i], la + lb + 2, "%s %s", a->valuestring, b->valuestring);
        } else {
            st = td_fail(TD_E_FORMAT, "%s: merge #%zu is neither \"a b\" nor [\"a\", \"b\"]", path, i);
            break;
        }
        if (!items[i++]) {
            st = td_fail(TD_E_NOMEM, "out of memory");
            break;
        }
    }
    if (st == TD_OK) st = td_gguf_set_str_array(w, "tokenizer.ggml.merges", (const char *const *)items, NULL, n);
    for (size_t k = 0; k < n; k++) td_free(items[k]);
    td_free(items);
    return st;
}

/* add_bos_token / add_eos_token (and chat_template, when with_template) from tokenizer_config.json beside
 * the tokenizer. */
static td_status td_put_tokenizer_config(td_gguf_writer *w, const char *tokenizer_path, bool with_template)
{
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s", tokenizer_path);
    char *slash = strrchr(cfg, '/');
    snprintf(slash ? slash + 1 : cfg, sizeof cfg - (size_t)(slash ? slash + 1 - cfg : 0), "tokenizer_config.json");
    bool add_bos = true, add_eos = false;
    cJSON *root = NULL;
    if (td_path_exists(cfg)) {
        char *text;
        uint64_t len;
        TD_TRY(td_read_text_file(cfg, 64u << 20, &text, &len));
        root = cJSON_ParseWithLength(text, (size_t)len);
        td_free(text);
        if (!root) return td_fail(TD_E_FORMAT, "%s: not valid JSON", cfg);
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "add_bos_token");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "add_eos_token");
        if (cJSON_IsBool(b)) add_bos = cJSON_IsTrue(b);
        if (cJSON_IsBool(e)) add_eos = cJSON_IsTrue(e);
    }
    td_status st = td_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
    if (st == TD_OK) st = td_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos);
    const cJSON *tmpl = root && with_template ? cJSON_GetObjectItemCaseSensitive(root, "chat_template") : NULL;
    if (st == TD_OK && cJSON_IsString(tmpl)) st = td_gguf_set_str(w, "tokenizer.chat_template", tmpl->valuestring);
    cJSON_Delete(root);
    return st;
}

td_status td_convert_tokenizer_json(td_gguf_writer *w, const char *path, const td_hparams *hp, bool with_template)
{
    char *text;
    uint64_t len;
    TD_TRY(td_read_text_file(path, 256u << 20, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, (size_t)len);
    td_free(text);
    if (!root) return td_fail(TD_E_FORMAT, "%s: not valid JSON", path);
    td_vocab v = {0};
    td_status st = td_vocab_build(root, path, hp->vocab_size, &v);
    if (st == TD_OK) st = td_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (st == TD_OK) st = td_gguf_set_str(w, "tokenizer.ggml.pre", "deepseek-v3");
    if (st == TD_OK) st = td_gguf_set_str_array(w, "tokenizer.ggml.tokens", v.text, v.len, v.n);
    if (st == TD_OK) st = td_gguf_set_i32_array(w, "tokenizer.ggml.token_type", v.type, v.n);
    if (st == TD_OK) st = td_put_merges(w, root, path);
    if (st == TD_OK && hp->bos_token_id >= 0)
        st = td_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)hp->bos_token_id);
    if (st == TD_OK && hp->eos_token_id >= 0)
        st = td_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)hp->eos_token_id);
    if (st == TD_OK) st = td_put_tokenizer_config(w, path, with_template);
    td_vocab_free(&v);
    cJSON_Delete(root);
    return st;
}
