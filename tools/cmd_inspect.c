/* tandem inspect: what a model file holds, from its headers alone. */
#include "td_cli.h"
#include "td_commands.h"
#include "td_model.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void td_inspect_help(void)
{
    printf("usage: tandem inspect <model dir|.safetensors|.gguf> [--json] [--mtp-from P]\n\n"
           "Prints the architecture, hyperparameters and tensor layout, tensor counts by type, bytes by module\n"
           "class and whether an MTP block is present. Reads headers only: weights are mapped, never touched.\n");
}

static void td_inspect_print(const td_model *m, bool json)
{
    const td_hparams *hp = &m->hp;
    uint64_t by_kind[TD_MODULE_KIND_COUNT] = {0};
    for (int i = 0; i < m->n_modules; i++) by_kind[m->modules[i].kind] += m->modules[i].bytes;
    size_t by_type[TD_TYPE_COUNT] = {0};
    uint64_t total = 0;
    for (size_t i = 0; i < td_tensor_dir_count(m->dir); i++) {
        const td_tensor *t = td_tensor_dir_at(m->dir, i);
        by_type[t->type]++;
        total += t->nbytes;
    }
    const char *layout = m->layers[0].attn.split_kv_b ? "MLA (attn_k_b/attn_v_b)" : "kv_b_proj (decompressible K/V)";
    int64_t kv = td_model_kv_bytes_per_token(m, 2);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "path", m->path);
        cJSON_AddStringToObject(j, "format", m->format);
        cJSON_AddStringToObject(j, "model_type", hp->model_type);
        cJSON_AddNumberToObject(j, "hidden_size", (double)hp->hidden_size);
        cJSON_AddNumberToObject(j, "layers", hp->n_layers);
        cJSON_AddNumberToObject(j, "experts", hp->n_routed_experts);
        cJSON_AddStringToObject(j, "attention_layout", m->layers[0].attn.split_kv_b ? "mla" : "kv_b");
        cJSON_AddBoolToObject(j, "mtp", m->mtp != NULL);
        cJSON_AddNumberToObject(j, "kv_bytes_per_token_bf16", (double)kv);
        cJSON_AddNumberToObject(j, "tensor_bytes", (double)total);
        cJSON *types = cJSON_AddObjectToObject(j, "tensors_by_type");
        for (int t = 0; t < TD_TYPE_COUNT; t++)
            if (by_type[t]) cJSON_AddNumberToObject(types, td_type_name((td_type)t), (double)by_type[t]);
        cJSON *kinds = cJSON_AddObjectToObject(j, "bytes_by_module_class");
        for (int k = 0; k < TD_MODULE_KIND_COUNT; k++)
            if (by_kind[k]) cJSON_AddNumberToObject(kinds, td_module_kind_name((td_module_kind)k), (double)by_kind[k]);
        char *s = cJSON_PrintUnformatted(j);
        if (s) puts(s);
        free(s);
        cJSON_Delete(j);
        return;
    }
    char desc[1024], b[32];
    td_hparams_describe(hp, desc, sizeof desc);
    printf("file        %s (%s, %d file%s)\n", m->path, m->format, td_tensor_dir_file_count(m->dir),
           td_tensor_dir_file_count(m->dir) == 1 ? "" : "s");
    printf("model       %s\n", desc);
    printf("routing     %s scoring, %s, scaling %g, %snormalized top-k\n",
           hp->scoring == TD_SCORING_SIGMOID ? "sigmoid" : "softmax",
           hp->topk_method == TD_TOPK_NOAUX_TC ? "noaux_tc" : hp->topk_method == TD_TOPK_GREEDY ? "greedy" : "group-limited greedy",
           hp->routed_scaling_factor, hp->norm_topk_prob ? "" : "un");
    if (hp->rope.yarn)
        printf("rope        YaRN factor %g over %lld positions (theta %g), mscale %g / %g, softmax scale %.6g\n",
               hp->rope.factor, (long long)hp->rope.original_max_position_embeddings, hp->rope_theta, hp->rope.mscale,
               hp->rope.mscale_all_dim, td_hparams_softmax_scale(hp));
    else
        printf("rope        plain (theta %g)\n", hp->rope_theta);
    printf("attention   %s; KV cache %lld B/token in bf16\n", layout, (long long)kv);
    printf("mtp         %s\n", m->mtp ? "present (model.layers.<n_layers>)" : "absent");
    printf("tensors     %zu, %s:", td_tensor_dir_count(m->dir), td_cli_fmt_bytes(total, b, sizeof b));
    for (int t = 0; t < TD_TYPE_COUNT; t++)
        if (by_type[t]) printf(" %s %zu", td_type_name((td_type)t), by_type[t]);
    printf("\nbytes by module class:\n");
    for (int k = 0; k < TD_MODULE_KIND_COUNT; k++)
        if (by_kind[k])
            printf("  %-16s %12s  %5.1f%%\n", td_module_kind_name((td_module_kind)k),
                   td_cli_fmt_bytes(by_kind[k], b, sizeof b), 100.0 * (double)by_kind[k] / (double)(total ? total : 1));
}

int td_cmd_inspect(int argc, char **argv)
{
    const char *path = NULL, *mtp_from = NULL;
    bool json = false;
    td_args a;
    td_args_init(&a, "inspect", argc, argv);
    while (td_args_next(&a)) {
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_inspect_help();
            return 0;
        } else if (td_args_is(&a, "--json")) {
            json = true;
        } else if (td_args_is(&a, "--mtp-from")) {
            if (!(mtp_from = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--model") && !path) {
            if (!(path = td_args_value(&a))) return 2;
        } else if (a.opt[0] != '-' && !path) {
            path = a.opt;
        } else {
            return td_args_unknown(&a);
        }
    }
    if (!path) return td_cli_usage_error("inspect", "give a model path");
    td_model *m;
    td_model_params mp = {.mtp_from = mtp_from};
    td_status st = td_model_open(path, &mp, &m);
    if (st != TD_OK) return td_cli_fail("inspect", st);
    td_inspect_print(m, json);
    td_model_close(m);
    return 0;
}
