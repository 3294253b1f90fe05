/* tokenizer.json (Hugging Face `tokenizers`) -> td_tokenizer_vocab. Only what byte-level BPE with
 * regex splits needs is accepted; anything else is refused by name rather than run differently. */
#include "td_alloc.h"
#include "td_mmap.h"
#include "td_tokenizer_impl.h"

#include <cjson/cJSON.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define TD_TOKENIZER_JSON_MAX (1ull << 30)
#define TD_TOKENIZER_MAX_ID   ((1 << 24) - 1)

/* GPT-2's split, which ByteLevel runs itself when use_regex is true. */
static const char td_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct td_json_load {
    const char *src;
    td_tokenizer_vocab v;
    char **tokens; /* [n] owned copies (NULL: hole) */
    uint32_t *lens;
    uint8_t *attrs, *flags;
    char **merges; /* [n_merges] owned "left right" */
    char *patterns[TD_TOK_MAX_SPLITS];
    int n_patterns;
    bool byte_level;        /* a ByteLevel step ends the pre-tokenizer */
    int32_t pp_bos, pp_eos; /* from the post-processor template, -1 if none */
} td_json_load;

static const cJSON *td_jget(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static bool td_jtrue(const cJSON *o, const char *key)
{
    return cJSON_IsTrue(td_jget(o, key));
}

static const char *td_jstr(const cJSON *o, const char *key)
{
    const cJSON *v = td_jget(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool td_jint(const cJSON *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi)
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

/* ------------------------------------------------------------------ vocabulary and added tokens */

static td_status td_json_max_id(td_json_load *L, const cJSON *vocab, const cJSON *added, int64_t *max_id)
{
    *max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab)
    {
        int64_t id;
        if (!td_jint(e, 0, TD_TOKENIZER_MAX_ID, &id))
            return td_fail(TD_E_FORMAT, "%s: model.vocab[\"%.80s\"] is not a token id (an integer 0..%d)", L->src,
                           e->string ? e->string : "", TD_TOKENIZER_MAX_ID);
        if (id > *max_id) *max_id = id;
    }
    int i = 0;
    cJSON_ArrayForEach(e, added)
    {
        int64_t id;
        if (!cJSON_IsObject(e) || !td_jint(td_jget(e, "id"), 0, TD_TOKENIZER_MAX_ID, &id) || !td_jstr(e, "content"))
            return td_fail(TD_E_FORMAT, "%s: added_tokens[%d] needs an integer \"id\" (0..%d) and a string \"content\"",
                           L->src, i, TD_TOKENIZER_MAX_ID);
        if (id > *max_id) *max_id = id;
        i++;
    }
    if (*max_id < 0) return td_fail(TD_E_FORMAT, "%s: the vocabulary is empty", L->src);
    return TD_OK;
}

static td_status td_json_set_token(td_json_load *L, int64_t id, const char *s, uint8_t attr, uint8_t flags)
{
    if (L->tokens[id]) {
        if (strcmp(L->tokens[id], s) != 0)
            return td_fail(TD_E_FORMAT, "%s: token id %lld is given to both '%.80s' and '%.80s'", L->src, (long long)id,
                           L->tokens[id], s);
    } else if (!(L->tokens[id] = td_strdup(s))) {
        return td_fail(TD_E_NOMEM, "out of memory");
    }
    L->lens[id] = (uint32_t)strlen(s);
    if (L->lens[id] == 0) return td_fail(TD_E_FORMAT, "%s: token id %lld is an empty string", L->src, (long long)id);
    L->attrs[id] = attr;
    L->flags[id] = flags;
    return TD_OK;
}

static td_status td_json_vocab(td_json_load *L, const cJSON *model, const cJSON *added)
{
    const cJSON *vocab = td_jget(model, "vocab");
    if (!cJSON_IsObject(vocab)) return td_fail(TD_E_FORMAT, "%s: model.vocab is missing or not an object", L->src);
    if (added && !cJSON_IsArray(added)) return td_fail(TD_E_FORMAT, "%s: added_tokens is not an array", L->src);
    int64_t max_id;
    TD_TRY(td_json_max_id(L, vocab, added, &max_id));
    size_t n = (size_t)max_id + 1;
    L->v.n_tokens = (int32_t)n;
    L->tokens = td_calloc(n, sizeof(char *));
    L->lens = td_calloc(n, sizeof(uint32_t));
    L->attrs = td_calloc(n, 1);
    L->flags = td_calloc(n, 1);
    if (!L->tokens || !L->lens || !L->attrs || !L->flags) return td_fail(TD_E_NOMEM, "out of memory for %zu tokens", n);
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) TD_TRY(td_json_set_token(L, (int64_t)e->valuedouble, e->string, TD_TOKEN_NORMAL, 0));
    int i = 0;
    cJSON_ArrayForEach(e, added)
    {
        if (td_jtrue(e, "single_word"))
            return td_fail(TD_E_UNSUPPORTED,
                           "%s: added_tokens[%d] ('%.80s') is single_word, which tandem does not "
                           "handle",
                           L->src, i, td_jstr(e, "content"));
        uint8_t flags =
            (uint8_t)((td_jtrue(e, "lstrip") ? TD_ADDED_LSTRIP : 0) | (td_jtrue(e, "rstrip") ? TD_ADDED_RSTRIP : 0) |
                      (td_jtrue(e, "normalized") ? TD_ADDED_NORMALIZED : 0));
        uint8_t attr = td_jtrue(e, "special") ? TD_TOKEN_SPECIAL : TD_TOKEN_ADDED;
        int64_t id = (int64_t)td_jget(e, "id")->valuedouble;
        /* an added token may repeat a vocabulary entry (same id, same text); it then matches as a whole */
        TD_TRY(td_json_set_token(L, id, td_jstr(e, "content"), attr, flags));
        i++;
    }
    L->v.tokens = (const char *const *)L->tokens;
    L->v.token_lens = L->lens;
    L->v.attrs = L->attrs;
    L->v.added_flags = L->flags;
    return TD_OK;
}

static td_status td_json_merges(td_json_load *L, const cJSON *model)
{
    const cJSON *merges = td_jget(model, "merges");
    if (!merges || cJSON_IsNull(merges)) return TD_OK;
    if (!cJSON_IsArray(merges)) return td_fail(TD_E_FORMAT, "%s: model.merges is not an array", L->src);
    int n = cJSON_GetArraySize(merges);
    L->merges = td_calloc((size_t)n + 1, sizeof(char *));
    if (!L->merges) return td_fail(TD_E_NOMEM, "out of memory for %d merges", n);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, merges)
    {
        const char *a = NULL, *b = NULL;
        if (cJSON_IsString(e)) {
            L->merges[i] = td_strdup(e->valuestring);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            b = e->child->next->valuestring;
            size_t na = strlen(a), nb = strlen(b);
            if (na == 0 || nb == 0 || strchr(a, ' ') || strchr(b, ' '))
                return td_fail(TD_E_FORMAT, "%s: merge %d has an empty part or a part with a space", L->src, i);
            if ((L->merges[i] = td_malloc(na + nb + 2))) {
                memcpy(L->merges[i], a, na);
                L->merges[i][na] = ' ';
                memcpy(L->merges[i] + na + 1, b, nb + 1);
            }
        } else {
            return td_fail(TD_E_FORMAT, "%s: merge %d is neither \"left right\" nor [\"left\", \"right\"]", L->src, i);
        }
        if (!L->merges[i]) return td_fail(TD_E_NOMEM, "out of memory");
        i++;
    }
    L->v.n_merges = n;
    L->v.merges = (const char *const *)L->merges;
    return TD_OK;
}

static td_status td_json_model(td_json_load *L, const cJSON *model)
{
    if (!cJSON_IsObject(model)) return td_fail(TD_E_FORMAT, "%s: \"model\" is missing or not an object", L->src);
    const char *type = td_jstr(model, "type");
    if (type && strcmp(type, "BPE") != 0)
        return td_fail(TD_E_UNSUPPORTED, "%s: model type '%s' is not supported (tandem runs byte-level BPE)", L->src,
                       type);
    if (td_jtrue(model, "byte_fallback"))
        return td_fail(TD_E_UNSUPPORTED, "%s: BPE byte_fallback is not supported (DeepSeek's tokenizers do not use it)",
                       L->src);
    const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *s = td_jstr(model, affixes[i]);
        if (s && *s) return td_fail(TD_E_UNSUPPORTED, "%s: BPE %s is not supported", L->src, affixes[i]);
    }
    const cJSON *dropout = td_jget(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return td_fail(TD_E_UNSUPPORTED, "%s: BPE dropout %g would make encoding random; set it to null", L->src,
                       dropout->valuedouble);
    L->v.ignore_merges = td_jtrue(model, "ignore_merges");
    return TD_OK;
}

/* ------------------------------------------------------------------ pipeline steps */

static td_status td_json_add_pattern(td_json_load *L, const char *pat, bool literal)
{
    if (L->n_patterns == TD_TOK_MAX_SPLITS)
        return td_fail(TD_E_UNSUPPORTED, "%s: more than %d pre-tokenizer splits", L->src, TD_TOK_MAX_SPLITS);
    size_t n = strlen(pat);
    char *p = td_malloc(2 * n + 1);
    if (!p) return td_fail(TD_E_NOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)pat[i];
        bool word = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
        if (literal && !word) p[o++] = '\\';
        p[o++] = (char)c;
    }
    p[o] = '\0';
    L->patterns[L->n_patterns++] = p;
    return TD_OK;
}

static td_status td_json_pretok_step(td_json_load *L, const cJSON *step, int depth)
{
    const char *type = td_jstr(step, "type");
    if (!type) return td_fail(TD_E_FORMAT, "%s: a pre_tokenizer step has no \"type\"", L->src);
    if (L->byte_level)
        return td_fail(TD_E_UNSUPPORTED, "%s: pre_tokenizer step '%s' after ByteLevel is not supported", L->src, type);
    if (strcmp(type, "Sequence") == 0 && depth < 4) {
        const cJSON *list = td_jget(step, "pretokenizers"), *e;
        if (!cJSON_IsArray(list)) return td_fail(TD_E_FORMAT, "%s: pre_tokenizer Sequence without a list", L->src);
        cJSON_ArrayForEach(e, list) TD_TRY(td_json_pretok_step(L, e, depth + 1));
        return TD_OK;
    }
    if (strcmp(type, "Split") == 0) {
        const char *behavior = td_jstr(step, "behavior");
        if (!behavior || strcmp(behavior, "Isolated") != 0 || td_jtrue(step, "invert"))
            return td_fail(TD_E_UNSUPPORTED,
                           "%s: only Split with behavior Isolated (not inverted) is supported, "
                           "found '%s'",
                           L->src, behavior ? behavior : "(none)");
        const cJSON *pat = td_jget(step, "pattern");
        const char *re = td_jstr(pat, "Regex"), *lit = td_jstr(pat, "String");
        if (!re && !lit) return td_fail(TD_E_FORMAT, "%s: a Split has no Regex or String pattern", L->src);
        return td_json_add_pattern(L, re ? re : lit, !re);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        if (td_jtrue(step, "add_prefix_space"))
            return td_fail(TD_E_UNSUPPORTED, "%s: ByteLevel add_prefix_space is not supported", L->src);
        const cJSON *use_regex = td_jget(step, "use_regex");
        if (!use_regex || cJSON_IsTrue(use_regex)) TD_TRY(td_json_add_pattern(L, td_gpt2_pattern, false));
        L->byte_level = true;
        return TD_OK;
    }
    return td_fail(TD_E_UNSUPPORTED,
                   "%s: pre_tokenizer step '%s' is not supported (tandem runs regex splits "
                   "followed by ByteLevel)",
                   L->src, type);
}

static td_status td_json_pipeline(td_json_load *L, const cJSON *root)
{
    const cJSON *norm = td_jget(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) {
        const char *type = td_jstr(norm, "type");
        const cJSON *list = td_jget(norm, "normalizers");
        if (!type || strcmp(type, "Sequence") != 0 || !cJSON_IsArray(list) || cJSON_GetArraySize(list) != 0)
            return td_fail(TD_E_UNSUPPORTED, "%s: normalizer '%s' is not supported (DeepSeek's tokenizers have none)",
                           L->src, type ? type : "?");
    }
    const cJSON *pre = td_jget(root, "pre_tokenizer");
    if (!pre || cJSON_IsNull(pre) || !cJSON_IsObject(pre))
        return td_fail(TD_E_UNSUPPORTED, "%s: no pre_tokenizer; tandem needs a byte-level one", L->src);
    TD_TRY(td_json_pretok_step(L, pre, 0));
    if (!L->byte_level)
        return td_fail(TD_E_UNSUPPORTED, "%s: the pre_tokenizer has no ByteLevel step; tandem runs byte-level BPE only",
                       L->src);
    const cJSON *dec = td_jget(root, "decoder");
    const char *dtype = td_jstr(dec, "type");
    if (!dtype || strcmp(dtype, "ByteLevel") != 0)
        return td_fail(TD_E_UNSUPPORTED, "%s: decoder '%s' is not supported (tandem decodes ByteLevel)", L->src,
                       dtype ? dtype : "(none)");
    L->v.pretok = TD_PRETOK_CUSTOM;
    L->v.split_patterns = (const char *const *)L->patterns;
    L->v.n_split_patterns = L->n_patterns;
    return TD_OK;
}

/* TemplateProcessing's "single": special tokens before $A are what add_special puts in front (BOS),
 * those after it what it appends (EOS). */
static td_status td_json_post(td_json_load *L, const cJSON *pp, int depth)
{
    if (!pp || cJSON_IsNull(pp)) return TD_OK;
    const char *type = td_jstr(pp, "type");
    if (!type) return td_fail(TD_E_FORMAT, "%s: post_processor has no \"type\"", L->src);
    if (strcmp(type, "ByteLevel") == 0) return TD_OK;
    if (strcmp(type, "Sequence") == 0 && depth < 4) {
        const cJSON *e;
        cJSON_ArrayForEach(e, td_jget(pp, "processors")) TD_TRY(td_json_post(L, e, depth + 1));
        return TD_OK;
    }
    if (strcmp(type, "TemplateProcessing") != 0)
        return td_fail(TD_E_UNSUPPORTED, "%s: post_processor '%s' is not supported", L->src, type);
    bool after = false;
    int before_n = 0, after_n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, td_jget(pp, "single"))
    {
        const cJSON *sp = td_jget(e, "SpecialToken");
        if (td_jget(e, "Sequence")) {
            after = true;
            continue;
        }
        const char *name = td_jstr(sp, "id");
        int32_t id = -1;
        const cJSON *ids = td_jget(td_jget(td_jget(pp, "special_tokens"), name ? name : ""), "ids");
        int64_t v;
        if (cJSON_GetArraySize(ids) == 1 && td_jint(ids->child, 0, L->v.n_tokens - 1, &v)) id = (int32_t)v;
        if (id < 0)
            return td_fail(TD_E_FORMAT, "%s: post_processor names special token '%.80s' without one valid id", L->src,
                           name ? name : "?");
        if (after)
            L->pp_eos = id, after_n++;
        else
            L->pp_bos = id, before_n++;
    }
    if (before_n > 1 || after_n > 1)
        return td_fail(TD_E_UNSUPPORTED,
                       "%s: post_processor adds %d tokens before and %d after; tandem handles one BOS "
                       "and one EOS",
                       L->src, before_n, after_n);
    return TD_OK;
}

/* ------------------------------------------------------------------ tokenizer_config.json */

static const char *td_config_token(const cJSON *cfg, const char *key)
{
    const cJSON *v = td_jget(cfg, key);
    if (cJSON_IsString(v)) return v->valuestring;
    return td_jstr(v, "content");
}

static const char *td_config_template(const cJSON *cfg)
{
    const cJSON *v = td_jget(cfg, "chat_template"), *e;
    if (cJSON_IsString(v)) return v->valuestring;
    if (!cJSON_IsArray(v)) return NULL;
    cJSON_ArrayForEach(e, v)
    {
        const char *name = td_jstr(e, "name");
        if (name && strcmp(name, "default") == 0) return td_jstr(e, "template");
    }
    return NULL;
}

/* BOS/EOS: tokenizer_config.json first, then the post-processor, then DeepSeek's names. Adding BOS:
 * add_bos_token when the config says, else whether a BOS is known at all (every DeepSeek model starts
 * its prompts with one, and its GGUFs say add_bos_token = true). */
static int32_t td_json_find(const td_json_load *L, const char *s)
{
    for (int32_t i = 0; i < L->v.n_tokens; i++)
        if (L->tokens[i] && strcmp(L->tokens[i], s) == 0) return i;
    return -1;
}

static void td_json_specials(td_json_load *L, const cJSON *cfg)
{
    const char *bos_name = td_config_token(cfg, "bos_token"), *eos_name = td_config_token(cfg, "eos_token");
    int32_t bos = bos_name ? td_json_find(L, bos_name) : -1;
    int32_t eos = eos_name ? td_json_find(L, eos_name) : -1;
    if (bos < 0) bos = L->pp_bos;
    if (eos < 0) eos = L->pp_eos;
    if (bos < 0)
        bos = td_json_find(L, "<\xef\xbd\x9c"
                              "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>");
    if (eos < 0)
        eos = td_json_find(L, "<\xef\xbd\x9c"
                              "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>");
    const cJSON *ab = td_jget(cfg, "add_bos_token"), *ae = td_jget(cfg, "add_eos_token");
    L->v.bos_id = bos;
    L->v.eos_id = eos;
    L->v.add_bos = bos >= 0 && (cJSON_IsBool(ab) ? cJSON_IsTrue(ab) : true);
    L->v.add_eos = eos >= 0 && (cJSON_IsBool(ae) ? cJSON_IsTrue(ae) : L->pp_eos >= 0);
    const char *pad_name = td_config_token(cfg, "pad_token");
    L->v.pad_id = pad_name ? td_json_find(L, pad_name) : -1;
    L->v.chat_template = td_config_template(cfg);
}

/* ------------------------------------------------------------------ entry points */

static void td_json_load_free(td_json_load *L)
{
    for (int32_t i = 0; L->tokens && i < L->v.n_tokens; i++) td_free(L->tokens[i]);
    td_free(L->tokens);
    td_free(L->lens);
    td_free(L->attrs);
    td_free(L->flags);
    for (int32_t i = 0; L->merges && L->merges[i]; i++) td_free(L->merges[i]);
    td_free(L->merges);
    for (int i = 0; i < L->n_patterns; i++) td_free(L->patterns[i]);
}

static td_status td_json_parse(td_json_load *L, const cJSON *root)
{
    if (!cJSON_IsObject(root)) return td_fail(TD_E_FORMAT, "%s: not a JSON object", L->src);
    const cJSON *model = td_jget(root, "model");
    TD_TRY(td_json_model(L, model));
    TD_TRY(td_json_vocab(L, model, td_jget(root, "added_tokens")));
    TD_TRY(td_json_merges(L, model));
    TD_TRY(td_json_pipeline(L, root));
    TD_TRY(td_json_post(L, td_jget(root, "post_processor"), 0));
    const char *unk = td_jstr(model, "unk_token");
    L->v.unk_id = unk ? td_json_find(L, unk) : -1;
    if (unk) {
        if (L->v.unk_id < 0) return td_fail(TD_E_FORMAT, "%s: unk_token '%.80s' is not in the vocabulary", L->src, unk);
    }
    return TD_OK;
}

/* Builds the tokenizer; `config` (tokenizer_config.json, may be NULL) supplies BOS/EOS and the template. */
static td_status td_tokenizer_from_json(const char *text, size_t len, const char *source, const cJSON *config,
                                        td_tokenizer **out)
{
    *out = NULL;
    td_json_load L = {.src = source, .pp_bos = -1, .pp_eos = -1};
    L.v.source = source;
    L.v.bos_id = L.v.eos_id = L.v.pad_id = -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    td_status st;
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= text && at <= text + len ? (size_t)(at - text) : 0;
        st = td_fail(TD_E_FORMAT, "%s: not valid JSON (near byte %zu)", source, off);
    } else {
        st = td_json_parse(&L, root);
    }
    if (st == TD_OK) {
        td_json_specials(&L, config);
        st = td_tokenizer_create(&L.v, out);
    }
    cJSON_Delete(root);
    td_json_load_free(&L);
    return st;
}

td_status td_tokenizer_from_json_text(const char *text, size_t len, const char *source, td_tokenizer **out)
{
    return td_tokenizer_from_json(text, len, source ? source : "tokenizer.json", NULL, out);
}

td_status td_tokenizer_load_json(const char *path, td_tokenizer **out)
{
    *out = NULL;
    char file[4096], dir[4096];
    if (td_path_is_dir(path)) {
        snprintf(file, sizeof file, "%s/tokenizer.json", path);
        snprintf(dir, sizeof dir, "%s", path);
        if (!td_path_exists(file))
            return td_fail(TD_E_NOT_FOUND,
                           "%s: no tokenizer.json in this directory (an HF model directory has one "
                           "beside config.json)",
                           path);
    } else {
        snprintf(file, sizeof file, "%s", path);
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", path);
        snprintf(dir, sizeof dir, "%s", dirname(copy));
    }
    char *text = NULL, *cfg_text = NULL;
    uint64_t len = 0, cfg_len = 0;
    TD_TRY(td_read_text_file(file, TD_TOKENIZER_JSON_MAX, &text, &len));
    char cfg_path[4200];
    snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir);
    cJSON *cfg = NULL;
    td_status st = TD_OK;
    if (td_path_exists(cfg_path)) {
        st = td_read_text_file(cfg_path, 64ull << 20, &cfg_text, &cfg_len);
        if (st == TD_OK && !(cfg = cJSON_ParseWithLength(cfg_text, (size_t)cfg_len)))
            st = td_fail(TD_E_FORMAT, "%s: not valid JSON", cfg_path);
    }
    if (st == TD_OK) st = td_tokenizer_from_json(text, (size_t)len, file, cfg, out);
    cJSON_Delete(cfg);
    td_free(cfg_text);
    td_free(text);
    return st;
}
