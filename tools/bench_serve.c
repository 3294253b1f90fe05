/* tandem bench serve: what the server's scheduler gets from batching and from prefix reuse, without HTTP.
 *  - batching: S slots decode at once, every step one batched forward call; the aggregate tokens per
 *    second, the step time, and the distinct routed experts a step reads (the union over its rows, per MoE
 *    layer), for each S of --slots;
 *  - prefix reuse: a conversation of about --prefix-tokens tokens, then its second turn: how many prompt
 *    tokens each turn prefilled and its time to first token. */
#include "td_alloc.h"
#include "td_bench.h"
#include "td_chat_setup.h"
#include "td_clock.h"
#include "td_plan.h"
#include "td_roofline.h"
#include "td_srv_sched.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TD_BS_MAX_RUNS 8

static void td_bench_serve_help(void)
{
    printf("usage: tandem bench serve [--model M] [--slots 1,4,16] [--tokens N] [--prefix-tokens P] [--json]\n\n"
           "Runs the scheduler of tandem serve on this model, without HTTP. For each slot count S: S requests of\n"
           "--prompt-len prompt tokens decode --tokens tokens each (EOS ignored) at once, every step one batched\n"
           "forward call over the S sessions; prints aggregate decode tok/s, the step time, and the distinct\n"
           "routed experts one step reads per MoE layer (the union over its S rows; S <= 16). Then the prefix\n"
           "reuse of a chat: a first turn of about --prefix-tokens tokens and its second turn, with the tokens\n"
           "each prefilled and the time to the first token (0 skips it). The last line is JSON.\n\n"
           "  --slots LIST       slot counts (default 1,4,16)\n"
           "  --tokens N         tokens per request (default 64)\n"
           "  --prompt-len N     prompt tokens per request in the batching runs (default 32)\n"
           "  --prefix-tokens P  size of the first turn (default 2000; the slot holds --ctx, default P + 2096)\n"
           "  --model M, --rules R, --kernels K, --threads N, --mtp M, --mtp-k K as for tandem serve\n"
           "  --json             print only the JSON line\n");
}

typedef struct td_bs_run {
    int slots;
    double tok_s, step_ms, distinct, rows_per_step;
    int64_t tokens, steps;
    double step_bytes; /* weights and KV a decode step reads: the union of its experts, every slot's cache */
} td_bs_run;

typedef struct td_bs {
    td_chat_opts c;
    int slots[TD_BS_MAX_RUNS], n_runs;
    int64_t tokens, prompt_len, prefix_tokens;
    bool json;
    const char *rules;
    td_rules *rules_loaded;
    td_plan *plan;
    double bw_gbps; /* read bandwidth measured in this process */
    td_chat_rt rt;
    bool placeholder; /* the model has no tokenizer: fixed token ids */
    td_expert_counts *counts;
    td_bs_run runs[TD_BS_MAX_RUNS];
} td_bs;

static bool td_bs_parse_slots(td_args *a, const char *v, td_bs *b)
{
    b->n_runs = 0;
    for (const char *p = v; *p && b->n_runs < TD_BS_MAX_RUNS;) {
        char *end;
        long s = strtol(p, &end, 10);
        if (end == p || s < 1 || s > TD_SRV_MAX_SLOTS) {
            td_cli_usage_error(a->cmd, "--slots: '%s' is not a list of counts 1..%d", v, TD_SRV_MAX_SLOTS);
            return false;
        }
        b->slots[b->n_runs++] = (int)s;
        p = *end == ',' ? end + 1 : end;
    }
    return b->n_runs > 0;
}

static int td_bs_parse(int argc, char **argv, td_bs *b)
{
    memset(b, 0, sizeof *b);
    b->c.sampling = td_sampler_greedy();
    b->c.quiet = true;
    b->tokens = 64;
    b->prompt_len = 32;
    b->prefix_tokens = 2000;
    b->slots[0] = 1, b->slots[1] = 4, b->slots[2] = 16, b->n_runs = 3;
    td_args a;
    td_args_init(&a, "bench serve", argc, argv);
    while (td_args_next(&a)) {
        int r = td_chat_opts_parse(&a, &b->c);
        if (r < 0) return 2;
        if (r > 0) continue;
        const char *v;
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_bench_serve_help();
            return 0;
        } else if (td_args_is(&a, "--slots")) {
            if (!(v = td_args_value(&a)) || !td_bs_parse_slots(&a, v, b)) return 2;
        } else if (td_args_is(&a, "--tokens")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 1, 1 << 20, &b->tokens)) return 2;
        } else if (td_args_is(&a, "--prompt-len")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 1, 1 << 20, &b->prompt_len)) return 2;
        } else if (td_args_is(&a, "--prefix-tokens")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 0, 1 << 20, &b->prefix_tokens)) return 2;
        } else if (td_args_is(&a, "--rules")) {
            if (!(b->rules = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--json")) {
            b->json = true;
        } else {
            return td_args_unknown(&a);
        }
    }
    return -1;
}

/* Runs jobs to the end on a fresh scheduler of n_slots x ctx; returns its statistics. */
static td_status td_bs_run_jobs(td_bs *b, int n_slots, int64_t ctx, td_srv_job **jobs, int n, td_srv_stats *st)
{
    td_srv_sched_params sp = {.engine = b->rt.engine, .tok = b->rt.tok, .n_slots = n_slots, .ctx = ctx,
                              .kv_type = b->c.kv_type, .queue_cap = n, .mtp = b->c.mtp_set ? b->c.mtp : TD_MTP_OFF, .mtp_k = b->c.mtp_k,
                              .quiet = true};
    td_srv_sched *sc;
    TD_TRY(td_srv_sched_create(&sp, &sc));
    td_status rc = TD_OK;
    for (int i = 0; i < n; i++)
        if (td_srv_sched_submit(sc, jobs[i]) != TD_SUBMIT_OK) rc = td_fail(TD_E_ARG, "the scheduler refused a job");
    td_strbuf scratch = {0};
    for (int i = 0; i < n; i++) {
        while (rc == TD_OK && !td_srv_job_wait(jobs[i], 1.0, &scratch)) td_strbuf_clear(&scratch);
        if (rc == TD_OK && jobs[i]->status) rc = td_fail(TD_E_ARG, "a job failed: %s", jobs[i]->error);
    }
    td_strbuf_free(&scratch);
    td_srv_sched_stats(sc, st);
    td_srv_sched_free(sc);
    return rc;
}

/* The bytes one decode step of S rows reads: every weight of the main layers once (an embedding row per
 * row), the distinct experts of each MoE layer, and each slot's KV cache at its mean position. */
static double td_bs_step_bytes(const td_bs *b, int S, double mean_pos, int64_t kv_bytes_per_token)
{
    const td_model *m = b->rt.model;
    const td_hparams *hp = &m->hp;
    double bytes = 0;
    for (int i = 0; i < m->n_modules; i++) {
        const td_module *mod = &m->modules[i];
        if (mod->layer >= hp->n_layers || mod->kind == TD_MODULE_MTP) continue;
        if (mod->kind == TD_MODULE_EMBED) {
            bytes += (double)S * (double)mod->bytes / (double)hp->vocab_size;
        } else if (mod->kind == TD_MODULE_EXPERTS) {
            const td_expert_counts *c = &b->counts[mod->layer];
            double distinct = c->calls[S] ? (double)c->distinct[S] / (double)c->calls[S] : hp->n_routed_experts;
            bytes += distinct * (double)mod->bytes / (double)hp->n_routed_experts;
        } else {
            bytes += (double)mod->bytes;
        }
    }
    return bytes + (double)S * mean_pos * (double)kv_bytes_per_token;
}

/* S requests of distinct fixed prompts, decoded together. */
static td_status td_bs_batching(td_bs *b, int r)
{
    int S = b->slots[r];
    const td_hparams *hp = &b->rt.model->hp;
    td_srv_job *jobs[TD_SRV_MAX_SLOTS] = {0};
    td_status rc = TD_OK;
    uint64_t seed = 12345;
    for (int i = 0; i < S && rc == TD_OK; i++) {
        rc = td_srv_job_create(&jobs[i]);
        for (int64_t t = 0; t < b->prompt_len && rc == TD_OK; t++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            int64_t lo = hp->vocab_size > 1000 ? 100 : 0, span = hp->vocab_size - lo - 10;
            rc = td_tokens_push(&jobs[i]->prompt, (int32_t)(lo + (int64_t)((seed >> 33) % (uint64_t)span)));
        }
        if (rc == TD_OK) {
            jobs[i]->max_tokens = b->tokens;
            jobs[i]->ignore_eos = true;
        }
    }
    int L = hp->n_layers;
    memset(b->counts, 0, (size_t)L * sizeof *b->counts);
    td_engine_count_experts(b->rt.engine, b->counts);
    td_srv_stats st = {0};
    if (rc == TD_OK) rc = td_bs_run_jobs(b, S, b->prompt_len + b->tokens + 8, jobs, S, &st);
    td_engine_count_experts(b->rt.engine, NULL);
    for (int i = 0; i < S; i++) td_srv_job_free(jobs[i]);
    TD_TRY(rc);
    td_bs_run *run = &b->runs[r];
    run->slots = S;
    run->tokens = st.decode_tokens;
    run->steps = st.decode_steps;
    run->tok_s = st.decode_s > 0 ? (double)st.decode_tokens / st.decode_s : 0;
    run->step_ms = st.decode_steps ? 1e3 * st.decode_s / (double)st.decode_steps : 0;
    run->rows_per_step = st.decode_steps ? (double)st.decode_tokens / (double)st.decode_steps : 0;
    double sum = 0;
    int layers = 0;
    for (int l = 0; l < L && S <= TD_EXPERT_COUNT_MAX_BATCH; l++)
        if (b->counts[l].calls[S]) {
            sum += (double)b->counts[l].distinct[S] / (double)b->counts[l].calls[S];
            layers++;
        }
    run->distinct = layers ? sum / layers : NAN;
    run->step_bytes = S <= TD_EXPERT_COUNT_MAX_BATCH
                          ? td_bs_step_bytes(b, S, (double)b->prompt_len + 0.5 * (double)b->tokens, st.kv_bytes_per_token)
                          : NAN;
    return TD_OK;
}

/* The text of a long first turn: numbered sentences until the prompt has about `want` tokens. */
static td_status td_bs_long_text(td_bs *b, int64_t want, char **out)
{
    td_strbuf s = {0};
    td_tokens t = {0};
    for (int i = 1;; i++) {
        char line[160];
        snprintf(line, sizeof line, "Note %d: the harbor, the lantern and the river were all quiet that evening. ", i);
        td_strbuf_puts(&s, line);
        if (i % 16 == 0) {
            t.n = 0;
            TD_TRY(td_tokenizer_encode(b->rt.tok, s.p, s.n, false, &t));
            if (t.n >= want) break;
        }
    }
    td_tokens_free(&t);
    if (s.oom) return td_fail(TD_E_NOMEM, "out of memory");
    *out = s.p;
    return TD_OK;
}

static td_status td_bs_turn(td_bs *b, const td_chat_msg *msgs, int n, td_srv_job **out)
{
    TD_TRY(td_srv_job_create(out));
    (*out)->max_tokens = 32;
    return td_chat_rt_prompt(&b->rt, msgs, n, &(*out)->prompt);
}

/* Two turns of one chat on one slot: the second prefills only what the first did not hold. */
static td_status td_bs_prefix(td_bs *b, cJSON *j)
{
    if (b->prefix_tokens == 0 || b->placeholder) return TD_OK;
    char *text = NULL;
    TD_TRY(td_bs_long_text(b, b->prefix_tokens, &text));
    td_chat_msg msgs[4] = {{TD_ROLE_USER, text}, {TD_ROLE_ASSISTANT, ""}, {TD_ROLE_USER, "And what was quiet?"}};
    td_srv_job *t1 = NULL, *t2 = NULL;
    td_srv_sched_params sp = {.engine = b->rt.engine, .tok = b->rt.tok, .n_slots = 1, .ctx = b->c.ctx ? b->c.ctx : b->prefix_tokens + 2096,
                              .kv_type = b->c.kv_type, .queue_cap = 2, .quiet = true};
    td_srv_sched *sc = NULL;
    td_strbuf scratch = {0};
    td_status rc = td_bs_turn(b, msgs, 1, &t1);
    if (rc == TD_OK) rc = td_srv_sched_create(&sp, &sc);
    if (rc == TD_OK && td_srv_sched_submit(sc, t1) != TD_SUBMIT_OK) rc = td_fail(TD_E_ARG, "refused");
    while (rc == TD_OK && !td_srv_job_wait(t1, 1.0, &scratch)) {}
    char *answer = NULL;
    if (rc == TD_OK) {
        /* the answer as the client saw it, resent with the next question */
        td_strbuf ans = {0};
        size_t at = 0, n;
        td_gen_piece kind;
        const char *p;
        while (td_srv_job_next_piece(&scratch, &at, &kind, &p, &n)) td_strbuf_put(&ans, p, n);
        answer = ans.p ? ans.p : td_strdup("");
        msgs[1].content = answer;
        rc = td_bs_turn(b, msgs, 3, &t2);
    }
    if (rc == TD_OK && td_srv_sched_submit(sc, t2) != TD_SUBMIT_OK) rc = td_fail(TD_E_ARG, "refused");
    while (rc == TD_OK && !td_srv_job_wait(t2, 1.0, &scratch)) {}
    if (rc == TD_OK) {
        double ttft1 = t1->t_first - t1->t_submit, ttft2 = t2->t_first - t2->t_submit;
        cJSON *o = cJSON_AddObjectToObject(j, "prefix");
        cJSON_AddNumberToObject(o, "turn1_prompt_tokens", (double)t1->prompt_tokens);
        cJSON_AddNumberToObject(o, "turn1_prefilled", (double)(t1->prompt_tokens - t1->reused_tokens));
        cJSON_AddNumberToObject(o, "turn1_ttft_ms", 1e3 * ttft1);
        cJSON_AddNumberToObject(o, "turn2_prompt_tokens", (double)t2->prompt_tokens);
        cJSON_AddNumberToObject(o, "turn2_prefilled", (double)(t2->prompt_tokens - t2->reused_tokens));
        cJSON_AddNumberToObject(o, "turn2_ttft_ms", 1e3 * ttft2);
        cJSON_AddNumberToObject(o, "ttft_ratio", ttft2 / ttft1);
        if (!b->json)
            printf("prefix reuse: turn 1 prefilled %lld of %lld tokens, first token after %.1f ms; turn 2 prefilled "
                   "%lld of %lld, first token after %.1f ms (%.1f%% of turn 1)\n",
                   (long long)(t1->prompt_tokens - t1->reused_tokens), (long long)t1->prompt_tokens, 1e3 * ttft1,
                   (long long)(t2->prompt_tokens - t2->reused_tokens), (long long)t2->prompt_tokens, 1e3 * ttft2,
                   100 * ttft2 / ttft1);
    }
    td_srv_sched_free(sc);
    td_srv_job_free(t1);
    td_srv_job_free(t2);
    td_strbuf_free(&scratch);
    td_free(answer);
    td_free(text);
    return rc;
}

static td_status td_bs_open(td_bs *b)
{
    td_status st = td_chat_rt_open_model(&b->c, &b->rt);
    if (st != TD_OK && b->rt.model && !b->rt.tok) { /* a model without a tokenizer: fixed ids */
        td_err_clear();
        b->placeholder = true;
        st = td_tokenizer_placeholder(b->rt.model->hp.vocab_size, &b->rt.tok);
    }
    TD_TRY(st);
    int max_slots = 1;
    for (int r = 0; r < b->n_runs; r++) max_slots = b->slots[r] > max_slots ? b->slots[r] : max_slots;
    int64_t kv = (int64_t)max_slots * (b->prompt_len + b->tokens + 8);
    if (b->prefix_tokens + 2096 > kv) kv = b->prefix_tokens + 2096;
    TD_TRY(td_chat_rt_plan(&b->c, b->rules, &b->rt, kv, &b->rules_loaded, &b->plan));
    TD_TRY(td_chat_rt_open_engine(&b->c, b->plan, &b->rt));
    b->counts = td_calloc((size_t)b->rt.model->hp.n_layers, sizeof *b->counts);
    return b->counts ? TD_OK : td_fail(TD_E_NOMEM, "out of memory");
}

int td_bench_serve(int argc, char **argv)
{
    td_bs b;
    int rc = td_bs_parse(argc, argv, &b);
    if (rc >= 0) return rc;
    td_status st = td_bs_open(&b);
    cJSON *j = cJSON_CreateObject();
    if (st == TD_OK) {
        cJSON_AddStringToObject(j, "model", b.rt.model->path);
        cJSON_AddNumberToObject(j, "threads", td_cpu_threads(td_engine_cpu(b.rt.engine)));
        td_membw_params mp = {0};
        td_membw_result bw;
        st = td_membw_measure(td_engine_cpu(b.rt.engine), &mp, &bw);
        b.bw_gbps = bw.gbps_best;
        cJSON_AddNumberToObject(j, "read_gbps", b.bw_gbps);
        int first = b.slots[0];
        b.slots[0] = 1;
        if (st == TD_OK) st = td_bs_batching(&b, 0); /* warm-up: pages, caches, the thread pool */
        b.slots[0] = first;
    }
    if (!b.json && st == TD_OK)
        printf("read bandwidth %.1f GB/s (measured here)\n%-6s %12s %10s %10s %14s %12s %12s\n", b.bw_gbps, "slots",
               "tok/s", "step ms", "rows/step", "experts/step", "MB/step", "step/bound");
    cJSON *runs = cJSON_AddArrayToObject(j, "batching");
    for (int r = 0; r < b.n_runs && st == TD_OK; r++) {
        st = td_bs_batching(&b, r);
        if (st != TD_OK) break;
        td_bs_run *x = &b.runs[r];
        if (!b.json)
            printf("%-6d %12.1f %10.3f %10.2f %14.1f %12.2f %12.2f\n", x->slots, x->tok_s, x->step_ms, x->rows_per_step,
                   x->distinct, x->step_bytes / 1e6, x->step_ms / (1e3 * x->step_bytes / (b.bw_gbps * 1e9)));
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "slots", x->slots);
        cJSON_AddNumberToObject(o, "tok_s", x->tok_s);
        cJSON_AddNumberToObject(o, "step_ms", x->step_ms);
        cJSON_AddNumberToObject(o, "rows_per_step", x->rows_per_step);
        if (isnan(x->distinct))
            cJSON_AddNullToObject(o, "distinct_experts_per_layer_step");
        else
            cJSON_AddNumberToObject(o, "distinct_experts_per_layer_step", x->distinct);
        if (!isnan(x->step_bytes)) {
            cJSON_AddNumberToObject(o, "step_bytes", x->step_bytes);
            /* the goal on the GPU host: step time <= 1.15 x the bytes a step reads / the bandwidth */
            cJSON_AddNumberToObject(o, "step_over_bound", x->step_ms / (1e3 * x->step_bytes / (b.bw_gbps * 1e9)));
        }
        cJSON_AddItemToArray(runs, o);
    }
    if (st == TD_OK) st = td_bs_prefix(&b, j);
    if (st == TD_OK) {
        char *s = cJSON_PrintUnformatted(j);
        if (s) puts(s);
        td_free(s);
        rc = 0;
    } else {
        rc = td_cli_fail("bench serve", st);
    }
    cJSON_Delete(j);
    td_free(b.counts);
    td_chat_rt_close(&b.rt);
    td_plan_free(b.plan);
    td_rules_free(b.rules_loaded);
    return rc;
}
