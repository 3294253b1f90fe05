/* The tokenizer against the outside vectors (HF tokenizers 0.23): every case encodes to its ids and
 * decodes to its text, through tokenizer.json and through the GGUF fixtures' embedded vocabulary; the
 * streaming decoder gives the same text without ever cutting a character. */
#include "td_alloc.h"
#include "td_test.h"
#include "td_tokenizer.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static char *td_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    if (len) *len = (size_t)n;
    return buf;
}

/* Streams ids through td_detok; checks every piece is valid UTF-8 and returns the concatenation. */
static char *td_stream_decode(const td_tokenizer *t, const int32_t *ids, int n)
{
    td_detok *d;
    if (td_detok_create(t, true, &d) != TD_OK) return NULL;
    size_t cap = 64, len = 0;
    char *all = malloc(cap);
    for (int i = 0; i <= n; i++) {
        size_t k;
        const char *piece = i < n ? td_detok_push(d, ids[i], &k) : td_detok_flush(d, &k);
        TD_CHECK(piece != NULL);
        if (!piece) break;
        TD_CHECKF(td_utf8_valid_prefix((const uint8_t *)piece, k) == k, "piece %d is not whole UTF-8", i);
        while (len + k + 1 > cap) all = realloc(all, cap *= 2);
        memcpy(all + len, piece, k);
        len += k;
    }
    all[len] = '\0';
    td_detok_free(d);
    return all;
}

/* Runs all vectors; returns the number of cases that matched fully. */
static int td_check_vectors(const td_tokenizer *t, const cJSON *cases, const char *label)
{
    int ok_cases = 0, idx = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        const char *decoded = cJSON_GetObjectItem(c, "decoded")->valuestring;
        const cJSON *ids = cJSON_GetObjectItem(c, "ids");
        int n = cJSON_GetArraySize(ids);
        int32_t *want = calloc((size_t)n + 1, sizeof(int32_t));
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, ids) want[i++] = (int32_t)e->valuedouble;
        td_tokens got = {0};
        td_status st = td_tokenizer_encode(t, text, strlen(text), false, &got);
        bool enc_ok = st == TD_OK && got.n == n && (n == 0 || memcmp(got.ids, want, (size_t)n * sizeof(int32_t)) == 0);
        TD_CHECKF(enc_ok, "%s case %d: encoding '%.60s' gave %lld ids (want %d)%s%s", label, idx, text,
                  (long long)got.n, n, st ? ": " : "", st ? td_errmsg() : "");
        if (!enc_ok && got.n > 0) {
            int k = 0;
            while (k < n && k < got.n && got.ids[k] == want[k]) k++;
            fprintf(stderr, "  first difference at %d: got %d want %d\n", k, k < got.n ? got.ids[k] : -1,
                    k < n ? want[k] : -1);
        }
        char *dec = NULL;
        size_t dec_len = 0;
        st = td_tokenizer_decode(t, want, n, true, &dec, &dec_len);
        bool dec_ok = st == TD_OK && dec_len == strlen(decoded) && strcmp(dec, decoded) == 0;
        TD_CHECKF(dec_ok, "%s case %d: decoding gave '%.60s', want '%.60s'", label, idx, dec ? dec : "(error)",
                  decoded);
        char *streamed = td_stream_decode(t, want, n);
        TD_CHECKF(streamed && strcmp(streamed, decoded) == 0, "%s case %d: streaming decode differs", label, idx);
        ok_cases += enc_ok && dec_ok && streamed && strcmp(streamed, decoded) == 0;
        free(streamed);
        td_free(dec);
        td_tokens_free(&got);
        free(want);
        idx++;
    }
    fprintf(stderr, "%s: %d of %d cases match\n", label, ok_cases, idx);
    return ok_cases;
}

/* The patterns compiled in for GGUF's "deepseek-v3" must be the ones the fixture's tokenizer.json has. */
static void td_check_preset_patterns(const cJSON *tj)
{
    extern const char *const td_pretok_deepseek_v3[3];
    const cJSON *seq = cJSON_GetObjectItem(cJSON_GetObjectItem(tj, "pre_tokenizer"), "pretokenizers");
    int i = 0;
    const cJSON *step;
    cJSON_ArrayForEach(step, seq)
    {
        const cJSON *re = cJSON_GetObjectItem(cJSON_GetObjectItem(step, "pattern"), "Regex");
        if (!re) continue;
        TD_CHECKF(i < 3 && strcmp(re->valuestring, td_pretok_deepseek_v3[i]) == 0, "split %d differs from the preset",
                  i);
        i++;
    }
    TD_CHECK(i == 3);
}

static void td_check_json_source(const cJSON *cases)
{
    td_tokenizer *t = NULL;
    td_status st = td_tokenizer_load(td_test_fixture("tokenizer/tokenizer.json"), &t);
    TD_CHECKF(st == TD_OK, "%s", td_errmsg());
    if (!t) return;
    TD_CHECK(td_tokenizer_n_tokens(t) == 4096);
    TD_CHECK(td_check_vectors(t, cases, "tokenizer.json") == cJSON_GetArraySize(cases));
    /* the directory form finds the same file */
    td_tokenizer *t2 = NULL;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", td_test_fixture("tokenizer"));
    TD_CHECKF(td_tokenizer_load(dir, &t2) == TD_OK, "%s", td_errmsg());
    td_tokenizer_free(t2);
    /* DeepSeek's BOS is known by name, and add_special puts it in front */
    int32_t bos = td_tokenizer_find(t, "<\xef\xbd\x9c"
                                       "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>");
    TD_CHECK(bos >= 0 && td_tokenizer_bos(t) == bos);
    td_tokens v = {0};
    TD_CHECK(td_tokenizer_encode(t, "hi", 2, true, &v) == TD_OK && v.n >= 2 && v.ids[0] == bos);
    td_tokens_free(&v);
    td_tokenizer_free(t);
}

static void td_check_gguf_source(const cJSON *cases)
{
    const char *files[] = {"gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf", "gguf/tiny-dsv3-q8_0-legacy.gguf"};
    for (int i = 0; i < 2; i++) {
        td_tokenizer *t = NULL;
        td_status st = td_tokenizer_load(td_test_fixture(files[i]), &t);
        TD_CHECKF(st == TD_OK, "%s", td_errmsg());
        if (!t) continue;
        TD_CHECK(td_tokenizer_bos(t) == 0 && td_tokenizer_eos(t) == 1);
        TD_CHECK(td_check_vectors(t, cases, files[i]) == cJSON_GetArraySize(cases));
        td_tokenizer_free(t);
    }
}

int main(void)
{
    size_t len;
    char *vec_text = td_slurp(td_test_fixture("tokenizer/tokenizer_vectors.json"), &len);
    char *tok_text = td_slurp(td_test_fixture("tokenizer/tokenizer.json"), NULL);
    if (!vec_text || !tok_text) return td_test_skip("tokenizer fixtures not found (set TANDEM_SHARED)");
    cJSON *cases = cJSON_ParseWithLength(vec_text, len);
    cJSON *tj = cJSON_Parse(tok_text);
    TD_CHECK(cJSON_GetArraySize(cases) == 344);
    td_check_preset_patterns(tj);
    td_check_json_source(cases);
    td_check_gguf_source(cases);
    cJSON_Delete(cases);
    cJSON_Delete(tj);
    free(vec_text);
    free(tok_text);
    return td_test_finish();
}
