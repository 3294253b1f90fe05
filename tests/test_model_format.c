/* The format of a model path comes from its first bytes, not its name, and a file that is no model says
 * what it looks like: empty, a GGUF with a bad magic, JSON, an HTML page, a Git LFS pointer, zeros, a
 * truncated download. Also the messages of directories without weights and of a GGUF whose metadata
 * disagrees with its tensors (no hint about a config.json it does not have). */
#include "td_model.h"
#include "td_model_format.h"
#include "td_test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool has(const char *needle)
{
    return strstr(td_errmsg(), needle) != NULL;
}

static void expect_bytes(const char *what, const void *bytes, unsigned n, unsigned long long size, td_status want,
                         td_model_format want_kind, const char *needle1, const char *needle2)
{
    td_model_format kind = TD_FORMAT_COUNT;
    td_status st = td_model_detect_bytes("x.bin", bytes, n, size, &kind);
    TD_CHECKF(st == want, "%s: status %d (%s)", what, st, td_errmsg());
    if (st == TD_OK) TD_CHECKF(kind == want_kind, "%s: format %d, want %d", what, kind, want_kind);
    if (needle1) TD_CHECKF(has(needle1) && (!needle2 || has(needle2)), "%s: message '%s'", what, td_errmsg());
}

static void test_bytes(void)
{
    unsigned char st[16] = {0x10, 0, 0, 0, 0, 0, 0, 0, '{', '"', '_', '_'};
    expect_bytes("safetensors", st, 12, 4096, TD_OK, TD_FORMAT_SAFETENSORS, NULL, NULL);
    /* a header longer than the file is still safetensors: its parser says the download is truncated */
    st[4] = 1;
    expect_bytes("truncated safetensors", st, 12, 100, TD_OK, TD_FORMAT_SAFETENSORS, NULL, NULL);
    expect_bytes("gguf", "GGUF\3\0\0\0", 8, 1 << 20, TD_OK, TD_FORMAT_GGUF, NULL, NULL);
    expect_bytes("empty", "", 0, 0, TD_E_FORMAT, 0, "empty file", NULL);
    expect_bytes("bad magic", "GGUX\3\0\0\0\x20\0\0\0\0\0\0\0", 16, 5000000, TD_E_FORMAT, 0, "not a GGUF (it starts with 47 47 55 58",
                 "not safetensors");
    expect_bytes("three bytes", "GGU", 3, 3, TD_E_FORMAT, 0, "too short", "truncated");
    expect_bytes("json", "\n  {\"architectures\": []}", 24, 24, TD_E_FORMAT, 0, "a JSON file", "config.json");
    expect_bytes("lfs", "version https://git-lfs.github.com/spec/v1\n", 44, 130, TD_E_FORMAT, 0, "Git LFS pointer",
                 "git lfs pull");
    expect_bytes("html", "<!DOCTYPE html><html>", 21, 21, TD_E_FORMAT, 0, "an HTML page", NULL);
    static const unsigned char zeros[64] = {0};
    expect_bytes("zeros", zeros, 64, 1 << 30, TD_E_FORMAT, 0, "all zero", NULL);
}

static const char *tmp_path(const char *name)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s", td_test_tmpdir(), name);
    return p;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) abort();
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len);
    if (fread(b, 1, *len, f) != *len) abort();
    fclose(f);
    return b;
}

static void expect_open(const char *path, td_status want, const char *needle1, const char *needle2,
                        const char *absent)
{
    td_model *m = NULL;
    td_status st = td_model_open(path, NULL, &m);
    TD_CHECKF(st == want, "%s: status %d (%s)", path, st, td_errmsg());
    TD_CHECKF(has(needle1) && (!needle2 || has(needle2)) && (!absent || !has(absent)), "%s: message '%s'", path,
              td_errmsg());
    td_model_close(m);
}

static void test_files(void)
{
    size_t len;
    uint8_t *gguf = read_all(td_test_fixture("gguf/tiny-dsv3-q8_0-legacy.gguf"), &len);

    /* the cases: an empty file and a bad magic once got "needs a config.json beside it" */
    td_test_write_file(tmp_path("empty.gguf"), "", 0);
    expect_open(tmp_path("empty.gguf"), TD_E_FORMAT, "empty file", NULL, "config.json");
    memcpy(gguf, "GGUX", 4);
    td_test_write_file(tmp_path("magic.gguf"), gguf, len);
    expect_open(tmp_path("magic.gguf"), TD_E_FORMAT, "not a GGUF (it starts with 47 47 55 58", "not safetensors",
                "config.json beside");
    memcpy(gguf, "GGUF", 4);
    /* named .safetensors, holding a GGUF: opened as the GGUF it is */
    td_test_write_file(tmp_path("really-a-gguf.safetensors"), gguf, len);
    td_model *m = NULL;
    TD_CHECKF(td_model_open(tmp_path("really-a-gguf.safetensors"), NULL, &m) == TD_OK, "%s", td_errmsg());
    if (m) TD_CHECK(strcmp(m->format, "gguf") == 0);
    td_model_close(m);
    /* a config.json given as the model */
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", td_test_fixture("safetensors/tiny-dsv3-bf16"));
    expect_open(cfg, TD_E_FORMAT, "a JSON file", "give the directory", NULL);

    /* a directory with config.json and a GGUF: says to give the GGUF, not which file it lacks alone */
    const char *dir = tmp_path("with-gguf");
    mkdir(dir, 0755);
    char p[4200];
    uint8_t *text;
    size_t cfg_len;
    text = read_all(cfg, &cfg_len);
    snprintf(p, sizeof p, "%s/config.json", dir);
    td_test_write_file(p, text, cfg_len);
    snprintf(p, sizeof p, "%s/tiny.gguf", dir);
    td_test_write_file(p, gguf, len);
    expect_open(dir, TD_E_NOT_FOUND, "holds a GGUF: give that file itself", "tiny.gguf", NULL);
    /* ... and with an empty model.safetensors */
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    td_test_write_file(p, "", 0);
    expect_open(dir, TD_E_FORMAT, "model.safetensors: empty file", NULL, NULL);
    /* a directory of shards without their index */
    const char *shards = tmp_path("shards");
    mkdir(shards, 0755);
    snprintf(p, sizeof p, "%s/config.json", shards);
    td_test_write_file(p, text, cfg_len);
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", shards);
    td_test_write_file(p, "x", 1);
    expect_open(shards, TD_E_NOT_FOUND, "model-00001-of-00002.safetensors", "index", NULL);
    /* ... and an index naming a shard that is not there */
    const char *index = "{\"weight_map\": {\"a.weight\": \"model-00002-of-00002.safetensors\"}}";
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", shards);
    td_test_write_file(p, index, strlen(index));
    expect_open(shards, TD_E_NOT_FOUND, "lists the shard model-00002-of-00002.safetensors", "incomplete download",
                NULL);
    free(text);

    /* a GGUF whose embedding_length disagrees with its tensors: the hint names the GGUF's metadata */
    const char *key = "deepseek2.embedding_length";
    uint8_t *at = memmem(gguf, len, key, strlen(key));
    TD_CHECK(at != NULL);
    if (at) {
        at += strlen(key) + 4; /* past the value type: the uint32 value */
        at[1] ^= 0x02;         /* 256 -> 768 */
        td_test_write_file(tmp_path("flipped.gguf"), gguf, len);
        expect_open(tmp_path("flipped.gguf"), TD_E_FORMAT, "token_embd.weight", "deepseek2", "config.json");
    }
    free(gguf);
}

int main(void)
{
    test_bytes();
    test_files();
    return td_test_finish();
}
