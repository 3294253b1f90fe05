/* td_llama_run: runs a GGUF in llama.cpp (the prebuilt libllama of node-llama-cpp, put in .deps/ by
 * tools/setup-llama.sh) beside tandem on the same input, and says whether they agree. It is how
 * tests/cli/test_llama_interop.sh checks that the files tandem writes are files other tools read as
 * tandem does; the same program is the place for a side-by-side speed mode.
 *
 *   td_llama_run load     --model M                    llama.cpp loads M and runs one token
 *   td_llama_run tokenize --model M --texts V.json     both tokenizers on every text of a vectors file
 *   td_llama_run template --model M --conv C.json      M's chat template through llama.cpp's Jinja engine
 *                         [--thinking 0|1] [--no-generation-prompt]    against tandem's own rendering
 *   td_llama_run greedy   --model M --prompt P|--prompts F [-n N] [--margin G]   both engines decode greedily,
 *                                                                      in step, from each prompt
 *   td_llama_run reference --model M --reference R.safetensors   both engines' logits on R's prompt against R's
 *   td_llama_run speed    --model M --engine llama|tandem [--prompt-tokens P] [-n N]   one engine's prompt and
 *                                                                      decode tok/s (tools/compare/side-by-side.sh)
 *
 * The last line of stdout is one JSON object; exit 0 when the engines agree, 1 when not, 2 for bad usage. */
#include "td_llama_run.h"

#include "ggml-backend.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int td_lr_usage(const char *why)
{
    if (why) fprintf(stderr, "td_llama_run: %s\n", why);
    fprintf(stderr, "usage: td_llama_run load|tokenize|template|greedy|reference|speed --model M [options]\n"
                    "  --texts F            tokenize: a vectors file, [{\"text\": ...}, ...]\n"
                    "  --conv F             template: [{\"role\": ..., \"content\": ...}, ...]\n"
                    "  --thinking 0|1       template: set the template's `thinking` variable\n"
                    "  --no-generation-prompt  template: end after the last message\n"
                    "  --prompt P           greedy: the text after BOS (special tokens are parsed)\n"
                    "  --prompts F          greedy: one prompt per line of F\n"
                    "  -n N                 greedy: tokens to decode (default 16)\n"
                    "  --margin G           greedy: top-2 logit gap under which a step is a near-tie (default 0.5)\n"
                    "  --reference R        reference: a reference.safetensors (input_ids, logits)\n"
                    "  --engine E           speed: llama or tandem\n"
                    "  --prompt-tokens P    speed: prompt length, processed in one call (default 64)\n"
                    "  -n N                 speed: tokens decoded after it (default 16)\n"
                    "  --threads N          threads for both engines (default 1)\n"
                    "  --kernels K          tandem's kernels: auto (default) or ref\n"
                    "  -v                   llama.cpp's own log\n");
    return 2;
}

/* ------------------------------------------------------------------ llama.cpp setup */

static bool td_lr_verbose;
static enum ggml_log_level td_lr_last_level;

static void td_lr_log(enum ggml_log_level level, const char *text, void *user)
{
    (void)user;
    if (level != GGML_LOG_LEVEL_CONT) td_lr_last_level = level;
    if (td_lr_verbose || td_lr_last_level >= GGML_LOG_LEVEL_WARN) fputs(text, stderr);
}

void td_lr_backend_init(bool verbose)
{
    td_lr_verbose = verbose;
    llama_log_set(td_lr_log, NULL);
    /* the CPU backends are separate libraries beside libllama: load them from there */
    Dl_info info;
    char dir[PATH_MAX];
    if (dladdr((void *)llama_backend_init, &info) && info.dli_fname) {
        snprintf(dir, sizeof dir, "%s", info.dli_fname);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        ggml_backend_load_all_from_path(dir);
    } else {
        ggml_backend_load_all();
    }
    llama_backend_init();
}

struct llama_model *td_lr_load(const char *path, bool vocab_only, bool load_mtp)
{
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = vocab_only;
    mp.load_mtp = load_mtp;
    mp.n_gpu_layers = 0;
    struct llama_model *m = llama_model_load_from_file(path, mp);
    if (!m) fprintf(stderr, "td_llama_run: llama.cpp could not load %s (its log above says why)\n", path);
    return m;
}

void td_lr_print_json(cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    if (s) puts(s);
    free(s);
    cJSON_Delete(j);
}

/* ------------------------------------------------------------------ load */

int td_lr_cmd_load(const td_lr_opts *o)
{
    struct llama_model *m = td_lr_load(o->model, false, true);
    if (!m) return 1;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = cp.n_threads_batch = o->threads;
    struct llama_context *ctx = llama_init_from_model(m, cp);
    const struct llama_vocab *vocab = llama_model_get_vocab(m);
    llama_token bos = llama_vocab_bos(vocab);
    int rc = 1;
    if (!ctx) {
        fprintf(stderr, "td_llama_run: llama.cpp made no context for %s\n", o->model);
    } else if (llama_decode(ctx, llama_batch_get_one(&bos, 1)) != 0) {
        fprintf(stderr, "td_llama_run: llama.cpp could not run a token through %s\n", o->model);
    } else {
        rc = 0;
    }
    char desc[256], ftype[64] = "";
    llama_model_desc(m, desc, sizeof desc);
    llama_model_meta_val_str(m, "general.file_type", ftype, sizeof ftype);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "desc", desc);
    cJSON_AddStringToObject(j, "file_type", ftype);
    cJSON_AddNumberToObject(j, "n_params", (double)llama_model_n_params(m));
    cJSON_AddNumberToObject(j, "n_layer", llama_model_n_layer(m));
    cJSON_AddNumberToObject(j, "n_layer_nextn", llama_model_n_layer_nextn(m));
    cJSON_AddNumberToObject(j, "n_vocab", llama_vocab_n_tokens(vocab));
    cJSON_AddBoolToObject(j, "chat_template", llama_model_chat_template(m, NULL) != NULL);
    cJSON_AddBoolToObject(j, "ran", rc == 0);
    td_lr_print_json(j);
    if (ctx) llama_free(ctx);
    llama_model_free(m);
    return rc;
}

/* ------------------------------------------------------------------ main */

static bool td_lr_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

static int td_lr_parse(int argc, char **argv, td_lr_opts *o)
{
    *o = (td_lr_opts){.n_predict = 16, .prompt_tokens = 64, .margin = 0.5, .thinking = -1, .threads = 1, .kernels = TD_KERNELS_AUTO};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (strcmp(a, "--model") == 0 && v) o->model = v;
        else if (strcmp(a, "--texts") == 0 && v) o->texts = v;
        else if (strcmp(a, "--conv") == 0 && v) o->conv = v;
        else if (strcmp(a, "--prompt") == 0 && v) o->prompt = v;
        else if (strcmp(a, "--reference") == 0 && v) o->reference = v;
        else if (strcmp(a, "--prompts") == 0 && v) o->prompts = v;
        else if (strcmp(a, "--engine") == 0 && v) o->engine = v;
        else if (strcmp(a, "--prompt-tokens") == 0 && v) {
            if (!td_lr_int(v, 1, 65536, &o->prompt_tokens)) return td_lr_usage("--prompt-tokens: 1..65536");
        }
        else if (strcmp(a, "-n") == 0 && v) {
            if (!td_lr_int(v, 1, 4096, &o->n_predict)) return td_lr_usage("-n: 1..4096");
        } else if (strcmp(a, "--margin") == 0 && v) {
            o->margin = strtod(v, NULL);
        } else if (strcmp(a, "--thinking") == 0 && v) {
            if (!td_lr_int(v, 0, 1, &o->thinking)) return td_lr_usage("--thinking: 0 or 1");
        } else if (strcmp(a, "--threads") == 0 && v) {
            if (!td_lr_int(v, 1, 1024, &o->threads)) return td_lr_usage("--threads: 1..1024");
        } else if (strcmp(a, "--kernels") == 0 && v) {
            if (!td_kernels_from_name(v, &o->kernels)) return td_lr_usage("--kernels: auto, ref, avx2, avx512 or amx");
        } else {
            takes = false;
            if (strcmp(a, "--no-generation-prompt") == 0) o->no_gen_prompt = true;
            else if (strcmp(a, "-v") == 0) o->verbose = true;
            else {
                fprintf(stderr, "td_llama_run: unknown or incomplete option '%s'\n", a);
                return td_lr_usage(NULL);
            }
        }
        if (takes) i++;
    }
    if (!o->model) return td_lr_usage("--model is required");
    return -1;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(const td_lr_opts *o);
    } cmds[] = {{"load", td_lr_cmd_load},
                {"tokenize", td_lr_cmd_tokenize},
                {"template", td_lr_cmd_template},
                {"greedy", td_lr_cmd_greedy},
                {"reference", td_lr_cmd_reference},
                {"speed", td_lr_cmd_speed}};
    if (argc < 2) return td_lr_usage(NULL);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(argv[1], cmds[i].name) != 0) continue;
        td_lr_opts o;
        int rc = td_lr_parse(argc, argv, &o);
        if (rc >= 0) return rc;
        td_lr_backend_init(o.verbose);
        rc = cmds[i].run(&o);
        llama_backend_free();
        return rc;
    }
    return td_lr_usage("unknown command");
}
