/* tandem bench tokenize: encoding speed on one core, in MB/s of input text. */
#include "td_alloc.h"
#include "td_bench.h"
#include "td_cli.h"
#include "td_clock.h"
#include "td_mmap.h"
#include "td_tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void td_bench_tokenize_help(void)
{
    printf("usage: tandem bench tokenize [--file F] [--tokenizer T] [--repeat N] [--json]\n\n"
           "Encodes a text file on one core and prints MB/s (1 MB = 10^6 bytes of input).\n"
           "  --file F        UTF-8 text (default /tmp/corpus/corpus.txt, the output of\n"
           "                  ../shared/corpus/make_corpus.py; without it, the tokenizer vectors' texts)\n"
           "  --tokenizer T   tokenizer.json, HF directory or .gguf (default: the fixture tokenizer)\n"
           "  --repeat N      runs; the best is reported (default 3)\n"
           "  --json          print only the JSON line\n");
}

/* The vectors' texts joined by blank lines: a small stand-in when no corpus file is at hand. */
static td_status td_bench_vector_text(char **out, uint64_t *len)
{
    char path[4096], *json;
    uint64_t n;
    snprintf(path, sizeof path, "%s/fixtures/tokenizer/tokenizer_vectors.json", td_cli_shared_dir());
    TD_TRY(td_read_text_file(path, 64ull << 20, &json, &n));
    cJSON *cases = cJSON_ParseWithLength(json, (size_t)n);
    td_free(json);
    size_t cap = 1 << 16, o = 0;
    char *buf = td_malloc(cap);
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        const cJSON *t = cJSON_GetObjectItem(c, "text");
        size_t k = cJSON_IsString(t) ? strlen(t->valuestring) : 0;
        if (!buf || o + k + 3 > cap) {
            char *nb = buf ? td_realloc(buf, cap = 2 * (cap + k)) : NULL;
            if (!nb) break;
            buf = nb;
        }
        memcpy(buf + o, t->valuestring, k);
        o += k;
        memcpy(buf + o, "\n\n", 2);
        o += 2;
    }
    cJSON_Delete(cases);
    if (!buf || !cases) {
        td_free(buf);
        return td_fail(TD_E_FORMAT, "%s: cannot read the tokenizer vectors", path);
    }
    buf[o] = '\0';
    *out = buf;
    *len = o;
    return TD_OK;
}

int td_bench_tokenize(int argc, char **argv)
{
    const char *file = NULL, *tok_path = NULL;
    int repeat = 3;
    bool json_only = false;
    td_args a;
    td_args_init(&a, "bench tokenize", argc, argv);
    while (td_args_next(&a)) {
        const char *v;
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_bench_tokenize_help();
            return 0;
        } else if (td_args_is(&a, "--file")) {
            if (!(file = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--tokenizer")) {
            if (!(tok_path = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--repeat")) {
            if (!(v = td_args_value(&a)) || !td_parse_int(&a, v, 1, 1000, &repeat)) return 2;
        } else if (td_args_is(&a, "--json")) {
            json_only = true;
        } else {
            return td_args_unknown(&a);
        }
    }
    char tok_default[4096];
    snprintf(tok_default, sizeof tok_default, "%s/fixtures/tokenizer/tokenizer.json", td_cli_shared_dir());
    if (!tok_path) tok_path = tok_default;
    const char *default_file = "/tmp/corpus/corpus.txt";
    if (!file && td_path_exists(default_file)) file = default_file;

    td_tokenizer *t = NULL;
    char *text = NULL;
    uint64_t len = 0;
    td_status st = td_tokenizer_load(tok_path, &t);
    if (st == TD_OK) st = file ? td_read_text_file(file, 1ull << 34, &text, &len) : td_bench_vector_text(&text, &len);
    if (st != TD_OK) {
        td_tokenizer_free(t);
        return td_cli_fail("bench tokenize", st);
    }
    double best = 1e30;
    int64_t n_tokens = 0;
    for (int r = 0; r < repeat && st == TD_OK; r++) {
        td_tokens ids = {0};
        double t0 = td_now();
        st = td_tokenizer_encode(t, text, (size_t)len, false, &ids);
        double dt = td_now() - t0;
        if (dt < best) best = dt;
        n_tokens = ids.n;
        td_tokens_free(&ids);
    }
    int rc = 0;
    if (st != TD_OK) {
        rc = td_cli_fail("bench tokenize", st);
    } else {
        double mbs = (double)len / best / 1e6;
        if (!json_only)
            printf("tokenizer  %s\ntext       %s: %.2f MB, %lld tokens (%.2f bytes/token)\nencode     %.3f s best of "
                   "%d, %.2f MB/s on one core (target >= 5 MB/s)\n",
                   tok_path, file ? file : "tokenizer vectors", (double)len / 1e6, (long long)n_tokens,
                   n_tokens ? (double)len / (double)n_tokens : 0.0, best, repeat, mbs);
        printf("{\"bench\":\"tokenize\",\"bytes\":%llu,\"tokens\":%lld,\"seconds\":%.4f,\"mb_per_s\":%.3f}\n",
               (unsigned long long)len, (long long)n_tokens, best, mbs);
    }
    td_free(text);
    td_tokenizer_free(t);
    return rc;
}
