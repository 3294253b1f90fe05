/* tandem bench decode: whole-model greedy decoding, one token per step, timed per layer and module kind;
 * the bytes a step reads against the bandwidth measured in the same process (the roofline); the whole
 * model's speed extrapolated from the measured dense and MoE layers; the moe_submit handoff; and the
 * resident set against the plan after a warm-up and after a long context. */
#include "td_bench.h"
#include "td_bench_model.h"
#include "td_clock.h"
#include "td_roofline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void td_bd_help(void)
{
    printf("usage: tandem bench decode (--model M | --synth CONFIG [--layers N] [--type T]) [--tokens N]\n"
           "                           [--prompt N] [--mem-ctx N] [options]\n\n"
           "Prefills a prompt of random tokens, decodes greedily one token per step and prints tok/s, where each\n"
           "layer's time goes (by module kind), the bytes a step reads (weights of the experts used, KV cache),\n"
           "the bandwidth measured in the same process and roofline_ratio = (bytes / bandwidth) / seconds per\n"
           "token (1.0 = the bandwidth limit; on the --extrapolate-layers model when asked), and the resident set\n"
           "against the plan after the warm-up and after filling the context. Last line: JSON.\n\n"
           "  --tokens N       decode steps timed (default 32)\n"
           "  --prompt N       prompt tokens before them (default 64)\n"
           "  --mem-ctx N      fill the KV cache to N positions at the end and read the resident set again\n"
           "                   (default min(4096, --ctx); 0 skips it)\n"
           "  --handoff        then decode again with the routed experts on the driver thread (--moe-async on)\n"
           "                   and report the us per moe_submit handoff and its share of a MoE layer\n"
           "%s",
           td_bm_options_help);
}

typedef struct td_bd_opts {
    td_bm_opts m;
    int64_t tokens, prompt, mem_ctx;
    bool handoff;
} td_bd_opts;

static int td_bd_parse(int argc, char **argv, td_bd_opts *o)
{
    *o = (td_bd_opts){0};
    td_bm_opts_init(&o->m);
    o->tokens = 32;
    o->prompt = 64;
    o->mem_ctx = -1;
    td_args a;
    td_args_init(&a, "bench decode", argc, argv);
    while (td_args_next(&a)) {
        const char *v;
        int r = td_bm_parse(&a, &o->m);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_bd_help();
            return 0;
        } else if (td_args_is(&a, "--tokens")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 1, 1 << 20, &o->tokens)) return 2;
        } else if (td_args_is(&a, "--prompt")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 1, 1 << 24, &o->prompt)) return 2;
        } else if (td_args_is(&a, "--handoff")) {
            o->handoff = true;
        } else if (td_args_is(&a, "--mem-ctx")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 0, 1 << 24, &o->mem_ctx)) return 2;
        } else {
            return td_args_unknown(&a);
        }
    }
    if (!td_bm_check(&o->m, "bench decode")) return 2;
    if (o->mem_ctx < 0) o->mem_ctx = o->m.ctx < 4096 ? o->m.ctx : 4096;
    if (o->prompt + 4 + o->tokens > o->m.ctx || o->mem_ctx > o->m.ctx)
        return td_cli_usage_error("bench decode", "--prompt %lld + 4 warm-up + --tokens %lld (and --mem-ctx %lld) must "
                                  "fit --ctx %lld", (long long)o->prompt, (long long)o->tokens, (long long)o->mem_ctx,
                                  (long long)o->m.ctx);
    return -1;
}

static int32_t td_bd_argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

/* Runs n random tokens from the session's position in chunks of at most `chunk`. */
static td_status td_bd_fill(td_session *s, int64_t n, int64_t vocab, int64_t chunk, uint64_t *rng)
{
    int32_t ids[512];
    if (chunk > 512) chunk = 512;
    for (int64_t done = 0; done < n; done += chunk) {
        int64_t k = n - done < chunk ? n - done : chunk;
        for (int64_t i = 0; i < k; i++) {
            *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((*rng >> 33) % (uint64_t)vocab);
        }
        TD_TRY(td_session_forward(s, ids, k, NULL, NULL));
    }
    return TD_OK;
}

/* One decoding run: prompt, warm-up, the timed steps. */
typedef struct td_bd_run {
    double prefill_s, decode_s, mean_pos;
    td_backend_stats st0, st1;
    td_bm_rss warm;
    td_prof prof; /* the timed steps' books */
} td_bd_run;

typedef struct td_bd_result {
    double prefault_s, membw;
    td_membw_result mb[2];
    td_bd_run main, async; /* async: the --handoff run */
    td_bm_rss full;
    bool have_full, have_async;
} td_bd_result;

static td_status td_bd_decode(const td_bd_opts *o, td_bm *b, uint64_t *rng, td_bd_run *r)
{
    td_session *s = b->s;
    int64_t V = b->model->hp.vocab_size;
    td_backend *const *bs;
    td_engine_backends(b->engine, &bs);
    double t0 = td_now();
    TD_TRY(td_bd_fill(s, o->prompt, V, 512, rng));
    r->prefill_s = td_now() - t0;
    for (int i = 0; i < 4; i++) { /* warm-up steps */
        int32_t t = td_bd_argmax(td_session_logits(s), V);
        TD_TRY(td_session_forward(s, &t, 1, NULL, NULL));
    }
    td_bm_rss_read(&r->warm);
    r->mean_pos = (double)td_session_pos(s) + (double)(o->tokens - 1) / 2 + 1;
    bs[0]->i->stats(bs[0], &r->st0);
    td_prof_reset(&b->prof);
    td_prof_enable(&b->prof, true);
    t0 = td_now();
    for (int64_t i = 0; i < o->tokens; i++) {
        int32_t t = td_bd_argmax(td_session_logits(s), V);
        TD_TRY(td_session_forward(s, &t, 1, NULL, NULL));
    }
    r->decode_s = td_now() - t0;
    td_prof_enable(&b->prof, false);
    bs[0]->i->stats(bs[0], &r->st1);
    return td_prof_snapshot(&b->prof, &r->prof);
}

static td_status td_bd_runs(const td_bd_opts *o, td_bm *b, td_bd_result *r)
{
    uint64_t rng = 12345;
    TD_TRY(td_bm_membw(b, &r->mb[0]));
    r->prefault_s = td_bm_prefault(b);
    TD_TRY(td_bd_decode(o, b, &rng, &r->main));
    TD_TRY(td_bm_membw(b, &r->mb[1]));
    r->membw = 0.5 * (r->mb[0].gbps_median + r->mb[1].gbps_median);
    if (o->handoff) {
        TD_TRY(td_bm_reopen(b, TD_MOE_ASYNC_ON));
        rng = 12345;
        TD_TRY(td_bd_decode(o, b, &rng, &r->async));
        r->have_async = true;
    }
    if (o->mem_ctx > td_session_pos(b->s)) {
        TD_TRY(td_bd_fill(b->s, o->mem_ctx - td_session_pos(b->s), b->model->hp.vocab_size, 512, &rng));
        td_bm_rss_read(&r->full);
        r->have_full = true;
    }
    return TD_OK;
}

/* The handoff of a run: us per moe_submit, and its share of a MoE layer's time (NAN when none). */
static void td_bd_handoff(const td_bd_run *r, double calls, double *us, double *share, int64_t *submits)
{
    double kinds[TD_PROF_KIND_COUNT], moe_layer = 0;
    *submits = r->st1.moe_submits - r->st0.moe_submits;
    *us = *share = NAN;
    if (*submits <= 0 || !(r->st1.moe_handoff_s > r->st0.moe_handoff_s)) return;
    *us = 1e6 * (r->st1.moe_handoff_s - r->st0.moe_handoff_s) / (double)*submits;
    if (td_prof_layer_mean(&r->prof, true, kinds, &moe_layer)) *share = *us / (1e6 * moe_layer / calls);
}

static void td_bd_report(const td_bd_opts *o, const td_bm *b, const td_bd_result *r)
{
    const td_hparams *hp = &b->model->hp;
    const td_bd_run *m = &r->main;
    double calls = (double)o->tokens, step = m->decode_s / calls;
    double bytes = (double)td_bm_extrapolate_bytes(b, &m->prof, 0, m->mean_pos);
    double ratio = bytes / (r->membw * 1e9) / step;
    cJSON *j = cJSON_CreateObject();
    td_bm_json_common(b, j, "decode");
    if (!o->m.json) {
        printf("model       %s: built or opened in %.1f s, weights paged in in %.1f s\n", b->name, b->build_s,
               r->prefault_s);
        printf("engine      %s kernels, %d threads, KV %s, context %lld\n",
               td_kernels_name(td_cpu_kernels(td_engine_cpu(b->engine))), td_cpu_threads(td_engine_cpu(b->engine)),
               td_kv_type_name(td_session_kv_type(b->s)), (long long)td_session_ctx(b->s));
        printf("prompt      %lld tokens in %.3f s (%.1f tok/s)\n", (long long)o->prompt, m->prefill_s,
               (double)o->prompt / m->prefill_s);
        printf("decode      %lld tokens: %.2f tok/s, %.3f ms per token (%d layers, %d dense)\n", (long long)o->tokens,
               1 / step, 1e3 * step, hp->n_layers, hp->first_k_dense_replace);
        printf("per layer   ms per token, by module kind:\n");
    }
    td_bm_split_report(b, &m->prof, calls, j);
    double tok_s_x = NAN, bytes_x = NAN, ratio_x = NAN, sec_x;
    if (o->m.extrapolate_layers && td_bm_extrapolate(b, &m->prof, o->m.extrapolate_layers, calls, step, &sec_x)) {
        tok_s_x = 1 / sec_x;
        bytes_x = (double)td_bm_extrapolate_bytes(b, &m->prof, o->m.extrapolate_layers, m->mean_pos);
        ratio_x = bytes_x / (r->membw * 1e9) / sec_x;
    }
    const td_bd_run *h = r->have_async ? &r->async : m; /* the handoff: of the --handoff run, else this one's */
    double handoff_us, share;
    int64_t submits;
    td_bd_handoff(h, calls, &handoff_us, &share, &submits);
    if (!o->m.json) {
        printf("bytes       %.1f MiB per token (weights of the %.2f experts used per MoE layer, KV at %.0f positions); "
               "membw %.2f GB/s (before %.2f, after %.2f)\n",
               bytes / (1 << 20), td_bm_distinct_per_call(b, &m->prof), m->mean_pos, r->membw, r->mb[0].gbps_median,
               r->mb[1].gbps_median);
        printf("roofline    %.3f of the bandwidth limit (%.3f ms at membw vs %.3f ms measured)\n", ratio,
               1e3 * bytes / (r->membw * 1e9), 1e3 * step);
        if (o->m.extrapolate_layers && isnan(tok_s_x))
            printf("extrapolate %d layers: needs a dense and a MoE layer in the model\n", o->m.extrapolate_layers);
        else if (o->m.extrapolate_layers)
            printf("extrapolate %d layers (%d dense): %.2f tok/s, %.1f MiB per token, roofline_ratio %.3f\n",
                   o->m.extrapolate_layers, hp->first_k_dense_replace, tok_s_x, bytes_x / (1 << 20), ratio_x);
        if (!isnan(handoff_us))
            printf("moe handoff %.1f us per moe_submit (%lld submits, experts on the driver thread%s): %.2f%% of a MoE "
                   "layer\n",
                   handoff_us, (long long)submits, r->have_async ? ", --handoff run" : "", 100 * share);
        if (r->have_async)
            printf("            the --handoff run decoded %.2f tok/s (%.2fx the run above)\n",
                   calls / r->async.decode_s, m->decode_s / r->async.decode_s);
    }
    cJSON_AddNumberToObject(j, "prompt_tokens", (double)o->prompt);
    cJSON_AddNumberToObject(j, "tokens", (double)o->tokens);
    cJSON_AddNumberToObject(j, "prompt_tok_s", (double)o->prompt / m->prefill_s);
    cJSON_AddNumberToObject(j, "tok_s", 1 / step);
    cJSON_AddNumberToObject(j, "ms_per_token", 1e3 * step);
    cJSON_AddNumberToObject(j, "bytes_per_token", bytes);
    cJSON_AddNumberToObject(j, "membw_gbps", r->membw);
    cJSON_AddNumberToObject(j, "roofline_ratio_measured", ratio);
    if (o->m.extrapolate_layers) cJSON_AddNumberToObject(j, "extrapolate_layers", o->m.extrapolate_layers);
    if (isnan(tok_s_x)) {
        cJSON_AddNullToObject(j, "tok_s_extrapolated");
        cJSON_AddNumberToObject(j, "roofline_ratio", ratio);
    } else {
        cJSON_AddNumberToObject(j, "tok_s_extrapolated", tok_s_x);
        cJSON_AddNumberToObject(j, "bytes_per_token_extrapolated", bytes_x);
        cJSON_AddNumberToObject(j, "roofline_ratio", ratio_x);
    }
    if (isnan(handoff_us)) {
        cJSON_AddNullToObject(j, "moe_handoff_us");
    } else {
        cJSON_AddNumberToObject(j, "moe_handoff_us", handoff_us);
        cJSON_AddNumberToObject(j, "moe_handoff_share", share);
    }
    if (r->have_async) cJSON_AddNumberToObject(j, "handoff_run_tok_s", calls / r->async.decode_s);
    td_bm_rss_report(b, "after warm-up", &m->warm, j, "memory_warm");
    if (r->have_full) {
        char when[64];
        snprintf(when, sizeof when, "after %lld positions", (long long)o->mem_ctx);
        td_bm_rss_report(b, when, &r->full, j, "memory_ctx");
    }
    char *line = cJSON_PrintUnformatted(j);
    if (line) puts(line);
    free(line);
    cJSON_Delete(j);
}

int td_bench_decode(int argc, char **argv)
{
    td_bd_opts o;
    int rc = td_bd_parse(argc, argv, &o);
    if (rc >= 0) return rc;
    td_bm b;
    td_bd_result r = {0};
    td_status st = td_bm_open(&o.m, &b);
    if (st == TD_OK) st = td_bd_runs(&o, &b, &r);
    if (st == TD_OK) td_bd_report(&o, &b, &r);
    else rc = td_cli_fail("bench decode", st);
    td_prof_detach(&r.main.prof);
    td_prof_detach(&r.async.prof);
    td_bm_close(&b);
    return rc < 0 ? 0 : rc;
}
