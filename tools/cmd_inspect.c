/* tandem inspect: what a model file holds, from its headers alone.
 *
 * It never builds the model (which would convert norms and biases, i.e. read weights): the hyperparameters
 * come from config.json or the GGUF metadata, and every tensor is classified by its canonical name. For a
 * 400 GB split GGUF only the headers of the parts are read (tests/test_gguf_inspect_sparse.c). GGUFs whose
 * quant types tandem cannot run are still described, with the offending types listed. */
#include "td_cli.h"
#include "td_commands.h"
#include "td_gguf_model.h"
#include "td_hf.h"
#include "td_model.h"
#include "td_model_format.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void td_inspect_help(void)
{
    printf("usage: tandem inspect <model dir|.safetensors|.gguf> [--json] [--mtp-from P] [--expert-groups N/M]\n\n"
           "Prints the architecture, hyperparameters and tensor layout, tensor counts by type, bytes by module\n"
           "class and whether an MTP block is present. Reads headers only: no weight is read. Any part of a\n"
           "split GGUF (<name>-00001-of-00009.gguf) describes the whole model.\n\n"
           "  --json               one JSON object\n"
           "  --mtp-from P         count an MTP block taken from this official safetensors file or directory\n"
           "  --expert-groups N/M  routing groups for GGUFs without group keys (DeepSeek-V3 is recognised)\n");
}

/* ------------------------------------------------------------------ the summary */

#define TD_CLASS_OTHER TD_MODULE_KIND_COUNT
#define TD_MAX_TYPES 48

typedef struct td_type_count {
    const char *name; /* static storage (type tables) */
    size_t count;
    uint64_t bytes;
    bool supported;
} td_type_count;

typedef struct td_summary {
    const char *path;
    const char *format;
    td_hparams hp;
    int n_files;
    uint64_t file_bytes;       /* apparent size of all files */
    size_t n_tensors;
    uint64_t tensor_bytes;
    uint64_t class_bytes[TD_MODULE_KIND_COUNT + 1];
    td_type_count types[TD_MAX_TYPES];
    int n_types;
    bool mla, kv_b, mtp;
    size_t unsupported;        /* tensors of types tandem cannot compute with */
    /* GGUF only */
    uint32_t gguf_version;
    char name[128];
    char tokenizer[64];
    int64_t tokens;
} td_summary;

static void td_add_type(td_summary *s, const char *name, bool supported, uint64_t bytes)
{
    int i = 0;
    while (i < s->n_types && strcmp(s->types[i].name, name) != 0) i++;
    if (i == s->n_types) {
        if (s->n_types == TD_MAX_TYPES) return;
        s->types[s->n_types++] = (td_type_count){name, 0, 0, supported};
    }
    s->types[i].count++;
    s->types[i].bytes += bytes;
    if (!supported) s->unsupported++;
}

/* The module class of a canonical tensor name (the classes of the module tree; the MTP block as one). */
static int td_class_of(const char *n, int n_layers)
{
    if (strncmp(n, "model.embed_tokens.", 19) == 0) return TD_MODULE_EMBED;
    if (strncmp(n, "lm_head.", 8) == 0) return TD_MODULE_HEAD;
    if (strncmp(n, "model.norm.", 11) == 0) return TD_MODULE_NORM;
    if (strncmp(n, "model.layers.", 13) != 0) return TD_CLASS_OTHER;
    char *rest;
    long layer = strtol(n + 13, &rest, 10);
    if (*rest != '.') return TD_CLASS_OTHER;
    rest++;
    if (layer >= n_layers) return TD_MODULE_MTP;
    if (strncmp(rest, "self_attn.", 10) == 0 || strncmp(rest, "input_layernorm.", 16) == 0 ||
        strncmp(rest, "post_attention_layernorm.", 25) == 0)
        return TD_MODULE_ATTN;
    if (strncmp(rest, "mlp.experts.", 12) == 0) return TD_MODULE_EXPERTS;
    if (strncmp(rest, "mlp.shared_experts.", 19) == 0) return TD_MODULE_SHARED_EXPERTS;
    if (strncmp(rest, "mlp.gate.", 9) == 0) return TD_MODULE_ROUTER;
    if (strncmp(rest, "mlp.", 4) == 0) return TD_MODULE_DENSE_MLP;
    return TD_CLASS_OTHER;
}

static void td_add_tensor(td_summary *s, const char *canonical, const char *type_name, bool supported, uint64_t bytes)
{
    s->n_tensors++;
    s->tensor_bytes += bytes;
    s->class_bytes[td_class_of(canonical, s->hp.n_layers)] += bytes;
    td_add_type(s, type_name, supported, bytes);
    char want[96];
    if (strcmp(canonical, "model.layers.0.self_attn.k_b_proj.weight") == 0) s->mla = true;
    if (strcmp(canonical, "model.layers.0.self_attn.kv_b_proj.weight") == 0) s->kv_b = true;
    snprintf(want, sizeof want, "model.layers.%d.eh_proj.weight", s->hp.n_layers);
    if (strcmp(canonical, want) == 0) s->mtp = true;
}

static void td_add_dir(td_summary *s, const td_tensor_dir *dir)
{
    for (size_t i = 0; i < td_tensor_dir_count(dir); i++) {
        const td_tensor *t = td_tensor_dir_at(dir, i);
        td_add_tensor(s, t->name, td_type_name(t->type), true, t->nbytes);
    }
}

/* ------------------------------------------------------------------ readers */

static td_status td_inspect_gguf(const char *path, const td_model_params *mp, td_summary *s)
{
    td_gguf *g;
    TD_TRY(td_gguf_open(path, &g));
    td_status st = td_gguf_model_hparams(g, mp, &s->hp);
    if (st != TD_OK) {
        td_gguf_close(g);
        return st;
    }
    s->format = "gguf";
    s->n_files = td_gguf_file_count(g);
    for (int p = 0; p < s->n_files; p++) s->file_bytes += td_gguf_file_size(g, p);
    s->gguf_version = td_gguf_version(g);
    if (td_gguf_find_kv(g, "general.name")) td_gguf_get_str_copy(g, "general.name", s->name, sizeof s->name);
    if (td_gguf_find_kv(g, "tokenizer.ggml.model"))
        td_gguf_get_str_copy(g, "tokenizer.ggml.model", s->tokenizer, sizeof s->tokenizer);
    td_gguf_value tokens;
    s->tokens = -1;
    if (td_gguf_find_kv(g, "tokenizer.ggml.tokens") && td_gguf_get_array(g, "tokenizer.ggml.tokens", &tokens) == TD_OK)
        s->tokens = (int64_t)tokens.len;
    for (size_t i = 0; i < td_gguf_tensor_count(g); i++) {
        const td_gguf_tensor *t = td_gguf_tensor_at(g, i);
        const td_ggml_type_info *ti = td_ggml_type(t->ggml_type);
        bool supported = ti && ti->type != TD_TYPE_COUNT;
        const char *tname = supported ? td_type_name(ti->type) : ti ? ti->name : "unknown";
        char canonical[256];
        bool slab;
        /* an expert slab's name keeps its "%d": only its prefix matters for the class */
        if (!td_gguf_name_to_hf(t->name, canonical, sizeof canonical, &slab))
            snprintf(canonical, sizeof canonical, "%s", t->name);
        td_add_tensor(s, canonical, tname, supported, t->nbytes);
    }
    td_gguf_close(g);
    return TD_OK;
}

static td_status td_inspect_hf(const char *path, const td_model_params *mp, td_summary *s, td_tensor_dir *dir)
{
    s->format = "safetensors";
    if (td_path_is_dir(path)) TD_TRY(td_hf_load(path, &s->hp, dir));
    else TD_TRY(td_hf_load_file(path, &s->hp, dir));
    if (mp->expert_groups > 0) {
        s->hp.n_group = mp->expert_groups;
        s->hp.topk_group = mp->expert_groups_used;
        TD_TRY(td_hparams_validate(&s->hp, "--expert-groups"));
    }
    s->n_files = td_tensor_dir_file_count(dir);
    for (int i = 0; i < s->n_files; i++) s->file_bytes += td_tensor_dir_file(dir, i)->size;
    td_add_dir(s, dir);
    return TD_OK;
}

static td_status td_inspect_mtp_from(const char *mtp_from, td_summary *s)
{
    td_tensor_dir *dir;
    TD_TRY(td_tensor_dir_create(&dir));
    char prefix[64];
    snprintf(prefix, sizeof prefix, "model.layers.%d.", s->hp.n_layers);
    td_status st = td_hf_load_weights(mtp_from, dir, prefix);
    if (st == TD_OK) td_add_dir(s, dir);
    else td_err_context("--mtp-from %s", mtp_from);
    td_tensor_dir_free(dir);
    return st;
}

/* ------------------------------------------------------------------ output */

static const char *td_class_name(int c) { return c == TD_CLASS_OTHER ? "other" : td_module_kind_name((td_module_kind)c); }

static const char *td_layout(const td_summary *s)
{
    return s->mla ? "mla" : s->kv_b ? "kv_b" : "unknown";
}

static void td_print_json(const td_summary *s)
{
    const td_hparams *hp = &s->hp;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "path", s->path);
    cJSON_AddStringToObject(j, "format", s->format);
    cJSON_AddNumberToObject(j, "files", s->n_files);
    cJSON_AddNumberToObject(j, "file_bytes", (double)s->file_bytes);
    if (s->gguf_version) cJSON_AddNumberToObject(j, "gguf_version", s->gguf_version);
    if (s->name[0]) cJSON_AddStringToObject(j, "name", s->name);
    cJSON_AddStringToObject(j, "model_type", hp->model_type);
    cJSON_AddNumberToObject(j, "hidden_size", (double)hp->hidden_size);
    cJSON_AddNumberToObject(j, "layers", hp->n_layers);
    cJSON_AddNumberToObject(j, "dense_layers", hp->n_routed_experts ? hp->first_k_dense_replace : hp->n_layers);
    cJSON_AddNumberToObject(j, "heads", hp->n_heads);
    cJSON_AddNumberToObject(j, "q_lora_rank", (double)hp->q_lora_rank);
    cJSON_AddNumberToObject(j, "kv_lora_rank", (double)hp->kv_lora_rank);
    cJSON_AddNumberToObject(j, "qk_nope_head_dim", (double)hp->qk_nope_head_dim);
    cJSON_AddNumberToObject(j, "qk_rope_head_dim", (double)hp->qk_rope_head_dim);
    cJSON_AddNumberToObject(j, "v_head_dim", (double)hp->v_head_dim);
    cJSON_AddNumberToObject(j, "vocab_size", (double)hp->vocab_size);
    cJSON_AddNumberToObject(j, "experts", hp->n_routed_experts);
    cJSON_AddNumberToObject(j, "experts_per_token", hp->n_experts_per_tok);
    cJSON_AddNumberToObject(j, "shared_experts", hp->n_shared_experts);
    cJSON_AddNumberToObject(j, "expert_groups", hp->n_group);
    cJSON_AddNumberToObject(j, "expert_groups_used", hp->topk_group);
    cJSON_AddStringToObject(j, "scoring", hp->scoring == TD_SCORING_SIGMOID ? "sigmoid" : "softmax");
    cJSON_AddStringToObject(j, "attention_layout", td_layout(s));
    cJSON_AddBoolToObject(j, "mtp", s->mtp);
    cJSON_AddNumberToObject(j, "kv_bytes_per_token_bf16", (double)(td_hparams_kv_elems_per_token(hp) * 2));
    cJSON_AddNumberToObject(j, "tensors", (double)s->n_tensors);
    cJSON_AddNumberToObject(j, "tensor_bytes", (double)s->tensor_bytes);
    cJSON_AddNumberToObject(j, "unsupported_tensors", (double)s->unsupported);
    cJSON *types = cJSON_AddObjectToObject(j, "tensors_by_type");
    for (int t = 0; t < s->n_types; t++) cJSON_AddNumberToObject(types, s->types[t].name, (double)s->types[t].count);
    cJSON *kinds = cJSON_AddObjectToObject(j, "bytes_by_module_class");
    for (int k = 0; k <= TD_CLASS_OTHER; k++)
        if (s->class_bytes[k]) cJSON_AddNumberToObject(kinds, td_class_name(k), (double)s->class_bytes[k]);
    char *out = cJSON_PrintUnformatted(j);
    if (out) puts(out);
    free(out);
    cJSON_Delete(j);
}

static void td_print_text(const td_summary *s)
{
    const td_hparams *hp = &s->hp;
    char desc[1024], b[32];
    td_hparams_describe(hp, desc, sizeof desc);
    printf("file        %s (%s", s->path, s->format);
    if (s->gguf_version) printf(" v%u", s->gguf_version);
    printf(", %d file%s, %s)\n", s->n_files, s->n_files == 1 ? "" : "s", td_cli_fmt_bytes(s->file_bytes, b, sizeof b));
    if (s->name[0]) printf("name        %s\n", s->name);
    printf("model       %s\n", desc);
    printf("routing     %s scoring, %s, scaling %g, %snormalized top-k\n",
           hp->scoring == TD_SCORING_SIGMOID ? "sigmoid" : "softmax",
           hp->topk_method == TD_TOPK_NOAUX_TC ? "noaux_tc"
           : hp->topk_method == TD_TOPK_GREEDY ? "greedy"
                                               : "group-limited greedy",
           hp->routed_scaling_factor, hp->norm_topk_prob ? "" : "un");
    if (hp->rope.yarn)
        printf("rope        YaRN factor %g over %lld positions (theta %g), mscale %g / %g, softmax scale %.6g\n",
               hp->rope.factor, (long long)hp->rope.original_max_position_embeddings, hp->rope_theta, hp->rope.mscale,
               hp->rope.mscale_all_dim, td_hparams_softmax_scale(hp));
    else
        printf("rope        plain (theta %g)\n", hp->rope_theta);
    printf("attention   %s; KV cache %lld B/token in bf16\n",
           s->mla ? "MLA layout (k_b_proj/v_b_proj per head)" : s->kv_b ? "kv_b_proj (decompressible K/V)" : "?",
           (long long)(td_hparams_kv_elems_per_token(hp) * 2));
    printf("mtp         %s\n", s->mtp ? "present (model.layers.<n_layers>)" : "absent (attach one with --mtp-from)");
    if (s->tokenizer[0]) printf("tokenizer   %s, %lld tokens\n", s->tokenizer, (long long)s->tokens);
    printf("tensors     %zu, %s:", s->n_tensors, td_cli_fmt_bytes(s->tensor_bytes, b, sizeof b));
    for (int t = 0; t < s->n_types; t++) printf(" %s %zu", s->types[t].name, s->types[t].count);
    printf("\nbytes by module class:\n");
    for (int k = 0; k <= TD_CLASS_OTHER; k++)
        if (s->class_bytes[k])
            printf("  %-16s %12s  %5.1f%%\n", td_class_name(k), td_cli_fmt_bytes(s->class_bytes[k], b, sizeof b),
                   100.0 * (double)s->class_bytes[k] / (double)(s->tensor_bytes ? s->tensor_bytes : 1));
    if (s->unsupported) {
        printf("unsupported %zu tensors in types tandem cannot run:", s->unsupported);
        for (int t = 0; t < s->n_types; t++)
            if (!s->types[t].supported) printf(" %s (%zu)", s->types[t].name, s->types[t].count);
        printf("\n");
    }
}

int td_cmd_inspect(int argc, char **argv)
{
    const char *path = NULL, *mtp_from = NULL, *v;
    bool json = false;
    td_model_params mp = {0};
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
        } else if (td_args_is(&a, "--expert-groups")) {
            if (!(v = td_args_value(&a)) || !td_parse_expert_groups(&a, v, &mp.expert_groups, &mp.expert_groups_used))
                return 2;
        } else if (td_args_is(&a, "--model") && !path) {
            if (!(path = td_args_value(&a))) return 2;
        } else if (a.opt[0] != '-' && !path) {
            path = a.opt;
        } else {
            return td_args_unknown(&a);
        }
    }
    if (!path) return td_cli_usage_error("inspect", "give a model path");
    if (!td_path_exists(path)) return td_cli_fail("inspect", td_fail(TD_E_IO, "%s: no such file or directory", path));
    td_summary s;
    memset(&s, 0, sizeof s);
    s.path = path;
    td_tensor_dir *dir = NULL;
    td_model_format kind;
    td_status st = td_model_detect(path, &kind);
    if (st == TD_OK) st = td_tensor_dir_create(&dir);
    if (st == TD_OK) st = kind == TD_FORMAT_GGUF ? td_inspect_gguf(path, &mp, &s) : td_inspect_hf(path, &mp, &s, dir);
    if (st == TD_OK && mtp_from) st = td_inspect_mtp_from(mtp_from, &s);
    if (st == TD_OK) {
        if (json) td_print_json(&s);
        else td_print_text(&s);
    }
    td_tensor_dir_free(dir);
    return st == TD_OK ? 0 : td_cli_fail("inspect", st);
}
