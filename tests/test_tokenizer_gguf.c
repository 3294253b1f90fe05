/* The GGUF side of the tokenizer: the tokenizer of an opened model (GGUF metadata, or tokenizer.json
 * beside an HF model, or a clear error when there is none), and GGUF files whose tokenizer metadata is
 * wrong, each refused with a message naming the key. The files are the fixture's metadata rewritten
 * with one key changed. */
#include "td_alloc.h"
#include "td_chat_template.h"
#include "td_gguf_write.h"
#include "td_model.h"
#include "td_test.h"
#include "td_tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { TD_KEEP, TD_DROP, TD_STR, TD_U32, TD_I32S } td_change_kind;

typedef struct td_change {
    const char *key;
    td_change_kind kind;
    const char *str;
    uint32_t u32;
    int n_i32;
} td_change;

/* Copies every tokenizer key of the fixture into a fresh GGUF with no tensors, applying one change. */
static td_status td_write_variant(const td_gguf *src, const td_change *c, const char *path)
{
    td_gguf_writer *w;
    TD_TRY(td_gguf_writer_create(&w));
    td_status st = TD_OK;
    for (size_t i = 0; i < td_gguf_kv_count(src) && st == TD_OK; i++) {
        const td_gguf_kv *kv = td_gguf_kv_at(src, i);
        if (strncmp(kv->key, "tokenizer.", 10) != 0 && strcmp(kv->key, "general.architecture") != 0) continue;
        if (c && strcmp(kv->key, c->key) == 0) continue;
        st = td_gguf_set_value(w, kv->key, &kv->v);
    }
    if (st == TD_OK && c) {
        if (c->kind == TD_STR)
            st = td_gguf_set_str(w, c->key, c->str);
        else if (c->kind == TD_U32)
            st = td_gguf_set_u32(w, c->key, c->u32);
        else if (c->kind == TD_I32S) {
            int32_t *v = calloc((size_t)c->n_i32, sizeof *v);
            for (int i = 0; i < c->n_i32; i++) v[i] = i < 5 ? 9 : 1;
            st = td_gguf_set_i32_array(w, c->key, v, (size_t)c->n_i32);
            free(v);
        }
    }
    if (st == TD_OK) st = td_gguf_write(w, path, NULL);
    td_gguf_writer_free(w);
    return st;
}

static void td_test_bad_metadata(const td_gguf *src)
{
    const char *R1 = "{% if add_generation_prompt %}{{'<\xef\xbd\x9c"
                     "Assistant\xef\xbd\x9c><think>\\n'}}{% endif %}";
    struct {
        td_change c;
        td_status want;
        const char *says;
    } cases[] = {
        {{"tokenizer.ggml.model", TD_STR, "llama", 0, 0}, TD_E_UNSUPPORTED, "tokenizer.ggml.model 'llama'"},
        {{"tokenizer.ggml.model", TD_DROP, NULL, 0, 0}, TD_E_NOT_FOUND, "has no tokenizer"},
        {{"tokenizer.ggml.pre", TD_STR, "llama-bpe", 0, 0}, TD_E_UNSUPPORTED, "pre-tokenizer 'llama-bpe'"},
        {{"tokenizer.ggml.pre", TD_DROP, NULL, 0, 0}, TD_E_UNSUPPORTED, "no tokenizer.ggml.pre"},
        {{"tokenizer.ggml.pre", TD_U32, NULL, 3, 0}, TD_E_FORMAT, "tokenizer.ggml.pre"},
        {{"tokenizer.ggml.tokens", TD_DROP, NULL, 0, 0}, TD_E_NOT_FOUND, "tokenizer.ggml.tokens"},
        {{"tokenizer.ggml.tokens", TD_I32S, NULL, 0, 4096}, TD_E_FORMAT, "not of strings"},
        {{"tokenizer.ggml.token_type", TD_I32S, NULL, 0, 17}, TD_E_FORMAT, "17 entries"},
        {{"tokenizer.ggml.token_type", TD_I32S, NULL, 0, 4096}, TD_E_FORMAT, "type 9"},
        {{"tokenizer.ggml.merges", TD_DROP, NULL, 0, 0}, TD_E_FORMAT, "without tokenizer.ggml.merges"},
        {{"tokenizer.ggml.bos_token_id", TD_U32, NULL, 99999, 0}, TD_E_FORMAT, "bos_token_id = 99999"},
        {{"tokenizer.ggml.add_bos_token", TD_STR, "yes", 0, 0}, TD_E_FORMAT, "add_bos_token"},
        {{"tokenizer.chat_template", TD_STR, R1, 0, 0}, TD_OK, NULL},
        {{"tokenizer.ggml.token_type", TD_DROP, NULL, 0, 0}, TD_OK, NULL},
    };
    char path[4200];
    snprintf(path, sizeof path, "%s/variant.gguf", td_test_tmpdir());
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TD_CHECKF(td_write_variant(src, &cases[i].c, path) == TD_OK, "writing variant %zu: %s", i, td_errmsg());
        td_tokenizer *t = NULL;
        td_status st = td_tokenizer_load(path, &t);
        TD_CHECKF(
            st == cases[i].want && (st != TD_OK || t) &&
                (st == TD_OK || (!t && strstr(td_errmsg(), cases[i].says) && strstr(td_errmsg(), "variant.gguf"))),
            "variant %zu (%s): %s, '%s'", i, cases[i].c.key, td_status_name(st), td_errmsg());
        if (t && cases[i].c.kind == TD_STR) {
            /* the template text travels with the tokenizer and decides the chat format */
            const char *why;
            TD_CHECK(td_template_detect(td_tokenizer_chat_template(t), "x", &why) == TD_TEMPLATE_DEEPSEEK_R1);
        }
        if (t && cases[i].c.kind == TD_DROP) {
            /* without token types nothing is special: the markers are ordinary text, split by BPE */
            td_tokens v = {0};
            TD_CHECK(td_tokenizer_encode(t, "<\xef\xbd\x9cUser\xef\xbd\x9c>", 11, false, &v) == TD_OK && v.n > 1);
            td_tokens_free(&v);
        }
        td_tokenizer_free(t);
    }
    unlink(path);
}

/* An opened model finds its tokenizer; the safetensors fixtures have none, and say where they looked. */
static void td_test_for_model(void)
{
    td_model_params mp = {.quiet = true};
    td_model *m = NULL;
    if (td_model_open(td_test_fixture("gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf"), &mp, &m) != TD_OK) {
        TD_CHECKF(false, "opening the GGUF fixture: %s", td_errmsg());
        return;
    }
    td_tokenizer *t = NULL;
    TD_CHECKF(td_tokenizer_for_model(m, &t) == TD_OK, "%s", td_errmsg());
    TD_CHECK(t && td_tokenizer_n_tokens(t) == m->hp.vocab_size && td_tokenizer_eos(t) == 1);
    td_tokenizer_free(t);
    td_model_close(m);
    TD_CHECK(td_model_open(td_test_fixture("safetensors/tiny-dsv3-bf16"), &mp, &m) == TD_OK);
    t = (td_tokenizer *)&t;
    TD_CHECK(td_tokenizer_for_model(m, &t) == TD_E_NOT_FOUND && !t);
    TD_CHECKF(strstr(td_errmsg(), "tokenizer.json") && strstr(td_errmsg(), "tiny-dsv3-bf16"), "%s", td_errmsg());
    td_model_close(m);
}

int main(void)
{
    td_gguf *src;
    if (td_gguf_open(td_test_fixture("gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf"), &src) != TD_OK)
        return td_test_skip("the GGUF fixture is missing (TANDEM_SHARED)");
    char path[4200];
    snprintf(path, sizeof path, "%s/same.gguf", td_test_tmpdir());
    /* the metadata copied unchanged gives the same tokenizer: a control for the variants */
    TD_CHECK(td_write_variant(src, NULL, path) == TD_OK);
    td_tokenizer *a = NULL, *b = NULL;
    TD_CHECK(td_tokenizer_load(path, &a) == TD_OK && td_tokenizer_load(td_gguf_file_path(src, 0), &b) == TD_OK);
    if (a && b) {
        td_tokens x = {0}, y = {0};
        const char *text = "<\xef\xbd\x9cUser\xef\xbd\x9c>Hello, world 123!<think>";
        TD_CHECK(td_tokenizer_encode(a, text, strlen(text), true, &x) == TD_OK &&
                 td_tokenizer_encode(b, text, strlen(text), true, &y) == TD_OK && x.n == y.n && x.n > 3 &&
                 memcmp(x.ids, y.ids, (size_t)x.n * 4) == 0);
        TD_CHECK(x.ids[0] == td_tokenizer_bos(a)); /* add_bos_token = true in the fixture */
        td_tokens_free(&x);
        td_tokens_free(&y);
    }
    td_tokenizer_free(a);
    td_tokenizer_free(b);
    unlink(path);
    td_test_bad_metadata(src);
    td_gguf_close(src);
    td_test_for_model();
    return td_test_finish();
}
