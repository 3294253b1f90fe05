/* tandem bench mtp: decode speed with MTP speculative decoding against plain decoding, in one process
 * and on the same prompts, with what explains the difference: draft acceptance, tokens per step, the
 * cost of a verify pass and of an MTP draft against a single-token decode, and the distinct routed
 * experts each MoE layer touches for a verify batch against a single token. */
#include "td_alloc.h"
#include "td_bench.h"
#include "td_chat_setup.h"
#include "td_cli_kv.h"
#include "td_clock.h"
#include "td_mmap.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TD_BENCH_MAX_PROMPTS 64

static const char *const td_default_prompts[] = {
    "Tell me a short story about a robot who learns to paint.",
    "Explain how a bicycle stays upright, in simple words.",
    "What are three good habits for writing clear code?",
    "Write a friendly note to a neighbour about a lost cat.",
};

static void td_bench_mtp_help(void)
{
    printf("usage: tandem bench mtp [--model M] [--tokens N] [--prompts FILE] [--k K] [--json] [options]\n\n"
           "Decodes the same prompts with MTP off and on, in one process, and prints draft acceptance, tokens\n"
           "per step, decode tok/s both ways and the speedup; the cost of a verify pass (k+1 tokens) and of an\n"
           "MTP draft against a single-token decode; and per MoE layer the distinct experts a verify batch\n"
           "touches against a single token. The last line is JSON.\n\n"
           "  --model M        HF directory or .gguf with an MTP block (default: the bundled model)\n"
           "  --mtp-from P     take the MTP block from this safetensors file or HF directory\n"
           "  --tokens N       tokens generated per prompt and mode (default 128; EOS is ignored)\n"
           "  --prompts FILE   one prompt per line, rendered as a user turn (default: 4 built-in prompts;\n"
           "                   models without a tokenizer get fixed token sequences)\n"
           "  --k K            drafts per step, 1..%d (default 1)\n"
           "  --temp T         sampling temperature (default 0: greedy, and the streams are compared)\n"
           "  --kernels K      ref | auto | avx2 | avx512 | amx (default auto)\n"
           "  --kv-type T      " TD_KV_TYPE_HELP "\n"
           "  --threads N      CPU threads (default: %s)\n"
           "  --json           print only the JSON line\n\n"
           "With --simulate-acceptance P (and --synth CONFIG for a synthetic model), the verify schedule runs with\n"
           "the draft forced right at rate P instead: see tandem bench mtp --simulate-acceptance 0.85 --help.\n",
           TD_MTP_MAX_DRAFTS, td_cli_threads_default());
}

typedef struct td_mtp_bench {
    /* options */
    const char *model_path, *prompts_file, *mtp_from;
    int64_t tokens;
    int k, threads;
    double temp;
    td_kernels kernels;
    td_kv_type kv_type;
    bool json;
    /* the model */
    td_model *model;
    td_engine *engine;
    td_session *s;
    td_tokenizer *tok;
    bool own_vocab; /* no tokenizer in the model: plain placeholder tokens */
    td_sampler *smp;
    td_generator *g;
    td_template tmpl;
    char bos[128];
    /* prompts */
    td_tokens prompts[TD_BENCH_MAX_PROMPTS];
    int n_prompts;
    /* counters: [mode][layer], mode 0 = plain, 1 = MTP */
    td_expert_counts *counts[2];
    td_mtp_spec *spec; /* NULL while running plain */
} td_mtp_bench;


static td_status td_bench_open(td_mtp_bench *b)
{
    const char *looked;
    if (!b->model_path && !(b->model_path = td_default_model_path(&looked)))
        return td_fail(TD_E_NOT_FOUND, "no model given and the default one is missing (looked for %s)", looked);
    td_model_params mp = {.quiet = true, .mtp_from = b->mtp_from};
    TD_TRY(td_model_open(b->model_path, &mp, &b->model));
    if (!b->model->mtp)
        return td_fail(TD_E_NOT_FOUND, "%s has no MTP block%s: nothing to compare", b->model_path,
                       b->mtp_from ? " (nor does --mtp-from hold one for it)" : " (attach one with --mtp-from)");
    int64_t V = b->model->hp.vocab_size;
    if (td_tokenizer_for_model(b->model, &b->tok) != TD_OK) {
        td_err_clear();
        b->own_vocab = true;
        TD_TRY(td_tokenizer_placeholder(V, &b->tok));
    }
    td_engine_params ep = {.kernels = b->kernels, .n_threads = b->threads};
    TD_TRY(td_engine_open(b->model, &ep, &b->engine));
    td_session_params sp = {.n_ctx = 4096, .kv_type = b->kv_type};
    TD_TRY(td_session_create(b->engine, &sp, &b->s));
    td_sampler_params smp = {.temperature = b->temp, .top_p = 1, .seed = 1234};
    TD_TRY(td_sampler_create(V, &smp, &b->smp));
    TD_TRY(td_generator_create(b->s, b->tok, b->smp, &b->g));
    const char *why;
    b->tmpl = td_template_detect(td_tokenizer_chat_template(b->tok), b->model_path, &why);
    size_t n;
    int32_t bos = td_tokenizer_bos(b->tok);
    const char *bt = bos >= 0 ? td_tokenizer_token_bytes(b->tok, bos, &n) : NULL;
    snprintf(b->bos, sizeof b->bos, "%.*s", bt ? (int)n : 0, bt ? bt : "");
    int L = b->model->hp.n_layers;
    for (int m = 0; m < 2; m++)
        if (!(b->counts[m] = td_calloc((size_t)L + 1, sizeof(td_expert_counts))))
            return td_fail(TD_E_NOMEM, "out of memory");
    return TD_OK;
}

static void td_bench_close(td_mtp_bench *b)
{
    td_mtp_spec_free(b->spec);
    td_generator_free(b->g);
    td_sampler_free(b->smp);
    td_session_free(b->s);
    td_engine_close(b->engine);
    td_tokenizer_free(b->tok);
    td_model_close(b->model);
    for (int i = 0; i < b->n_prompts; i++) td_tokens_free(&b->prompts[i]);
    td_free(b->counts[0]);
    td_free(b->counts[1]);
}

static td_status td_bench_add_prompt(td_mtp_bench *b, const char *text)
{
    if (b->n_prompts == TD_BENCH_MAX_PROMPTS) return TD_OK;
    td_tokens *t = &b->prompts[b->n_prompts];
    if (b->own_vocab) { /* no tokenizer: a fixed sequence of ids per prompt */
        int64_t V = b->model->hp.vocab_size, n = 16 + (int64_t)strlen(text) % 16;
        for (int64_t i = 0; i < n; i++) TD_TRY(td_tokens_push(t, (int32_t)((31 * i + 7 * b->n_prompts + 3) % V)));
    } else {
        td_chat_msg msg = {TD_ROLE_USER, text};
        char *rendered;
        TD_TRY(td_template_render(b->tmpl, &msg, 1, b->bos, true, &rendered));
        td_status st = td_tokenizer_encode(b->tok, rendered, strlen(rendered), false, t);
        td_free(rendered);
        TD_TRY(st);
    }
    b->n_prompts++;
    return TD_OK;
}

static td_status td_bench_prompts(td_mtp_bench *b)
{
    if (!b->prompts_file) {
        for (size_t i = 0; i < sizeof td_default_prompts / sizeof td_default_prompts[0]; i++)
            TD_TRY(td_bench_add_prompt(b, td_default_prompts[i]));
        return TD_OK;
    }
    char *text;
    uint64_t len;
    TD_TRY(td_read_text_file(b->prompts_file, 64ull << 20, &text, &len));
    td_status st = TD_OK;
    for (char *line = text, *next; st == TD_OK && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r') line[--n] = '\0';
        if (n) st = td_bench_add_prompt(b, line);
    }
    td_free(text);
    if (st == TD_OK && b->n_prompts == 0) st = td_fail(TD_E_ARG, "%s: no prompts (one per line)", b->prompts_file);
    return st;
}

/* ------------------------------------------------------------------ the decode runs */

/* The step of either mode, with the expert counters on only while it runs (not during prefill). */
static td_status td_bench_step(td_generator *g, void *ctx, int32_t *out, int *n, int max_out)
{
    td_mtp_bench *b = ctx;
    td_session *s = td_generator_session(g);
    td_status st;
    td_session_count_experts(s, b->counts[b->spec != NULL]);
    if (b->spec) {
        st = td_mtp_spec_step(g, b->spec, out, n, max_out);
    } else {
        st = td_generator_flush_pending(g);
        if (st == TD_OK) {
            out[0] = td_sampler_sample(td_generator_sampler(g), td_session_logits(s));
            *n = 1;
            st = td_generator_set_pending(g, out, 1);
        }
    }
    td_session_count_experts(s, NULL);
    return st;
}

typedef struct td_mode_result {
    int64_t tokens, steps;
    double seconds;
} td_mode_result;

static td_status td_bench_run(td_mtp_bench *b, const td_tokens *prompt, int64_t max_tokens, td_mode_result *r,
                              td_tokens *out)
{
    td_generator_reset(b->g);
    td_sampler_reseed(b->smp, 1234);
    td_session_mtp_keep_up(b->s, b->spec != NULL); /* plain decoding must not pay for MTP rows */
    td_gen_params p = {.max_tokens = max_tokens, .ignore_eos = true};
    td_gen_stats st;
    TD_TRY(td_generate(b->g, prompt->ids, prompt->n, &p, out, &st));
    r->tokens += st.gen_tokens;
    r->steps += st.steps;
    r->seconds += st.decode_s;
    return TD_OK;
}

/* Median seconds of a single-token decode, a verify pass of k+1 tokens and the k MTP drafts (one from the
 * main model's hidden, k-1 chained), halfway through a generation from prompt (attention grows with it). */
static td_status td_bench_costs(td_mtp_bench *b, const td_tokens *prompt, double *decode, double *verify, double *draft)
{
    enum { R = 15 };
    double t[3][R];
    int32_t toks[TD_MTP_MAX_DRAFTS + 1];
    for (int i = 0; i <= b->k; i++) toks[i] = prompt->ids[i % prompt->n];
    td_generator_reset(b->g);
    TD_TRY(td_session_forward(b->s, prompt->ids, prompt->n, NULL, NULL));
    for (int64_t i = 0; i < b->tokens / 2; i++)
        TD_TRY(td_session_forward(b->s, &prompt->ids[i % prompt->n], 1, NULL, NULL));
    int64_t pos = td_session_pos(b->s);
    for (int r = 0; r < R; r++) {
        double t0 = td_now();
        TD_TRY(td_session_forward(b->s, toks, 1, NULL, NULL));
        double t1 = td_now();
        TD_TRY(td_session_rewind(b->s, pos));
        TD_TRY(td_session_forward(b->s, toks, b->k + 1, NULL, NULL));
        double t2 = td_now();
        TD_TRY(td_session_rewind(b->s, pos));
        TD_TRY(td_session_mtp_draft(b->s, toks[0])); /* row pos-1: one MTP row, as in steady decoding */
        for (int i = 1; i < b->k; i++) TD_TRY(td_session_mtp_chain(b->s, toks[i]));
        double t3 = td_now();
        t[0][r] = t1 - t0, t[1][r] = t2 - t1, t[2][r] = t3 - t2;
    }
    for (int m = 0; m < 3; m++) /* sort each row for its median */
        for (int i = 1; i < R; i++)
            for (int j = i; j > 0 && t[m][j - 1] > t[m][j]; j--) {
                double x = t[m][j];
                t[m][j] = t[m][j - 1], t[m][j - 1] = x;
            }
    *decode = t[0][R / 2], *verify = t[1][R / 2], *draft = t[2][R / 2];
    td_generator_reset(b->g);
    return TD_OK;
}

/* ------------------------------------------------------------------ report */

static double td_mean_distinct(const td_expert_counts *c, int batch)
{
    return c->calls[batch] ? (double)c->distinct[batch] / (double)c->calls[batch] : NAN;
}

static void td_bench_report(td_mtp_bench *b, const td_mode_result *plain, const td_mode_result *mtp,
                            const td_mtp_stats *ms, bool identical, const double costs[3])
{
    const td_hparams *hp = &b->model->hp;
    double plain_tps = plain->tokens / plain->seconds, mtp_tps = mtp->tokens / mtp->seconds;
    double acc = ms->drafted ? (double)ms->accepted / (double)ms->drafted : 0;
    double tps = mtp->steps ? (double)mtp->tokens / (double)mtp->steps : 0;
    double predicted = tps * costs[0] / (costs[1] + costs[2]);
    int verify = b->k + 1, L = hp->n_layers;
    if (!b->json) {
        printf("model        %s (%s kernels, %d threads, KV cache %s)\n", b->model_path, td_kernels_name(b->kernels),
               td_cpu_threads(td_engine_cpu(b->engine)), td_kv_type_name(td_session_kv_type(b->s)));
        printf("prompts      %d%s, %lld tokens each per mode, k = %d, %s\n", b->n_prompts,
               b->own_vocab ? " (fixed token ids: no tokenizer)" : "", (long long)b->tokens, b->k,
               b->temp > 0 ? "sampling" : "greedy");
        printf("plain        %.1f tok/s (%lld tokens in %.3f s)\n", plain_tps, (long long)plain->tokens,
               plain->seconds);
        printf("mtp          %.1f tok/s (%lld tokens in %lld steps, %.3f s)\n", mtp_tps, (long long)mtp->tokens,
               (long long)mtp->steps, mtp->seconds);
        printf("acceptance   %.3f (%lld of %lld drafts), %.2f tokens/step\n", acc, (long long)ms->accepted,
               (long long)ms->drafted, tps);
        printf("speedup      %.2fx (target >= 1.3x)%s\n", mtp_tps / plain_tps,
               b->temp > 0 ? ""
               : identical ? ", greedy streams identical"
                           : ", GREEDY STREAMS DIFFER");
        double plain_step = plain->seconds / (double)plain->steps, mtp_step = mtp->seconds / (double)mtp->steps;
        printf("steps        plain %.3f ms, MTP %.3f ms (%.2fx a plain step): %.2f tokens/step / %.2f = %.2fx\n",
               1e3 * plain_step, 1e3 * mtp_step, mtp_step / plain_step, tps, mtp_step / plain_step,
               tps * plain_step / mtp_step);
        printf(
            "costs        decode 1 token %.3f ms, verify %d tokens %.3f ms (%.2fx), %d MTP draft%s %.3f ms (%.2fx)\n",
            1e3 * costs[0], verify, 1e3 * costs[1], costs[1] / costs[0], b->k, b->k > 1 ? "s" : "", 1e3 * costs[2],
            costs[2] / costs[0]);
        printf("             break-even at %.2f tokens/step; at %.2f tokens/step the costs predict %.2fx\n",
               (costs[1] + costs[2]) / costs[0], tps, predicted);
        printf("experts      distinct routed experts per MoE layer (top-%d): single token vs verify batch of %d\n",
               hp->n_experts_per_tok, verify);
        for (int l = 0; l < L; l++) {
            if (!td_hparams_layer_is_moe(hp, l)) continue;
            double one = td_mean_distinct(&b->counts[0][l], 1), many = td_mean_distinct(&b->counts[1][l], verify);
            printf("  layer %-3d  %.2f vs %.2f (%.2fx)\n", l, one, many, many / one);
        }
        /* the MTP block runs 1 row per step after a rejection, 2 after an acceptance */
        if (td_hparams_layer_is_moe(hp, L))
            printf("  mtp block  %.2f for a draft of 1 row, %.2f for 2 rows\n", td_mean_distinct(&b->counts[1][L], 1),
                   td_mean_distinct(&b->counts[1][L], 2));
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "bench", "mtp");
    cJSON_AddStringToObject(j, "model", b->model_path);
    cJSON_AddStringToObject(j, "kernels", td_kernels_name(b->kernels));
    cJSON_AddNumberToObject(j, "threads", td_cpu_threads(td_engine_cpu(b->engine)));
    cJSON_AddStringToObject(j, "kv_type", td_kv_type_name(td_session_kv_type(b->s)));
    cJSON_AddNumberToObject(j, "kv_bytes_per_token", (double)td_session_kv_bytes_per_token(b->s));
    cJSON_AddNumberToObject(j, "k", b->k);
    cJSON_AddNumberToObject(j, "prompts", b->n_prompts);
    cJSON_AddNumberToObject(j, "tokens", (double)b->tokens);
    cJSON_AddNumberToObject(j, "temperature", b->temp);
    cJSON_AddNumberToObject(j, "acceptance", acc);
    cJSON_AddNumberToObject(j, "tokens_per_step", tps);
    cJSON_AddNumberToObject(j, "plain_tok_s", plain_tps);
    cJSON_AddNumberToObject(j, "mtp_tok_s", mtp_tps);
    cJSON_AddNumberToObject(j, "speedup", mtp_tps / plain_tps);
    if (b->temp > 0)
        cJSON_AddNullToObject(j, "identical");
    else
        cJSON_AddBoolToObject(j, "identical", identical);
    cJSON_AddNumberToObject(j, "decode_ms", 1e3 * costs[0]);
    cJSON_AddNumberToObject(j, "verify_ms", 1e3 * costs[1]);
    cJSON_AddNumberToObject(j, "draft_ms", 1e3 * costs[2]);
    cJSON_AddNumberToObject(j, "plain_step_ms", 1e3 * plain->seconds / (double)plain->steps);
    cJSON_AddNumberToObject(j, "mtp_step_ms", 1e3 * mtp->seconds / (double)mtp->steps);
    cJSON_AddNumberToObject(j, "predicted_speedup", predicted);
    cJSON_AddNumberToObject(j, "experts_per_token", hp->n_experts_per_tok);
    cJSON *layers = cJSON_AddArrayToObject(j, "experts");
    for (int l = 0; l <= L; l++) {
        if (!td_hparams_layer_is_moe(hp, l)) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", l);
        if (l == L) cJSON_AddBoolToObject(o, "mtp", true); /* single: drafts of 1 row, verify: of 2 rows */
        double one = l == L ? td_mean_distinct(&b->counts[1][l], 1) : td_mean_distinct(&b->counts[0][l], 1);
        double many = td_mean_distinct(&b->counts[1][l], l == L ? 2 : verify);
        if (isnan(one))
            cJSON_AddNullToObject(o, "single");
        else
            cJSON_AddNumberToObject(o, "single", one);
        if (isnan(many))
            cJSON_AddNullToObject(o, "verify");
        else
            cJSON_AddNumberToObject(o, "verify", many);
        cJSON_AddItemToArray(layers, o);
    }
    char *s = cJSON_PrintUnformatted(j);
    if (s) puts(s);
    free(s);
    cJSON_Delete(j);
}

/* ------------------------------------------------------------------ main */

static int td_bench_mtp_parse(int argc, char **argv, td_mtp_bench *b)
{
    b->tokens = 128;
    b->k = 1;
    td_args a;
    td_args_init(&a, "bench mtp", argc, argv);
    while (td_args_next(&a)) {
        const char *v;
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_bench_mtp_help();
            return 0;
        } else if (td_args_is(&a, "--model")) {
            if (!(b->model_path = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--mtp-from")) {
            if (!(b->mtp_from = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--prompts")) {
            if (!(b->prompts_file = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--tokens")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 1, 1 << 20, &b->tokens)) return 2;
        } else if (td_args_is(&a, "--k")) {
            if (!(v = td_args_value(&a)) || !td_parse_int(&a, v, 1, TD_MTP_MAX_DRAFTS, &b->k)) return 2;
        } else if (td_args_is(&a, "--temp")) {
            if (!(v = td_args_value(&a)) || !td_parse_double(&a, v, 0, 100, &b->temp)) return 2;
        } else if (td_args_is(&a, "--threads")) {
            if (!(v = td_args_value(&a)) || !td_parse_threads(&a, v, &b->threads)) return 2;
        } else if (td_args_is(&a, "--kernels")) {
            if (!(v = td_args_value(&a))) return 2;
            if (!td_kernels_from_name(v, &b->kernels))
                return td_cli_usage_error("bench mtp", "--kernels: '%s' is not one of ref, auto, avx2, avx512, amx", v);
        } else if (td_args_is(&a, "--kv-type")) {
            if (!(v = td_args_value(&a)) || !td_parse_kv_type(&a, v, &b->kv_type)) return 2;
        } else if (td_args_is(&a, "--json")) {
            b->json = true;
        } else {
            return td_args_unknown(&a);
        }
    }
    return -1;
}

int td_bench_mtp(int argc, char **argv)
{
    if (td_bench_mtp_simulated(argc, argv)) return td_bench_mtp_sim_main(argc, argv);
    td_mtp_bench b = {0};
    int rc = td_bench_mtp_parse(argc, argv, &b);
    if (rc >= 0) return rc;
    td_mode_result plain = {0}, mtp = {0};
    td_mtp_stats ms = {0};
    double costs[3] = {0};
    bool identical = true;
    td_tokens a = {0}, c = {0};
    td_status st = td_bench_open(&b);
    if (st == TD_OK) st = td_bench_prompts(&b);
    if (st == TD_OK) {
        td_generator_set_step(b.g, td_bench_step, &b);
        td_mtp_params mp = {.mode = TD_MTP_ON, .k = b.k};
        st = td_mtp_spec_create(b.g, &mp, &b.spec); /* then step is set back to ours below */
        td_generator_set_step(b.g, td_bench_step, &b);
    }
    if (st == TD_OK) {
        td_mtp_spec *spec = b.spec;
        td_mode_result warm = {0};
        b.spec = NULL;
        st = td_bench_run(&b, &b.prompts[0], 8, &warm, NULL); /* page in the weights */
        memset(b.counts[0], 0, (size_t)(b.model->hp.n_layers + 1) * sizeof(td_expert_counts));
        /* per prompt, plain then MTP, so that both see the same machine state */
        for (int i = 0; st == TD_OK && i < b.n_prompts; i++) {
            a.n = c.n = 0;
            b.spec = NULL;
            st = td_bench_run(&b, &b.prompts[i], b.tokens, &plain, &a);
            b.spec = spec;
            if (st == TD_OK) st = td_bench_run(&b, &b.prompts[i], b.tokens, &mtp, &c);
            identical &= a.n == c.n && memcmp(a.ids, c.ids, (size_t)a.n * sizeof(int32_t)) == 0;
        }
        b.spec = spec;
        td_mtp_spec_stats(spec, &ms);
        if (st == TD_OK) st = td_bench_costs(&b, &b.prompts[0], &costs[0], &costs[1], &costs[2]);
    }
    if (st == TD_OK)
        td_bench_report(&b, &plain, &mtp, &ms, identical, costs);
    else
        rc = td_cli_fail("bench mtp", st);
    td_tokens_free(&a);
    td_tokens_free(&c);
    td_bench_close(&b);
    return rc < 0 ? 0 : rc;
}
