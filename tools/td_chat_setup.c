#include "td_chat_setup.h"

#include "td_alloc.h"
#include "td_cli_kv.h"
#include "td_gguf.h"
#include "td_mmap.h"
#include "td_mtp_cost.h"
#include "td_plan.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The one place that decides which model runs when --model is not given. */
#define TD_BUNDLED_MODEL "models/tandem-tiny-q8_0.gguf"

/* The bundled model: $TANDEM_MODEL, else models/ in the source tree this binary was built from, else
 * models/ beside the program's own directory (an installed or copied build). */
const char *td_default_model_path(const char **looked)
{
    static char path[4096];
    const char *env = getenv("TANDEM_MODEL");
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
        if (looked) *looked = path;
        return td_path_exists(path) ? path : NULL;
    }
#ifdef TANDEM_SOURCE_DIR
    snprintf(path, sizeof path, "%s/%s", TANDEM_SOURCE_DIR, TD_BUNDLED_MODEL);
    if (td_path_exists(path)) return path;
#endif
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        static const char *const ups[] = {"../", "../../"};
        for (int up = 0; up < 2; up++) {
            int w = snprintf(path, sizeof path, "%s/%s%s", exe, ups[up], TD_BUNDLED_MODEL);
            if (w < 0 || (size_t)w >= sizeof path) break; /* (checking the length also keeps GCC's -O0 quiet) */
            if (td_path_exists(path)) return path;
        }
    }
    snprintf(path, sizeof path, "%s", TD_BUNDLED_MODEL);
    if (looked) *looked = path;
    return td_path_exists(path) ? path : NULL;
}

const char *td_chat_opts_help(void)
{
    static char help[3200];
    snprintf(help, sizeof help,
             "  --model M            HF directory, .safetensors or .gguf (default: the bundled tiny model)\n"
             "  --tokenizer T        tokenizer.json, HF directory or .gguf (default: the model's own)\n"
             "  --template T         chat format: auto (from the model), v3, r1, v3.1, v3.1-think, raw\n"
             "  -n, --max-tokens N   tokens to generate at most (0: until EOS or a full context)\n"
             "  --temp T             temperature, 0..100; 0 = greedy (deterministic)\n"
             "  --top-k K            keep the K most likely tokens (0: off)\n"
             "  --top-p P            keep the smallest set of mass P, in (0, 1] (1: off)\n"
             "  --min-p P            drop tokens below P x the top probability, in [0, 1) (0: off)\n"
             "  --seed S             random seed for sampling (default: a fresh one each run, reported so that\n"
             "                       --seed reproduces the run)\n"
             "  --ctx N              context length in tokens (default: the model's, capped at 4096)\n"
             "  --kernels K          ref | auto | avx2 | avx512 | amx (default auto; amx: bf16 tiles for the\n"
             "                       prompt, faster, rounded to bf16)\n"
             "  --kv-type T          " TD_KV_TYPE_HELP "\n"
             "  --threads N          CPU threads (default: %s; more than the cores\n"
             "                       take turns on them and run slower)\n"
             "  --mtp M              MTP speculative decoding: off (default), on, or auto (drafts while the\n"
             "                       acceptance so far outweighs the cost of a verify step against a plain\n"
             "                       one, measured once per model and machine and kept in ~/.cache/tandem).\n"
             "                       Greedy output is the same either way; sampling keeps its distribution,\n"
             "                       but a seed gives another stream (with auto, one that depends on the costs)\n"
             "  --mtp-k K            tokens drafted per step with MTP, 1..8 (default 1)\n"
             "  --mtp-from P         take the MTP block from this safetensors file or HF directory (for GGUFs\n"
             "                       that dropped it: model.layers.<n_layers>.* of the official checkpoint)\n"
             "%s",
             td_cli_threads_default(), td_cli_plan_help());
    return help;
}

void td_chat_opts_pick_seed(td_chat_opts *o, bool sampling)
{
    if (!o->seed_set && sampling) o->sampling.seed = td_sampler_random_seed();
}

int td_chat_opts_parse(td_args *a, td_chat_opts *o)
{
    const char *v;
#define TD_VALUE()                                                                                                     \
    do {                                                                                                               \
        if (!(v = td_args_value(a))) return -1;                                                                        \
    } while (0)
    if (td_args_is(a, "--model")) {
        TD_VALUE();
        o->model = v;
    } else if (td_args_is(a, "--tokenizer")) {
        TD_VALUE();
        o->tokenizer = v;
    } else if (td_args_is(a, "--template")) {
        TD_VALUE();
        td_template t;
        if (strcmp(v, "auto") != 0 && !td_template_from_name(v, &t)) {
            td_cli_usage_error(a->cmd, "--template: '%s' is not one of auto, %s", v, td_template_names());
            return -1;
        }
        o->template_name = v;
    } else if (td_args_is(a, "--kernels")) {
        TD_VALUE();
        if (!td_kernels_from_name(v, &o->kernels)) {
            td_cli_usage_error(a->cmd, "--kernels: '%s' is not one of ref, auto, avx2, avx512, amx", v);
            return -1;
        }
    } else if (td_args_is(a, "--kv-type")) {
        TD_VALUE();
        if (!td_parse_kv_type(a, v, &o->kv_type)) return -1;
    } else if (td_args_is(a, "--threads")) {
        TD_VALUE();
        if (!td_parse_threads(a, v, &o->threads)) return -1;
    } else if (td_args_is(a, "--ctx")) {
        TD_VALUE();
        if (!td_parse_i64(a, v, 1, 1 << 24, &o->ctx)) return -1;
    } else if (td_args_is(a, "-n") || td_args_is(a, "--max-tokens")) {
        TD_VALUE();
        if (!td_parse_i64(a, v, 0, 1 << 24, &o->max_tokens)) return -1;
    } else if (td_args_is(a, "--temp") || td_args_is(a, "--temperature") || td_args_is(a, "--top-k") ||
               td_args_is(a, "--top-p") || td_args_is(a, "--min-p") || td_args_is(a, "--seed")) {
        TD_VALUE();
        if (td_sampler_params_set(&o->sampling, a->opt + 2, v) != TD_OK) {
            td_cli_usage_error(a->cmd, "%s: %s", a->opt, td_errmsg());
            return -1;
        }
        if (td_args_is(a, "--seed")) o->seed_set = true;
    } else if (td_args_is(a, "--mtp")) {
        TD_VALUE();
        if (!td_mtp_mode_from_name(v, &o->mtp)) {
            td_cli_usage_error(a->cmd, "--mtp: '%s' is not one of auto, on, off", v);
            return -1;
        }
        o->mtp_set = true;
    } else if (td_args_is(a, "--mtp-from")) {
        TD_VALUE();
        o->mtp_from = v;
    } else if (td_args_is(a, "--mtp-k")) {
        TD_VALUE();
        if (!td_parse_int(a, v, 1, TD_MTP_MAX_DRAFTS, &o->mtp_k)) return -1;
    } else {
        return td_cli_plan_parse(a, &o->plan);
    }
#undef TD_VALUE
    return 1;
}

/* GGUF general.name when there is one, else the file or directory name. */
static void td_model_name(const td_model *m, char *buf, size_t cap)
{
    if (m->gguf && td_gguf_get_str_copy(m->gguf, "general.name", buf, cap) == TD_OK && buf[0]) return;
    td_err_clear();
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", m->path);
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/') copy[--n] = '\0';
    snprintf(buf, cap, "%s", basename(copy));
}

/* MTP speculation as asked (off unless --mtp says otherwise: on the CPU kernels measured so far it does
 * not pay, and auto's timing would make a seeded sampled stream depend on the machine's speed). A model
 * without an MTP block decodes plainly, with a note. */
static td_status td_chat_rt_mtp(const td_chat_opts *o, td_chat_rt *rt)
{
    if (!o->mtp_set || o->mtp == TD_MTP_OFF) return TD_OK;
    char cache[4096];
    td_mtp_params mp = {.mode = o->mtp, .k = o->mtp_k, .cost_cache = td_mtp_cost_cache_path(cache, sizeof cache)};
    td_status st = td_mtp_spec_create(rt->gen, &mp, &rt->mtp);
    if (st != TD_E_NOT_FOUND) return st;
    if (!o->quiet) fprintf(stderr, "note: %s\n", td_errmsg());
    td_err_clear();
    return TD_OK;
}

td_status td_chat_rt_open_model(const td_chat_opts *o, td_chat_rt *rt)
{
    memset(rt, 0, sizeof *rt);
    const char *path = o->model, *looked;
    if (!path && !(path = td_default_model_path(&looked)))
        return td_fail(TD_E_NOT_FOUND,
                       "no model given and the bundled one is missing (looked for %s); pass "
                       "--model <dir|.gguf>, or set TANDEM_MODEL to a model file",
                       looked);
    td_model_params mp = {.quiet = o->quiet, .mtp_from = o->mtp_from};
    TD_TRY(td_model_open(path, &mp, &rt->model));
    if (o->mtp_from && !rt->model->mtp)
        return td_fail(TD_E_NOT_FOUND, "--mtp-from %s: it holds no MTP block for %s (no model.layers.%d.* tensors)",
                       o->mtp_from, path, rt->model->hp.n_layers);
    td_model_name(rt->model, rt->model_name, sizeof rt->model_name);
    td_status st =
        o->tokenizer ? td_tokenizer_load(o->tokenizer, &rt->tok) : td_tokenizer_for_model(rt->model, &rt->tok);
    if (st != TD_OK) return st;
    if (o->template_name && strcmp(o->template_name, "auto") != 0) {
        td_template_from_name(o->template_name, &rt->tmpl);
        rt->tmpl_why = "--template";
    } else {
        rt->tmpl = td_template_detect(td_tokenizer_chat_template(rt->tok), rt->model_name, &rt->tmpl_why);
    }
    size_t n;
    int32_t bos = td_tokenizer_bos(rt->tok);
    const char *b = bos >= 0 ? td_tokenizer_token_bytes(rt->tok, bos, &n) : NULL;
    snprintf(rt->bos_text, sizeof rt->bos_text, "%.*s", b ? (int)n : 0, b ? b : "");
    return TD_OK;
}

td_status td_chat_rt_open_engine(const td_chat_opts *o, const struct td_plan *plan, td_chat_rt *rt)
{
    td_engine_params ep = {.kernels = o->kernels, .n_threads = o->threads, .plan = plan};
    return td_engine_open(rt->model, &ep, &rt->engine);
}

static int td_chat_kv_bytes(const td_chat_opts *o)
{
    return td_kv_type_bytes(o->kv_type != TD_KV_AUTO ? o->kv_type : o->kernels == TD_KERNELS_REF ? TD_KV_F32 : TD_KV_BF16);
}

td_status td_chat_rt_plan(const td_chat_opts *o, const char *rules_name, const td_chat_rt *rt, int64_t kv_positions,
                          td_rules **rules, td_plan **plan)
{
    td_cli_plan_opts po = o->plan; /* --override, --gpu-mem and --auto, and --rules when given there */
    if (rules_name) po.rules = rules_name;
    if (!po.rules && !po.n_overrides) po.rules = "cpu-only";
    return td_cli_plan_make(&po, "serve", rt->model, kv_positions, td_chat_kv_bytes(o), rules, plan);
}

td_status td_chat_rt_open(const td_chat_opts *o, td_chat_rt *rt)
{
    TD_TRY(td_chat_rt_open_model(o, rt));
    /* the plan before any weight is read: a GPU that is not here is refused at once */
    int64_t max_pos = rt->model->hp.max_position_embeddings;
    int64_t n_ctx = o->ctx ? o->ctx : max_pos < 4096 ? max_pos : 4096; /* the session's default */
    TD_TRY(td_cli_plan_make(&o->plan, "chat", rt->model, n_ctx, td_chat_kv_bytes(o), &rt->rules, &rt->plan));
    TD_TRY(td_chat_rt_open_engine(o, rt->plan, rt));
    td_session_params sp = {.n_ctx = o->ctx, .kv_type = o->kv_type};
    TD_TRY(td_session_create(rt->engine, &sp, &rt->session));
    if (!o->quiet) td_cli_plan_print_gpu_mem(rt->plan, stderr); /* weights and caches are in place now */
    TD_TRY(td_sampler_create(rt->model->hp.vocab_size, &o->sampling, &rt->sampler));
    TD_TRY(td_generator_create(rt->session, rt->tok, rt->sampler, &rt->gen));
    return td_chat_rt_mtp(o, rt);
}

void td_chat_rt_close(td_chat_rt *rt)
{
    td_mtp_spec_free(rt->mtp);
    td_generator_free(rt->gen);
    td_sampler_free(rt->sampler);
    td_session_free(rt->session);
    td_engine_close(rt->engine);
    td_plan_free(rt->plan);
    td_rules_free(rt->rules);
    td_tokenizer_free(rt->tok);
    td_model_close(rt->model);
    memset(rt, 0, sizeof *rt);
}

td_status td_chat_check_utf8(const char *what, const char *text, size_t len)
{
    size_t valid = td_utf8_valid_prefix((const uint8_t *)text, len);
    if (valid == len) return TD_OK;
    return td_fail(TD_E_FORMAT,
                   "%s is not valid UTF-8 at byte %zu of %zu (0x%02x); convert it to UTF-8 first (e.g. with iconv)", what,
                   valid, len, (uint8_t)text[valid]);
}

td_status td_chat_rt_prompt(const td_chat_rt *rt, const td_chat_msg *msgs, int n, td_tokens *out)
{
    static const char *const whats[TD_ROLE_COUNT] = {"the system prompt", "the user's message", "an answer"};
    for (int i = 0; i < n; i++)
        if ((unsigned)msgs[i].role < TD_ROLE_COUNT && msgs[i].content) /* (the renderer refuses the others) */
            TD_TRY(td_chat_check_utf8(whats[msgs[i].role], msgs[i].content, strlen(msgs[i].content)));
    char *text;
    TD_TRY(td_template_render(rt->tmpl, msgs, n, rt->bos_text, true, &text));
    td_status st = td_tokenizer_encode(rt->tok, text, strlen(text), false, out);
    td_free(text);
    return st;
}
