#include "td_hf.h"

#include "td_alloc.h"
#include "td_safetensors.h"

#include <cjson/cJSON.h>
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

td_status td_hf_load_weights(const char *path, td_tensor_dir *dir, const char *only_prefix)
{
    if (!td_path_is_dir(path)) return td_st_load(path, dir, only_prefix);
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", path);
    if (td_path_exists(p)) return td_hf_load_index(path, p, dir, only_prefix);
    snprintf(p, sizeof p, "%s/model.safetensors", path);
    if (td_path_exists(p)) return td_st_load(p, dir, only_prefix);
    return td_fail(TD_E_NOT_FOUND,
                   "%s: no model.safetensors or model.safetensors.index.json (is this a Hugging Face model directory?)",
                   path);
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
