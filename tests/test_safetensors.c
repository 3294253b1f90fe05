/* The safetensors parser on good and broken images: every failure is an error with a message, never a
 * crash, and allocation failures are reported cleanly. */
#include "td_alloc.h"
#include "td_safetensors.h"
#include "td_test.h"

#include <stdlib.h>
#include <string.h>

/* An image: 8-byte length, the header text, then `data_len` bytes of data. */
static uint8_t *make_image(const char *header, size_t data_len, size_t *len)
{
    size_t hl = strlen(header);
    *len = 8 + hl + data_len;
    uint8_t *b = calloc(1, *len);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (uint8_t)i;
    return b;
}

/* Parses and expects failure with `status` and a message containing `needle`. */
static void expect_error(const char *header, size_t data_len, td_status status, const char *needle)
{
    size_t len;
    uint8_t *img = make_image(header, data_len, &len);
    td_st_header h;
    td_status st = td_st_parse(img, len, "bad.safetensors", &h);
    TD_CHECKF(st == status, "header %s: got status %d (%s), want %d", header, st, td_errmsg(), status);
    TD_CHECKF(strstr(td_errmsg(), needle) != NULL, "message '%s' lacks '%s'", td_errmsg(), needle);
    TD_CHECKF(strstr(td_errmsg(), "bad.safetensors") != NULL, "message '%s' does not name the file", td_errmsg());
    if (st == TD_OK) td_st_header_free(&h);
    free(img);
}

static const char *GOOD = "{\"__metadata__\":{\"format\":\"pt\"},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                          "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]}}";

static void test_good_and_truncated(void)
{
    size_t len;
    uint8_t *img = make_image(GOOD, 32, &len);
    td_st_header h;
    TD_CHECK(td_st_parse(img, len, "good", &h) == TD_OK);
    TD_CHECK(h.n_entries == 2 && h.n_meta == 1);
    int a = strcmp(h.entries[0].name, "a") == 0 ? 0 : 1;
    TD_CHECK(h.entries[a].type == TD_TYPE_F32 && h.entries[a].ndim == 2 && h.entries[a].shape[1] == 3);
    TD_CHECK(h.entries[1 - a].type == TD_TYPE_BF16 && h.entries[1 - a].begin == 24);
    td_st_header_free(&h);
    /* every proper prefix of the file is truncated somewhere and must fail cleanly */
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, img, cut);
        td_status st = td_st_parse(p, cut, "cut", &h);
        TD_CHECKF(st != TD_OK, "a file cut to %zu of %zu bytes was accepted", cut, len);
        if (st == TD_OK) td_st_header_free(&h);
        free(p);
    }
    free(img);
}

static void test_bad_headers(void)
{
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, TD_E_FORMAT, "not valid JSON");
    expect_error("[1,2]", 0, TD_E_FORMAT, "JSON object");
    expect_error("{\"a\":5}", 0, TD_E_FORMAT, "must be an object");
    expect_error("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, TD_E_FORMAT, "dtype");
    expect_error("{\"a\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, TD_E_UNSUPPORTED, "unknown dtype 'Q9'");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, TD_E_FORMAT, "shape[0]");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, TD_E_FORMAT, "shape[0]");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                 TD_E_UNSUPPORTED, "dimensions");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, TD_E_FORMAT, "data_offsets");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, TD_E_FORMAT, "backwards");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, TD_E_FORMAT, "truncated");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, TD_E_FORMAT, "give 8 bytes");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,8]}}", 8,
                 TD_E_FORMAT, "shape");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                 12, TD_E_FORMAT, "overlap");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                 16, TD_E_FORMAT, "listed twice");
    expect_error("{\"__metadata__\":{\"k\":1}}", 0, TD_E_FORMAT, "__metadata__");
    /* a header length that runs past the end of the file, and an absurd one */
    uint8_t small[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    td_st_header h;
    TD_CHECK(td_st_parse(small, sizeof small, "len", &h) == TD_E_FORMAT && strstr(td_errmsg(), "past the end"));
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    TD_CHECK(td_st_parse(huge, sizeof huge, "len", &h) == TD_E_FORMAT && strstr(td_errmsg(), "past the end"));
}

static void test_out_of_memory(void)
{
    size_t len;
    uint8_t *img = make_image(GOOD, 32, &len);
    bool succeeded = false;
    for (long n = 0; n < 500 && !succeeded; n++) {
        td_alloc_fail_after(n);
        td_st_header h;
        td_status st = td_st_parse(img, len, "oom", &h);
        td_alloc_fail_after(-1);
        if (st == TD_OK) {
            succeeded = true;
            td_st_header_free(&h);
        } else {
            TD_CHECKF(st == TD_E_NOMEM || st == TD_E_FORMAT, "allocation %ld failing gave status %d", n, st);
        }
    }
    TD_CHECK(succeeded);
    free(img);
}

static void test_fixture_file(void)
{
    td_tensor_dir *dir;
    TD_CHECK(td_tensor_dir_create(&dir) == TD_OK);
    const char *path = td_test_fixture("safetensors/tiny-dsv3-bf16/model.safetensors");
    TD_CHECKF(td_st_load(path, dir, NULL) == TD_OK, "%s", td_errmsg());
    const td_tensor *t = td_tensor_dir_find(dir, "model.embed_tokens.weight");
    TD_CHECK(t && t->type == TD_TYPE_BF16 && t->ndim == 2);
    TD_CHECK(td_tensor_dir_find(dir, "model.layers.3.eh_proj.weight") != NULL);
    TD_CHECK(td_tensor_dir_meta(dir, "format") != NULL);
    /* the same file twice: every name collides */
    TD_CHECK(td_st_load(path, dir, NULL) == TD_E_FORMAT && strstr(td_errmsg(), "appears twice"));
    td_tensor_dir_free(dir);
    /* a filtered load keeps only the prefix */
    TD_CHECK(td_tensor_dir_create(&dir) == TD_OK);
    TD_CHECK(td_st_load(path, dir, "model.layers.3.") == TD_OK);
    TD_CHECK(td_tensor_dir_find(dir, "model.layers.3.eh_proj.weight") != NULL);
    TD_CHECK(td_tensor_dir_find(dir, "model.embed_tokens.weight") == NULL);
    td_tensor_dir_free(dir);
}

int main(void)
{
    test_good_and_truncated();
    test_bad_headers();
    test_out_of_memory();
    test_fixture_file();
    return td_test_finish();
}
