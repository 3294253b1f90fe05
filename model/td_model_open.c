/* Opens a model from whatever the user points at, and hands the filled directory to td_model_build. */
#include "td_model.h"

#include "td_alloc.h"
#include "td_gguf_model.h"
#include "td_hf.h"
#include "td_model_format.h"

#include <stdio.h>
#include <string.h>

td_status td_model_open(const char *path, const td_model_params *params, td_model **out)
{
    static const td_model_params defaults = {0};
    if (!params) params = &defaults;
    *out = NULL;
    if (!td_path_exists(path)) return td_fail(TD_E_IO, "%s: no such file or directory", path);
    td_model_format kind;
    TD_TRY(td_model_detect(path, &kind));
    td_tensor_dir *dir;
    TD_TRY(td_tensor_dir_create(&dir));
    td_hparams hp;
    td_status st;
    const char *format;
    td_gguf *gguf = NULL;
    if (kind == TD_FORMAT_GGUF) {
        format = "gguf";
        st = td_gguf_model_open(path, params, &hp, dir, &gguf); /* applies the expert-group override */
    } else {
        format = "safetensors";
        st = kind == TD_FORMAT_HF_DIR ? td_hf_load(path, &hp, dir) : td_hf_load_file(path, &hp, dir);
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
        td_model_format mtp_kind;
        st = td_model_detect(params->mtp_from, &mtp_kind);
        if (st == TD_OK && mtp_kind == TD_FORMAT_GGUF)
            st = td_fail(TD_E_UNSUPPORTED, "a GGUF; it takes the official safetensors checkpoint (a file or "
                                           "its directory)");
        if (st == TD_OK) st = td_hf_load_weights(params->mtp_from, dir, prefix);
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
