/* Opens a model from whatever the user points at, and hands the filled directory to td_model_build. */
#include "td_model.h"

#include "td_alloc.h"
#include "td_gguf_model.h"
#include "td_hf.h"

#include <libgen.h>
#include <stdio.h>
#include <string.h>

static bool td_file_has_magic(const char *path, const char *magic)
{
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char buf[4] = {0};
    size_t n = fread(buf, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(buf, magic, 4) == 0;
}

static td_status td_open_hf(const char *path, td_hparams *hp, td_tensor_dir *dir)
{
    if (td_path_is_dir(path)) return td_hf_load(path, hp, dir);
    /* a lone .safetensors file: its config.json sits beside it */
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", dirname(copy));
    if (!td_path_exists(cfg))
        return td_fail(TD_E_NOT_FOUND, "%s: a safetensors file needs a config.json beside it (looked for %s)", path,
                       cfg);
    TD_TRY(td_hparams_load(cfg, hp));
    return td_hf_load_weights(path, dir, NULL);
}

td_status td_model_open(const char *path, const td_model_params *params, td_model **out)
{
    static const td_model_params defaults = {0};
    if (!params) params = &defaults;
    *out = NULL;
    if (!td_path_exists(path)) return td_fail(TD_E_IO, "%s: no such file or directory", path);
    td_tensor_dir *dir;
    TD_TRY(td_tensor_dir_create(&dir));
    td_hparams hp;
    td_status st;
    const char *format;
    td_gguf *gguf = NULL;
    if (!td_path_is_dir(path) && td_file_has_magic(path, "GGUF")) {
        format = "gguf";
        st = td_gguf_model_open(path, params, &hp, dir, &gguf); /* applies the expert-group override */
    } else {
        format = "safetensors";
        st = td_open_hf(path, &hp, dir);
        if (st == TD_OK && params->expert_groups > 0) {
            hp.n_group = params->expert_groups;
            hp.topk_group = params->expert_groups_used > 0 ? params->expert_groups_used : params->expert_groups;
            st = td_hparams_validate(&hp, "--expert-groups");
        }
    }
    if (st == TD_OK && params->mtp_from) {
        /* only the block's tensors, which keep their checkpoint names (model.layers.<n_layers>.*) */
        char prefix[64];
        snprintf(prefix, sizeof prefix, "model.layers.%d.", hp.n_layers);
        st = td_hf_load_weights(params->mtp_from, dir, prefix);
        if (st != TD_OK) td_err_context("--mtp-from %s", params->mtp_from);
    }
    if (st != TD_OK) {
        td_gguf_close(gguf);
        td_tensor_dir_free(dir);
        return st;
    }
    st = td_model_build(&hp, dir, path, format, out);
    if (st != TD_OK) {
        td_gguf_close(gguf);
        return st;
    }
    (*out)->gguf = gguf;
    return TD_OK;
}
