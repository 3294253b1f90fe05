#include "td_hf.h"

#include "td_alloc.h"
#include "td_safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Loads every distinct shard named in model.safetensors.index.json and checks that each tensor the
 * index promises is really in its shard. */
static td_status td_hf_load_index(const char *dir_path, const char *index_path, td_tensor_dir *dir,
                                   const char *only_prefix)
{
    char *text;
    uint64_t len;
    TD_TRY(td_read_text_file(index_path, 256u << 20, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, (size_t)len);
    td_free(text);
    if (!root) return td_fail(TD_E_FORMAT, "%s: not valid JSON", index_path);
    td_status st = TD_OK;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        st = td_fail(TD_E_FORMAT, "%s: missing object 'weight_map'", index_path);
        goto done;
    }
    /* shards in order of first appearance, each loaded once */
    const cJSON *e;
    size_t plen = only_prefix ? strlen(only_prefix) : 0;
    int n = cJSON_GetArraySize(map);
    const char **shards = td_calloc((size_t)(n ? n : 1), sizeof *shards);
    int n_shards = 0;
    if (!shards) {
        st = td_fail(TD_E_NOMEM, "out of memory");
        goto done;
    }
    cJSON_ArrayForEach(e, map)
    {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || strcmp(e->valuestring, "..") == 0) {
            st = td_fail(TD_E_FORMAT, "%s: weight_map['%s'] must be a file name in the same directory", index_path,
                         e->string);
            break;
        }
        if (plen && strncmp(e->string, only_prefix, plen) != 0) continue;
        int k = 0;
        while (k < n_shards && strcmp(shards[k], e->valuestring) != 0) k++;
        if (k == n_shards) shards[n_shards++] = e->valuestring;
    }
    for (int k = 0; k < n_shards && st == TD_OK; k++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir_path, shards[k]);
        if (!td_path_exists(p))
            st = td_fail(TD_E_NOT_FOUND, "%s lists the shard %s, which is not in %s (an incomplete download?)",
                         index_path, shards[k], dir_path);
        else
            st = td_st_load(p, dir, only_prefix);
    }
    td_free(shards);
    if (st != TD_OK) goto done;
    cJSON_ArrayForEach(e, map)
    {
        if (plen && strncmp(e->string, only_prefix, plen) != 0) continue;
        if (!td_tensor_dir_find(dir, e->string)) {
            st = td_fail(TD_E_NOT_FOUND, "%s: tensor '%s' should be in %s but is not (incomplete download?)", index_path,
                         e->string, e->valuestring);
            break;
        }
    }
done:
    cJSON_Delete(root);
    return st;
}

static bool td_has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A directory without the weights an HF checkpoint names: says what it holds instead, and what to give. */
static td_status td_hf_no_weights(const char *path)
{
    char gguf[256] = "", shards[256] = "";
    int n_st = 0;
    DIR *d = opendir(path);
    for (struct dirent *e = d ? readdir(d) : NULL; e; e = readdir(d)) {
        if (td_has_suffix(e->d_name, ".gguf") && !gguf[0]) snprintf(gguf, sizeof gguf, "%s", e->d_name);
        if (td_has_suffix(e->d_name, ".safetensors") && strcmp(e->d_name, "reference.safetensors") != 0) {
            size_t used = strlen(shards);
            if (n_st < 3 && used + 1 < sizeof shards)
                snprintf(shards + used, sizeof shards - used, "%s%s", n_st ? ", " : "", e->d_name);
            n_st++;
        }
    }
    if (d) closedir(d);
    const char *want = "has no model.safetensors or model.safetensors.index.json, which a Hugging Face model "
                       "directory needs beside config.json";
    if (gguf[0])
        return td_fail(TD_E_NOT_FOUND, "%s %s; it holds a GGUF: give that file itself (%s/%s)", path, want, path, gguf);
    if (n_st)
        return td_fail(TD_E_NOT_FOUND,
                       "%s %s; it holds %d other .safetensors file%s (%s%s): without the index that lists their "
                       "tensors (an incomplete download?), give one file itself",
                       path, want, n_st, n_st == 1 ? "" : "s", shards, n_st > 3 ? ", ..." : "");
    return td_fail(TD_E_NOT_FOUND, "%s %s; it holds no weights at all (an incomplete download?)", path, want);
}

td_status td_hf_load_weights(const char *path, td_tensor_dir *dir, const char *only_prefix)
{
    if (!td_path_is_dir(path)) return td_st_load(path, dir, only_prefix);
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", path);
    if (td_path_exists(p)) return td_hf_load_index(path, p, dir, only_prefix);
    snprintf(p, sizeof p, "%s/model.safetensors", path);
    if (td_path_exists(p)) return td_st_load(p, dir, only_prefix);
    return td_hf_no_weights(path);
}

td_status td_hf_load_file(const char *path, td_hparams *hp, td_tensor_dir *dir)
{
    char copy[4096], cfg[4200];
    snprintf(copy, sizeof copy, "%s", path);
    snprintf(cfg, sizeof cfg, "%s/config.json", dirname(copy));
    if (!td_path_exists(cfg))
        return td_fail(TD_E_NOT_FOUND,
                       "%s: a safetensors file needs the model's config.json beside it (looked for %s); or give "
                       "the model's directory",
                       path, cfg);
    TD_TRY(td_hparams_load(cfg, hp));
    return td_hf_load_weights(path, dir, NULL);
}

td_status td_hf_load(const char *path, td_hparams *hp, td_tensor_dir *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", path);
    if (!td_path_exists(p))
        return td_fail(TD_E_NOT_FOUND, "%s: no config.json (an HF model directory needs one)", path);
    TD_TRY(td_hparams_load(p, hp));
    return td_hf_load_weights(path, dir, NULL);
}
