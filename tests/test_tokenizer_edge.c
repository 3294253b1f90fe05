/* The tokenizer's rules on inputs the vectors do not reach: merge order and ties on a hand-made
 * vocabulary, added-token flags, U+FFFD substitution, streaming across split characters, the long-piece
 * path, regex details, bad files, and out-of-memory at every allocation of a load. */
#include "td_alloc.h"
#include "td_test.h"
#include "td_tokenizer_impl.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* GPT-2's byte alphabet, written out again here so the test does not lean on the code it checks. */
static void td_test_byte_char(int b, char *out)
{
    int cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
        int n = 0;
        for (int i = 0; i < b; i++) n += !((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174 && i <= 255));
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

/* A tokenizer.json by hand: ids 0..255 are the bytes; then merges whose results are known by
 * construction. The pre-tokenizer is DeepSeek-V3's (checked against the fixture in test_tokenizer). */
enum { ID_AB = 256, ID_ABC = 257, ID_BC = 258, ID_AA = 259, ID_AAA = 260, ID_X = 300, ID_Y = 301, ID_Z = 302 };

static char *td_make_json(bool strip_flags)
{
    cJSON *root = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int b = 0; b < 256; b++) {
        char c[4];
        td_test_byte_char(b, c);
        cJSON_AddNumberToObject(vocab, c, b);
    }
    cJSON_AddNumberToObject(vocab, "ab", ID_AB);
    cJSON_AddNumberToObject(vocab, "abc", ID_ABC);
    cJSON_AddNumberToObject(vocab, "bc", ID_BC);
    cJSON_AddNumberToObject(vocab, "aa", ID_AA);
    cJSON_AddNumberToObject(vocab, "aaa", ID_AAA);
    /* ranks: a b < ab c < b c < a a < aa a; "a aa" is absent, so "aaa" tells leftmost from rightmost */
    const char *merges[] = {"a b", "ab c", "b c", "a a", "aa a"};
    cJSON *m = cJSON_AddArrayToObject(model, "merges");
    for (int i = 0; i < 5; i++) cJSON_AddItemToArray(m, cJSON_CreateString(merges[i]));
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    const char *names[] = {"<X>", "<Y>", "<Z>"};
    for (int i = 0; i < 3; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", ID_X + i);
        cJSON_AddStringToObject(a, "content", names[i]);
        cJSON_AddBoolToObject(a, "special", i == 0);
        cJSON_AddBoolToObject(a, "lstrip", i == 0 && strip_flags);
        cJSON_AddBoolToObject(a, "rstrip", i == 0 && strip_flags);
        cJSON_AddBoolToObject(a, "normalized", i == 2);
        cJSON_AddItemToArray(added, a);
    }
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "Sequence");
    cJSON *steps = cJSON_AddArrayToObject(pre, "pretokenizers");
    for (int i = 0; i < 3; i++) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "type", "Split");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(s, "pattern"), "Regex", td_pretok_deepseek_v3[i]);
        cJSON_AddStringToObject(s, "behavior", "Isolated");
        cJSON_AddBoolToObject(s, "invert", false);
        cJSON_AddItemToArray(steps, s);
    }
    cJSON *bl = cJSON_CreateObject();
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "use_regex", false);
    cJSON_AddItemToArray(steps, bl);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "decoder"), "type", "ByteLevel");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static bool td_encodes_to(const td_tokenizer *t, const char *text, const int32_t *want, int n)
{
    td_tokens v = {0};
    td_status st = td_tokenizer_encode(t, text, strlen(text), false, &v);
    bool ok = st == TD_OK && v.n == n && memcmp(v.ids, want, (size_t)n * sizeof(int32_t)) == 0;
    if (!ok) {
        fprintf(stderr, "  '%s' ->", text);
        for (int64_t i = 0; i < v.n; i++) fprintf(stderr, " %d", v.ids[i]);
        fprintf(stderr, "%s%s\n", st ? " error: " : "", st ? td_errmsg() : "");
    }
    td_tokens_free(&v);
    return ok;
}

static void td_test_merge_rules(void)
{
    char *json = td_make_json(true);
    td_tokenizer *t = NULL;
    TD_CHECKF(td_tokenizer_from_json_text(json, strlen(json), "hand.json", &t) == TD_OK, "%s", td_errmsg());
    if (t) {
        TD_CHECK(td_encodes_to(t, "abc", (int32_t[]){ID_ABC}, 1)); /* ab first (rank 0), then ab+c */
        TD_CHECK(td_encodes_to(t, "bc", (int32_t[]){ID_BC}, 1));
        TD_CHECK(td_encodes_to(t, "aaa", (int32_t[]){ID_AAA}, 1));        /* (aa)a: leftmost on a tie */
        TD_CHECK(td_encodes_to(t, "aaaa", (int32_t[]){ID_AA, ID_AA}, 2)); /* a+a (rank 3) beats aa+a (rank 4) */
        TD_CHECK(td_encodes_to(t, "zabc", (int32_t[]){'z', ID_ABC}, 2));
        /* lstrip/rstrip: the spaces around <X> belong to it */
        TD_CHECK(td_encodes_to(t, "ab <X> c<Y>", (int32_t[]){ID_AB, ID_X, 'c', ID_Y}, 4));
        /* the normalized added token is matched in the second pass */
        TD_CHECK(td_encodes_to(t, "c<Z><X>", (int32_t[]){'c', ID_Z, ID_X}, 3));
        TD_CHECK(td_encodes_to(t, "<X", (int32_t[]){'<', 'X'}, 2));
        /* decoding hides the special <X> on request, never the plain added <Y> */
        char *s;
        TD_CHECK(td_tokenizer_decode(t, (int32_t[]){ID_AB, ID_X, ID_Y}, 3, false, &s, NULL) == TD_OK &&
                 strcmp(s, "ab<Y>") == 0);
        td_free(s);
        TD_CHECK(td_tokenizer_decode(t, (int32_t[]){ID_AB, ID_X, ID_Y}, 3, true, &s, NULL) == TD_OK &&
                 strcmp(s, "ab<X><Y>") == 0);
        td_free(s);
        /* bad ids */
        TD_CHECK(td_tokenizer_decode(t, (int32_t[]){5, 99999}, 2, true, &s, NULL) == TD_E_ARG && s == NULL);
        TD_CHECK(strstr(td_errmsg(), "99999") != NULL);
        TD_CHECK(td_tokenizer_decode(t, (int32_t[]){-1}, 1, true, &s, NULL) == TD_E_ARG);
        /* invalid UTF-8 is refused with the offending byte's position */
        td_tokens v = {0};
        TD_CHECK(td_tokenizer_encode(t, "ok\xff", 3, false, &v) == TD_E_FORMAT && strstr(td_errmsg(), "byte 2"));
        TD_CHECK(td_tokenizer_encode(t, "\xe2\x82", 2, false, &v) == TD_E_FORMAT);
        td_tokens_free(&v);
        /* the text stays byte for byte, NUL included */
        TD_CHECK(td_tokenizer_encode(t, "a\0b", 3, false, &v) == TD_OK && v.n == 3 && v.ids[1] == 0);
        td_tokens_free(&v);
    }
    td_tokenizer_free(t);
    free(json);
    json = td_make_json(false);
    TD_CHECK(td_tokenizer_from_json_text(json, strlen(json), "hand.json", &t) == TD_OK);
    if (t) TD_CHECK(td_encodes_to(t, "ab <X>", (int32_t[]){ID_AB, ' ', ID_X}, 3));
    td_tokenizer_free(t);
    free(json);
}

/* The Unicode standard's example of U+FFFD for maximal subparts (section 3.9, "U+FFFD Substitution of
 * Maximal Subparts"): 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 -> a FFFD FFFD FFFD b FFFD c FFFD FFFD d. */
static void td_test_lossy(void)
{
#define R "\xef\xbf\xbd"
    const uint8_t in[] = {0x61, 0xF1, 0x80, 0x80, 0xE1, 0x80, 0xC2, 0x62, 0x80, 0x63, 0x80, 0xBF, 0x64};
    char out[64];
    size_t n = td_utf8_lossy(in, sizeof in, out);
    const char *want = "a" R R R "b" R "c" R R "d";
    TD_CHECK(n == strlen(want) && memcmp(out, want, n) == 0);
    /* a surrogate (ED A0 80) and an overlong form (C0 AF) are one FFFD per byte */
    n = td_utf8_lossy((const uint8_t *)"\xed\xa0\x80", 3, out);
    TD_CHECK(n == 9 && memcmp(out, R R R, 9) == 0);
    n = td_utf8_lossy((const uint8_t *)"\xc0\xaf", 2, out);
    TD_CHECK(n == 6 && memcmp(out, R R, 6) == 0);
    TD_CHECK(td_utf8_valid_prefix((const uint8_t *)"ok\xf0\x9f\x99", 5) == 2);
#undef R
}

/* A character split over tokens comes out whole, once its last byte has arrived. */
static void td_test_streaming(const td_tokenizer *t)
{
    td_detok *d;
    TD_CHECK(td_detok_create(t, false, &d) == TD_OK);
    const uint8_t smile[4] = {0xF0, 0x9F, 0x99, 0x82};
    size_t n;
    for (int i = 0; i < 3; i++) {
        const char *p = td_detok_push(d, smile[i], &n);
        TD_CHECK(p && n == 0);
    }
    const char *p = td_detok_push(d, smile[3], &n);
    TD_CHECK(n == 4 && memcmp(p, smile, 4) == 0);
    /* a held-back start that never finishes is one U+FFFD, and the next character stays intact */
    td_detok_push(d, 0xE2, &n);
    p = td_detok_push(d, 'x', &n);
    TD_CHECK(n == 4 && memcmp(p, "\xef\xbf\xbdx", 4) == 0);
    td_detok_push(d, 0xE2, &n);
    p = td_detok_flush(d, &n);
    TD_CHECK(n == 3 && memcmp(p, "\xef\xbf\xbd", 3) == 0);
    /* hidden special tokens do not break a character in two */
    td_detok_push(d, 0xC3, &n);
    td_detok_push(d, ID_X, &n);
    TD_CHECK(n == 0);
    p = td_detok_push(d, 0xA9, &n);
    TD_CHECK(n == 2 && memcmp(p, "\xc3\xa9", 2) == 0);
    TD_CHECK(td_detok_push(d, -3, &n) == NULL);
    td_detok_free(d);
}

/* The heap path (long pieces) and the scan path (short ones) follow the same rule: compare them on
 * random pieces of the fixture vocabulary's common bytes. */
static void td_test_scan_vs_heap(const td_tokenizer *fix)
{
    const char alphabet[] = "eeettaoinsrhldcu  \n,.-";
    uint64_t rng = 42;
    char piece[300];
    int same = 0, total = 0;
    for (int iter = 0; iter < 400; iter++) {
        size_t n = 1 + td_test_rand(&rng) % (iter < 200 ? 40 : 299);
        for (size_t i = 0; i < n; i++) piece[i] = alphabet[td_test_rand(&rng) % (sizeof alphabet - 1)];
        td_tokens a = {0}, b = {0};
        bool ok = td_bpe_encode_piece_with(fix, piece, n, false, &a) == TD_OK &&
                  td_bpe_encode_piece_with(fix, piece, n, true, &b) == TD_OK;
        same += ok && a.n == b.n && memcmp(a.ids, b.ids, (size_t)a.n * sizeof(int32_t)) == 0;
        total++;
        td_tokens_free(&a);
        td_tokens_free(&b);
    }
    TD_CHECKF(same == total, "%d of %d pieces agree", same, total);
    /* a megabyte of spaces is one piece and must not take quadratic time */
    size_t big = 1 << 20;
    char *spaces = malloc(big);
    memset(spaces, ' ', big);
    td_tokens v = {0};
    TD_CHECK(td_tokenizer_encode(fix, spaces, big, false, &v) == TD_OK && v.n > 0 && v.n < (int64_t)big);
    char *back = NULL;
    size_t back_len = 0;
    TD_CHECK(td_tokenizer_decode(fix, v.ids, v.n, true, &back, &back_len) == TD_OK && back_len == big &&
             memcmp(back, spaces, big) == 0);
    td_free(back);
    td_tokens_free(&v);
    free(spaces);
}

typedef struct td_pieces {
    int n;
    size_t len[8];
} td_pieces;

static td_status td_count_piece(void *ctx, const char *s, size_t n)
{
    (void)s;
    td_pieces *p = ctx;
    if (p->n < 8) p->len[p->n] = n;
    p->n++;
    return TD_OK;
}

/* \s is Unicode White_Space as in Oniguruma: U+180E (a format character) is not a space, so " \u180E"
 * is a space followed by a gap, not one run of whitespace as PCRE2's own \s would make it. */
static void td_test_white_space(const td_tokenizer *fix)
{
    td_pretok_run *r;
    TD_CHECK(td_pretok_run_create(&fix->pretok, &r) == TD_OK);
    td_pieces p = {0};
    TD_CHECK(td_pretok_split(&fix->pretok, r, " \xe1\xa0\x8e", 4, td_count_piece, &p) == TD_OK);
    TD_CHECKF(p.n == 2 && p.len[0] == 1 && p.len[1] == 3, "%d pieces", p.n);
    /* U+3000 (ideographic space) is White_Space: "\u3000\u3000" is one piece */
    p = (td_pieces){0};
    TD_CHECK(td_pretok_split(&fix->pretok, r, "\xe3\x80\x80\xe3\x80\x80", 6, td_count_piece, &p) == TD_OK);
    TD_CHECK(p.n == 1 && p.len[0] == 6);
    td_pretok_run_free(r);
}

/* Each malformed or unsupported tokenizer.json is refused with a status and a message naming it. */
static void td_test_bad_json(const char *fixture_text)
{
    struct {
        const char *what;
        const char *path;  /* object path to change, '/'-separated */
        const char *value; /* JSON; NULL removes the key */
        td_status want;
    } cases[] = {
        {"no model", "model", NULL, TD_E_FORMAT},
        {"unigram", "model/type", "\"Unigram\"", TD_E_UNSUPPORTED},
        {"vocab id not a number", "model/vocab/a", "\"x\"", TD_E_FORMAT},
        {"vocab id huge", "model/vocab/a", "1e12", TD_E_FORMAT},
        {"vocab id fractional", "model/vocab/a", "3.5", TD_E_FORMAT},
        {"empty vocab", "model/vocab", "{}", TD_E_FORMAT},
        {"unknown merge part", "model/merges", "[[\"zzz\",\"qqq\"]]", TD_E_FORMAT},
        {"merge without space", "model/merges", "[\"abc\"]", TD_E_FORMAT},
        {"merge not a pair", "model/merges", "[[\"a\"]]", TD_E_FORMAT},
        {"merges not a list", "model/merges", "7", TD_E_FORMAT},
        {"id given twice", "added_tokens", "[{\"id\":16,\"content\":\"<zz>\"}]", TD_E_FORMAT},
        {"added token without id", "added_tokens", "[{\"content\":\"<zz>\"}]", TD_E_FORMAT},
        {"single_word", "added_tokens", "[{\"id\":5000,\"content\":\"<zz>\",\"single_word\":true}]", TD_E_UNSUPPORTED},
        {"normalizer", "normalizer", "{\"type\":\"NFC\"}", TD_E_UNSUPPORTED},
        {"no pre_tokenizer", "pre_tokenizer", "null", TD_E_UNSUPPORTED},
        {"bad regex", "pre_tokenizer",
         "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"([\"},"
         "\"behavior\":\"Isolated\"},{\"type\":\"ByteLevel\",\"use_regex\":false}]}",
         TD_E_FORMAT},
        {"no ByteLevel", "pre_tokenizer", "{\"type\":\"Whitespace\"}", TD_E_UNSUPPORTED},
        {"decoder", "decoder", "null", TD_E_UNSUPPORTED},
        {"byte_fallback", "model/byte_fallback", "true", TD_E_UNSUPPORTED},
        {"post_processor", "post_processor", "{\"type\":\"BertProcessing\"}", TD_E_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *root = cJSON_Parse(fixture_text);
        char path[128];
        snprintf(path, sizeof path, "%s", cases[i].path);
        cJSON *obj = root;
        char *key = path, *slash;
        while ((slash = strchr(key, '/'))) {
            *slash = 0;
            obj = cJSON_GetObjectItem(obj, key);
            key = slash + 1;
        }
        if (cases[i].value) {
            cJSON *v = cJSON_Parse(cases[i].value);
            if (cJSON_GetObjectItem(obj, key))
                cJSON_ReplaceItemInObject(obj, key, v);
            else
                cJSON_AddItemToObject(obj, key, v);
        } else {
            cJSON_DeleteItemFromObject(obj, key);
        }
        char *text = cJSON_PrintUnformatted(root);
        td_tokenizer *t = (td_tokenizer *)&t;
        td_status st = td_tokenizer_from_json_text(text, strlen(text), "bad.json", &t);
        TD_CHECKF(st == cases[i].want && t == NULL && strstr(td_errmsg(), "bad.json"), "%s: status %s, message '%s'",
                  cases[i].what, td_status_name(st), td_errmsg());
        free(text);
        cJSON_Delete(root);
    }
    td_tokenizer *t;
    TD_CHECK(td_tokenizer_from_json_text("{\"model\": [", 11, "bad.json", &t) == TD_E_FORMAT && !t);
    TD_CHECK(td_tokenizer_from_json_text("", 0, "bad.json", &t) == TD_E_FORMAT);
    TD_CHECK(td_tokenizer_load("/nonexistent/tokenizer.json", &t) == TD_E_IO);
    TD_CHECK(td_tokenizer_load(td_test_tmpdir(), &t) == TD_E_NOT_FOUND && strstr(td_errmsg(), "tokenizer.json"));
}

/* Every allocation of a load may fail: each failure is a clean TD_E_NOMEM (the sanitizer build checks
 * that nothing leaks). */
static void td_test_oom(void)
{
    char *json = td_make_json(true);
    int failures = 0;
    for (long k = 0; k < 100000; k++) {
        td_alloc_fail_after(k);
        td_tokenizer *t = NULL;
        td_status st = td_tokenizer_from_json_text(json, strlen(json), "hand.json", &t);
        td_tokens v = {0};
        if (st == TD_OK) st = td_tokenizer_encode(t, "ab <X> aaa", 10, true, &v);
        td_tokens_free(&v);
        bool hook_fired = td_alloc_failures() > 0;
        td_alloc_fail_after(-1);
        td_tokenizer_free(t);
        if (!hook_fired) {
            TD_CHECK(st == TD_OK);
            break;
        }
        /* cJSON allocates through the same hook and cannot tell its caller that memory ran out: a parse
         * cut short reads as malformed JSON. Everything after the parse must say "out of memory". */
        bool json_cut = st == TD_E_FORMAT && strstr(td_errmsg(), "not valid JSON");
        failures += st == TD_E_NOMEM;
        if (st != TD_E_NOMEM && !json_cut)
            TD_CHECKF(false, "allocation %ld failed but the status is %s: %s", k, td_status_name(st), td_errmsg());
    }
    TD_CHECK(failures > 10);
    free(json);
}

int main(void)
{
    td_test_lossy();
    td_test_merge_rules();
    td_test_oom();
    char *json = td_make_json(true);
    td_tokenizer *hand = NULL;
    TD_CHECK(td_tokenizer_from_json_text(json, strlen(json), "hand.json", &hand) == TD_OK);
    if (hand) td_test_streaming(hand);
    td_tokenizer_free(hand);
    free(json);

    FILE *f = fopen(td_test_fixture("tokenizer/tokenizer.json"), "rb");
    if (!f) {
        fprintf(stderr, "fixture tokenizer.json not found: skipping its checks\n");
        return td_test_finish();
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    text[fread(text, 1, (size_t)n, f)] = 0;
    fclose(f);
    td_tokenizer *fix = NULL;
    TD_CHECK(td_tokenizer_from_json_text(text, strlen(text), "tokenizer.json", &fix) == TD_OK);
    if (fix) {
        td_test_scan_vs_heap(fix);
        td_test_white_space(fix);
    }
    td_tokenizer_free(fix);
    td_test_bad_json(text);
    free(text);
    return td_test_finish();
}
