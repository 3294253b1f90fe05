/* tandem generate: one prompt, one answer, streamed; --json ends with one line of results. */
#include "td_alloc.h"
#include "td_chat_setup.h"
#include "td_commands.h"
#include "td_mmap.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t td_gen_cancel;

static void td_gen_on_sigint(int sig)
{
    (void)sig;
    td_gen_cancel = 1;
}

static void td_generate_help(void)
{
    printf("usage: tandem generate [--model M] --prompt \"...\" [options]\n\n"
           "Renders the prompt as one user turn in the model's chat format (--template raw: as plain text\n"
           "after BOS), generates, and streams the answer to stdout. Greedy (--temp 0, the default) is\n"
           "deterministic; sampling (--temp above 0) takes a fresh seed each run unless --seed is given, and\n"
           "reports it so that --seed repeats the run. With --json, nothing is streamed and stdout is one JSON\n"
           "line: text, tokens, prompt_tokens, prompt_tok_s, decode_tok_s, seed, mtp, mtp_acceptance,\n"
           "tokens_per_step, mtp_speedup, stop, min_logit_gap (greedy without MTP: the smallest gap between the\n"
           "two best logits of any step), ...\n\n"
           "  --prompt P           the prompt text (--prompt-file F reads it from a file, - for stdin)\n"
           "  --system S           a system prompt\n"
           "  --stop S             stop at this text (repeatable, up to %d)\n"
           "  --json               one JSON line of results instead of the streamed text\n"
           "  --show-special       show special tokens in the text\n"
           "  --ignore-eos         keep generating after the end-of-sentence token\n"
           "%s",
           TD_GEN_MAX_STOP, td_chat_opts_help());
}

typedef struct td_gen_opts {
    td_chat_opts c;
    const char *prompt, *prompt_file, *system;
    const char *stop[TD_GEN_MAX_STOP];
    int n_stop;
    bool json, show_special, ignore_eos;
} td_gen_opts;

static int td_generate_parse(int argc, char **argv, td_gen_opts *o)
{
    memset(o, 0, sizeof *o);
    o->c.sampling = td_sampler_greedy();
    o->c.max_tokens = 128;
    td_args a;
    td_args_init(&a, "generate", argc, argv);
    while (td_args_next(&a)) {
        int r = td_chat_opts_parse(&a, &o->c);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_generate_help();
            return 0;
        } else if (td_args_is(&a, "--prompt") || td_args_is(&a, "-p")) {
            if (!(o->prompt = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--prompt-file")) {
            if (!(o->prompt_file = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--system")) {
            if (!(o->system = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--stop")) {
            const char *v = td_args_value(&a);
            if (!v) return 2;
            if (!*v) return td_cli_usage_error("generate", "--stop: the stop text is empty");
            if (o->n_stop == TD_GEN_MAX_STOP)
                return td_cli_usage_error("generate", "--stop: at most %d stop strings", TD_GEN_MAX_STOP);
            o->stop[o->n_stop++] = v;
        } else if (td_args_is(&a, "--json")) {
            o->json = true;
        } else if (td_args_is(&a, "--show-special")) {
            o->show_special = true;
        } else if (td_args_is(&a, "--ignore-eos")) {
            o->ignore_eos = true;
        } else {
            return td_args_unknown(&a);
        }
    }
    if (!o->prompt == !o->prompt_file)
        return td_cli_usage_error("generate", "give exactly one of --prompt and --prompt-file");
    if (o->prompt_file && td_path_is_dir(o->prompt_file))
        return td_cli_usage_error("generate", "--prompt-file: %s is a directory; give a text file (or - for stdin)",
                                  o->prompt_file);
    if ((o->prompt && td_chat_check_utf8("--prompt", o->prompt, strlen(o->prompt)) != TD_OK) ||
        (o->system && td_chat_check_utf8("--system", o->system, strlen(o->system)) != TD_OK))
        return td_cli_usage_error("generate", "%s", td_errmsg());
    td_chat_opts_pick_seed(&o->c, o->c.sampling.temperature > 0);
    return -1;
}

static td_status td_read_prompt(const td_gen_opts *o, char **out)
{
    if (o->prompt) return (*out = td_strdup(o->prompt)) ? TD_OK : td_fail(TD_E_NOMEM, "out of memory");
    FILE *f = strcmp(o->prompt_file, "-") == 0 ? stdin : fopen(o->prompt_file, "rb");
    if (!f) return td_fail(TD_E_IO, "%s: cannot open the prompt file: %s", o->prompt_file, strerror(errno));
    size_t cap = 4096, n = 0, got;
    char *buf = td_malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *nb = cap < (64u << 20) ? td_realloc(buf, cap * 2) : NULL;
            if (!nb) {
                td_free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    bool read_failed = ferror(f);
    int err = errno;
    if (f != stdin) fclose(f);
    if (!buf) return td_fail(TD_E_NOMEM, "%s: the prompt is too large (64 MiB at most)", o->prompt_file);
    buf[n] = '\0';
    td_status st = TD_OK;
    if (read_failed)
        st = td_fail(TD_E_IO, "%s: cannot read the prompt file: %s", o->prompt_file, strerror(err));
    else
        st = td_chat_check_utf8(o->prompt_file, buf, n);
    if (st != TD_OK) {
        td_free(buf);
        return st;
    }
    *out = buf;
    return TD_OK;
}

/* The devices' counters when decoding starts (the first text comes after the prompt and one step), for
 * the per-token report of --json. */
typedef struct td_gen_probe {
    td_engine *e;
    bool json, started;
    td_cli_dev_snap at_start, at_first;
} td_gen_probe;

static void td_gen_stream(void *user, td_gen_piece kind, const char *s, size_t n)
{
    td_gen_probe *p = user;
    (void)kind;
    if (!p->started) {
        td_cli_dev_snap_take(p->e, &p->at_first);
        p->started = true;
    }
    if (p->json) return;
    fwrite(s, 1, n, stdout);
    fflush(stdout);
}

/* Greedy decoding that also keeps the smallest gap between the two largest logits of any step: how close
 * the run came to a tie (a test that compares greedy answers across batch sizes needs clear winners). */
typedef struct td_gap_step {
    double min_gap;
} td_gap_step;

static td_status td_step_gap(td_generator *g, void *ctx, int32_t *out, int *n, int max_out)
{
    (void)max_out;
    td_gap_step *gs = ctx;
    TD_TRY(td_generator_flush_pending(g));
    const float *logits = td_session_logits(td_generator_session(g));
    int64_t V = td_sampler_n_vocab(td_generator_sampler(g));
    float a = -INFINITY, b = -INFINITY;
    for (int64_t i = 0; i < V; i++) {
        if (logits[i] > a) {
            b = a;
            a = logits[i];
        } else if (logits[i] > b) {
            b = logits[i];
        }
    }
    if (a - b < gs->min_gap) gs->min_gap = a - b;
    out[0] = td_sampler_sample(td_generator_sampler(g), logits);
    *n = 1;
    return td_generator_set_pending(g, out, 1);
}

static void td_gen_json(const td_chat_rt *rt, const td_tokens *out, const td_gen_stats *st, double min_gap,
                        const td_gen_probe *probe)
{
    char seed[24];
    cJSON *j = cJSON_CreateObject();
    size_t len;
    const char *text = td_generator_text(rt->gen, &len);
    cJSON_AddStringToObject(j, "text", text);
    cJSON *toks = cJSON_AddArrayToObject(j, "tokens");
    for (int64_t i = 0; i < out->n; i++) cJSON_AddItemToArray(toks, cJSON_CreateNumber(out->ids[i]));
    cJSON_AddNumberToObject(j, "prompt_tokens", (double)(st->prompt_tokens + st->reused_tokens));
    cJSON_AddNumberToObject(j, "generated_tokens", (double)st->gen_tokens);
    cJSON_AddNumberToObject(j, "prompt_tok_s", st->prompt_tok_s);
    cJSON_AddNumberToObject(j, "decode_tok_s", st->decode_tok_s);
    if (isnan(st->mtp_acceptance))
        cJSON_AddNullToObject(j, "mtp_acceptance");
    else
        cJSON_AddNumberToObject(j, "mtp_acceptance", st->mtp_acceptance);
    cJSON_AddNumberToObject(j, "tokens_per_step", st->tokens_per_step);
    /* MTP: the mode, whether it drafts now (auto: its choice), and the speedup auto measured */
    td_mtp_stats ms = {.mode = TD_MTP_OFF, .speedup = NAN};
    if (rt->mtp) td_mtp_spec_stats(rt->mtp, &ms);
    cJSON_AddStringToObject(j, "mtp", td_mtp_mode_name(ms.mode));
    cJSON_AddBoolToObject(j, "mtp_drafting", ms.drafting);
    if (rt->mtp) cJSON_AddNumberToObject(j, "mtp_k", ms.k);
    if (isnan(ms.speedup))
        cJSON_AddNullToObject(j, "mtp_speedup");
    else
        cJSON_AddNumberToObject(j, "mtp_speedup", ms.speedup);
    cJSON_AddStringToObject(j, "stop", td_gen_stop_name(st->stop));
    if (!isnan(min_gap)) cJSON_AddNumberToObject(j, "min_logit_gap", min_gap);
    /* the seed as written, exact beyond 2^53 (a JSON number through cJSON would be a double) */
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)td_sampler_params_of(rt->sampler)->seed);
    cJSON_AddRawToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "temp", td_sampler_params_of(rt->sampler)->temperature);
    cJSON_AddNumberToObject(j, "ctx_used", (double)td_chat_ctx_shown(st->ctx_used, st->ctx_size));
    cJSON_AddNumberToObject(j, "ctx_size", (double)st->ctx_size);
    cJSON_AddStringToObject(j, "template", td_template_name(rt->tmpl));
    cJSON_AddStringToObject(j, "kv_type", td_kv_type_name(td_session_kv_type(rt->session)));
    cJSON_AddNumberToObject(j, "kv_bytes_per_token", (double)td_session_kv_bytes_per_token(rt->session));
    cJSON_AddStringToObject(j, "model", rt->model->path);
    /* where a decoded token's time went, per device, and the GPUs' memory beside the plan's */
    td_cli_dev_snap end;
    td_cli_dev_snap_take(rt->engine, &end);
    td_cli_dev_json(rt->engine, probe->started ? &probe->at_first : &probe->at_start, &end,
                    probe->started ? st->gen_tokens - 1 : st->gen_tokens, j);
    td_cli_plan_gpu_mem_json(rt->plan, j);
    char *s = cJSON_PrintUnformatted(j);
    if (s) puts(s);
    free(s);
    cJSON_Delete(j);
}

int td_cmd_generate(int argc, char **argv)
{
    td_gen_opts o;
    int rc = td_generate_parse(argc, argv, &o);
    if (rc >= 0) return rc;
    td_chat_rt rt;
    char *prompt = NULL;
    td_tokens ids = {0}, out = {0};
    td_gen_stats st;
    td_gap_step gap = {.min_gap = INFINITY};
    td_status s = td_read_prompt(&o, &prompt);
    if (s == TD_OK)
        s = td_chat_rt_open(&o.c, &rt);
    else
        memset(&rt, 0, sizeof rt);
    if (s == TD_OK) {
        td_chat_msg msgs[2] = {{TD_ROLE_SYSTEM, o.system ? o.system : ""}, {TD_ROLE_USER, prompt}};
        s = o.system ? td_chat_rt_prompt(&rt, msgs, 2, &ids) : td_chat_rt_prompt(&rt, msgs + 1, 1, &ids);
    }
    td_gen_probe probe = {.e = rt.engine, .json = o.json};
    if (s == TD_OK) {
        td_cli_dev_snap_take(rt.engine, &probe.at_start);
        signal(SIGINT, td_gen_on_sigint);
        td_gen_params p = {.max_tokens = o.c.max_tokens,
                           .stop = o.stop,
                           .n_stop = o.n_stop,
                           .show_special = o.show_special,
                           .ignore_eos = o.ignore_eos,
                           .starts_thinking = td_template_starts_thinking(rt.tmpl),
                           .on_text = td_gen_stream,
                           .user = &probe,
                           .cancel = &td_gen_cancel};
        if (o.json && !rt.mtp && o.c.sampling.temperature <= 0) td_generator_set_step(rt.gen, td_step_gap, &gap);
        s = td_generate(rt.gen, ids.ids, ids.n, &p, &out, &st);
        signal(SIGINT, SIG_DFL);
    }
    if (s != TD_OK) {
        rc = td_cli_fail("generate", s);
    } else if (o.json) {
        td_gen_json(&rt, &out, &st, isinf(gap.min_gap) ? NAN : gap.min_gap, &probe);
        rc = 0;
    } else {
        printf("\n");
        char mtp[160] = "";
        if (!isnan(st.mtp_acceptance))
            snprintf(mtp, sizeof mtp, ", MTP %.0f%% accepted, %.2f tokens/step", 100 * st.mtp_acceptance,
                     st.tokens_per_step);
        td_mtp_stats ms;
        if (rt.mtp && (td_mtp_spec_stats(rt.mtp, &ms), ms.decided))
            snprintf(mtp + strlen(mtp), sizeof mtp - strlen(mtp), ", auto kept %s (MTP %.2fx)",
                     ms.drafting ? "MTP" : "plain decoding", ms.speedup);
        const td_sampler_params *sp = td_sampler_params_of(rt.sampler);
        char seed[48] = "";
        if (sp->temperature > 0) snprintf(seed, sizeof seed, ", seed %llu", (unsigned long long)sp->seed);
        fprintf(stderr,
                "[%lld prompt tokens at %.1f tok/s, %lld generated at %.1f tok/s%s, %lld/%lld context, stop: %s%s]\n",
                (long long)(st.prompt_tokens + st.reused_tokens), st.prompt_tok_s, (long long)st.gen_tokens,
                st.decode_tok_s, mtp, (long long)td_chat_ctx_shown(st.ctx_used, st.ctx_size), (long long)st.ctx_size,
                td_gen_stop_name(st.stop), seed);
        rc = 0;
    }
    td_tokens_free(&ids);
    td_tokens_free(&out);
    td_free(prompt);
    td_chat_rt_close(&rt);
    return rc;
}
