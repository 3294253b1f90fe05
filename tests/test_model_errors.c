/* Broken model directories built from a fixture: each is refused with an error that names the file, the
 * tensor or the field, never a crash. Also sharded checkpoints (index.json), which must load and compute. */
#include "td_alloc.h"
#include "td_engine.h"
#include "td_eval.h"
#include "td_mmap.h"
#include "td_test.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *FIX = "safetensors/tiny-dsv3-bf16";

typedef struct image {
    uint8_t *bytes;
    size_t len, data_off;
    cJSON *header;
} image;

static image read_fixture_model(void)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", td_test_fixture(FIX));
    image im = {0};
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    im.len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    im.bytes = malloc(im.len);
    if (fread(im.bytes, 1, im.len, f) != im.len) abort();
    fclose(f);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | im.bytes[i];
    im.data_off = 8 + hl;
    im.header = cJSON_ParseWithLength((const char *)im.bytes + 8, hl);
    return im;
}

/* Writes header + the fixture's data region (so offsets stay valid) to dir/name. */
static void write_with_header(const image *im, const cJSON *header, const char *dir, const char *name, size_t cut)
{
    char *h = cJSON_PrintUnformatted(header);
    size_t hl = strlen(h), pad = (8 - hl % 8) % 8;
    size_t total = 8 + hl + pad + (im->len - im->data_off);
    uint8_t *out = malloc(total);
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)(hl + pad) >> (8 * i));
    memcpy(out + 8, h, hl);
    memset(out + 8 + hl, ' ', pad);
    memcpy(out + 8 + hl + pad, im->bytes + im->data_off, im->len - im->data_off);
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    td_test_write_file(p, out, cut ? cut : total);
    free(out);
    free(h);
}

static void copy_config(const char *dir, const char *replace_key, cJSON *value)
{
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/config.json", td_test_fixture(FIX));
    char *text;
    td_read_text_file(src, 1 << 20, &text, NULL);
    cJSON *j = cJSON_Parse(text);
    td_free(text);
    if (replace_key) cJSON_ReplaceItemInObject(j, replace_key, value);
    char *out = cJSON_Print(j);
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    td_test_write_file(dst, out, strlen(out));
    free(out);
    cJSON_Delete(j);
}

static const char *case_dir(const char *name)
{
    static char d[4096];
    snprintf(d, sizeof d, "%s/%s", td_test_tmpdir(), name);
    mkdir(d, 0755);
    return d;
}

static void expect_open_error(const char *dir, td_status want, const char *needle1, const char *needle2)
{
    td_model *m = NULL;
    td_status st = td_model_open(dir, NULL, &m);
    TD_CHECKF(st == want, "%s: status %d (%s), want %d", dir, st, td_errmsg(), want);
    TD_CHECKF(strstr(td_errmsg(), needle1) && (!needle2 || strstr(td_errmsg(), needle2)), "%s: message '%s'", dir,
              td_errmsg());
    td_model_close(m);
}

int main(void)
{
    image im = read_fixture_model();
    const char *d;

    /* truncated weights: the last tensor's data runs past the end */
    d = case_dir("truncated");
    copy_config(d, NULL, NULL);
    write_with_header(&im, im.header, d, "model.safetensors", im.len / 2);
    expect_open_error(d, TD_E_FORMAT, "model.safetensors", "truncated");

    /* a missing tensor */
    d = case_dir("missing");
    copy_config(d, NULL, NULL);
    cJSON *h = cJSON_Duplicate(im.header, 1);
    cJSON_DeleteItemFromObject(h, "model.layers.1.mlp.experts.3.up_proj.weight");
    write_with_header(&im, h, d, "model.safetensors", 0);
    cJSON_Delete(h);
    expect_open_error(d, TD_E_NOT_FOUND, "model.layers.1.mlp.experts.3.up_proj.weight", "missing");

    /* an unknown dtype */
    d = case_dir("dtype");
    copy_config(d, NULL, NULL);
    h = cJSON_Duplicate(im.header, 1);
    cJSON *t = cJSON_GetObjectItem(h, "model.norm.weight");
    cJSON_ReplaceItemInObject(t, "dtype", cJSON_CreateString("F4"));
    write_with_header(&im, h, d, "model.safetensors", 0);
    cJSON_Delete(h);
    expect_open_error(d, TD_E_UNSUPPORTED, "model.norm.weight", "F4");

    /* config and weights disagree on a shape */
    d = case_dir("shape");
    copy_config(d, "kv_lora_rank", cJSON_CreateNumber(32));
    write_with_header(&im, im.header, d, "model.safetensors", 0);
    expect_open_error(d, TD_E_FORMAT, "kv_a_proj_with_mqa", "expected [48, 256]");

    /* a nonsensical config field */
    d = case_dir("config");
    copy_config(d, "n_group", cJSON_CreateNumber(3));
    write_with_header(&im, im.header, d, "model.safetensors", 0);
    expect_open_error(d, TD_E_FORMAT, "config.json", "n_group");

    /* no weights at all */
    d = case_dir("empty");
    copy_config(d, NULL, NULL);
    expect_open_error(d, TD_E_NOT_FOUND, "model.safetensors", NULL);

    /* sharded: two files, each with half of the tensors, and an index */
    d = case_dir("sharded");
    copy_config(d, NULL, NULL);
    cJSON *a = cJSON_Duplicate(im.header, 1), *b = cJSON_Duplicate(im.header, 1);
    cJSON *index = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(index, "weight_map");
    int i = 0;
    for (cJSON *e = im.header->child; e; e = e->next, i++) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        const char *shard = i % 2 ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
        cJSON_DeleteItemFromObject(i % 2 ? a : b, e->string);
        cJSON_AddStringToObject(map, e->string, shard);
    }
    write_with_header(&im, a, d, "model-00001-of-00002.safetensors", 0);
    write_with_header(&im, b, d, "model-00002-of-00002.safetensors", 0);
    char *itext = cJSON_Print(index), p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    td_test_write_file(p, itext, strlen(itext));
    td_model *m;
    TD_CHECKF(td_model_open(d, NULL, &m) == TD_OK, "sharded: %s", td_errmsg());
    if (m) {
        TD_CHECK(td_tensor_dir_file_count(m->dir) == 2);
        td_engine *e;
        td_session *s;
        td_engine_params ep = {.kernels = TD_KERNELS_REF};
        td_session_params sp = {.n_ctx = 128};
        TD_CHECK(td_engine_open(m, &ep, &e) == TD_OK && td_session_create(e, &sp, &s) == TD_OK);
        char ref[4096];
        snprintf(ref, sizeof ref, "%s/reference.safetensors", td_test_fixture(FIX));
        td_eval_result r;
        TD_CHECKF(td_eval_run(s, ref, NULL, &r) == TD_OK, "%s", td_errmsg());
        TD_CHECKF(r.logits_max_rel_err < 1e-4 && r.greedy_match == r.greedy_steps, "sharded eval %.3g",
                  r.logits_max_rel_err);
        td_session_free(s);
        td_engine_close(e);
        td_model_close(m);
    }
    /* an index that promises a tensor its shard lacks */
    cJSON_AddStringToObject(map, "model.extra.weight", "model-00001-of-00002.safetensors");
    free(itext);
    itext = cJSON_Print(index);
    td_test_write_file(p, itext, strlen(itext));
    expect_open_error(d, TD_E_NOT_FOUND, "model.extra.weight", "index");
    free(itext);
    cJSON_Delete(index);
    cJSON_Delete(a);
    cJSON_Delete(b);

    /* out of memory at every allocation of a whole model open: clean failures, no leaks */
    bool opened = false;
    for (long n = 0; n < 100000 && !opened; n += (n < 200 ? 1 : 97)) {
        td_alloc_fail_after(n);
        td_status st = td_model_open(td_test_fixture(FIX), NULL, &m);
        td_alloc_fail_after(-1);
        if (st == TD_OK) {
            opened = true;
            td_model_close(m);
        } else {
            TD_CHECKF(st == TD_E_NOMEM || st == TD_E_FORMAT, "allocation %ld: status %d (%s)", n, st, td_errmsg());
        }
    }
    TD_CHECK(opened);

    cJSON_Delete(im.header);
    free(im.bytes);
    return td_test_finish();
}
