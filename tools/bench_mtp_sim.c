/* tandem bench mtp --simulate-acceptance P: what MTP speculative decoding costs and would give at real
 * shapes, on any model with an MTP block (a synthetic one included, whose random MTP head drafts nothing
 * useful). The main model first decodes greedily one token per step; then the verify schedule runs
 * with the draft forced right at rate P: the MTP block drafts as usual (its cost is paid), but the draft
 * used is the main model's own next-but-one argmax from the first run with probability P, and another
 * token otherwise, so the output stays the main model's greedy stream.
 *
 * It reports the cost of a verify pass of 2 tokens against a 1-token step, the distinct experts each MoE
 * layer reads for the pair, and the speedup: as run, as implied by the costs at acceptance P, and as
 * projected with the 13.8 distinct experts per adjacent pair that a published trace of DeepSeek-R1
 * shows (random routing gives about 15.75 of 16), from the measured cost of one expert. */
#include "td_bench.h"
#include "td_bench_model.h"
#include "td_clock.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TD_TRACE_PAIR_DISTINCT 13.8 /* distinct experts of two adjacent tokens in R1 671B's routing trace */

typedef struct td_ms_result {
    int64_t tokens, steps, accepted;
    double plain_s, mtp_s, verify_s, draft_s;
    bool identical;
    td_prof plain, mtp; /* books of the plain run (1-token steps) and the MTP run (verify + drafts) */
} td_ms_result;

static int32_t td_ms_argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

static td_status td_ms_prompt(td_bm *b, int64_t n, bool keep_up)
{
    int32_t ids[512];
    uint64_t rng = 4242;
    TD_TRY(td_session_rewind(b->s, 0));
    td_session_mtp_keep_up(b->s, keep_up);
    for (int64_t done = 0; done < n; done += 512) {
        int64_t k = n - done < 512 ? n - done : 512;
        for (int64_t i = 0; i < k; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((rng >> 33) % (uint64_t)b->model->hp.vocab_size);
        }
        TD_TRY(td_session_forward(b->s, ids, k, NULL, NULL));
    }
    return TD_OK;
}

/* Plain greedy decoding: g[0..n] (g[0] from the prompt's logits), timed over the n steps. */
static td_status td_ms_plain(td_bm *b, int64_t n, int32_t *g, td_ms_result *r)
{
    int64_t V = b->model->hp.vocab_size;
    g[0] = td_ms_argmax(td_session_logits(b->s), V);
    td_prof_reset(&b->prof);
    td_prof_enable(&b->prof, true);
    double t0 = td_now();
    for (int64_t i = 0; i < n; i++) {
        TD_TRY(td_session_forward(b->s, &g[i], 1, NULL, NULL));
        g[i + 1] = td_ms_argmax(td_session_logits(b->s), V);
    }
    r->plain_s = td_now() - t0;
    td_prof_enable(&b->prof, false);
    return td_prof_snapshot(&b->prof, &r->plain);
}

/* The verify schedule: per step, an MTP draft (paid, then replaced by the forced one), a verify pass of
 * [pending, draft], and a rewind of the draft's row when the main model disagrees with it. */
static td_status td_ms_mtp(td_bm *b, int64_t n, double acceptance, const int32_t *g, float *logits2, td_ms_result *r)
{
    td_session *s = b->s;
    int64_t V = b->model->hp.vocab_size, i = 0; /* g[i] is the pending token: chosen, not run yet */
    int32_t pending = td_ms_argmax(td_session_logits(s), V);
    uint64_t rng = 99;
    r->identical = pending == g[0];
    td_prof_reset(&b->prof);
    td_prof_enable(&b->prof, true);
    double t0 = td_now();
    while (i < n) {
        double a = td_now();
        TD_TRY(td_session_mtp_draft(s, pending));
        double c = td_now();
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        bool right = (double)(rng >> 11) * 0x1p-53 < acceptance;
        int32_t draft = right ? g[i + 1] : (int32_t)((g[i + 1] + 1) % V);
        int32_t pair[2] = {pending, draft};
        TD_TRY(td_session_forward(s, pair, 2, logits2, NULL));
        r->draft_s += c - a;
        r->verify_s += td_now() - c;
        r->steps++;
        int32_t next = td_ms_argmax(logits2, V);
        if (next == draft && i + 1 < n) { /* both tokens stand; the second row's argmax is pending next */
            r->accepted++;
            i += 2;
            pending = td_ms_argmax(logits2 + V, V);
        } else {
            TD_TRY(td_session_rewind(s, td_session_pos(s) - 1));
            i += 1;
            pending = next;
        }
        r->identical &= pending == g[i];
    }
    r->mtp_s = td_now() - t0;
    r->tokens = i;
    td_prof_enable(&b->prof, false);
    return td_prof_snapshot(&b->prof, &r->mtp);
}

/* Seconds of the routed experts per MoE layer and call, and distinct experts per call, over the main
 * layers of a profiler's books. */
static void td_ms_experts(const td_bm *b, const td_prof *p, double calls, double *sec, double *distinct)
{
    double kinds[TD_PROF_KIND_COUNT], total;
    *sec = td_prof_layer_mean(p, true, kinds, &total) ? kinds[TD_PROF_EXPERTS] / calls : 0;
    *distinct = td_bm_distinct_per_call(b, p);
}

static void td_ms_report(const td_bm *b, double acceptance, int64_t prompt, const td_ms_result *r)
{
    const td_hparams *hp = &b->model->hp;
    int L = b->o.extrapolate_layers ? b->o.extrapolate_layers : hp->n_layers;
    int K = hp->first_k_dense_replace < L ? hp->first_k_dense_replace : L;
    double n1 = (double)r->tokens, steps = (double)r->steps;
    double t1 = r->plain_s / n1, tv = r->verify_s / steps, td = r->draft_s / steps;
    double plain_tps = n1 / r->plain_s, mtp_tps = n1 / r->mtp_s, tps = n1 / steps;
    double e1, d1, e2, d2;
    td_ms_experts(b, &r->plain, n1, &e1, &d1);
    td_ms_experts(b, &r->mtp, steps, &e2, &d2);
    double per_expert = d2 > 0 ? e2 / d2 : 0; /* one expert's share of a verify's MoE layer */
    /* the whole model when asked: the dense and MoE layer times of each run, extrapolated */
    double T1 = t1, TV = tv;
    bool extrap = b->o.extrapolate_layers && td_bm_extrapolate(b, &r->plain, L, n1, t1, &T1) &&
                  td_bm_extrapolate(b, &r->mtp, L, steps, tv, &TV);
    if (!extrap) T1 = t1, TV = tv, L = hp->n_layers, K = hp->first_k_dense_replace < L ? hp->first_k_dense_replace : L;
    /* the trace's 13.8 of 16 is for top-8; other top-k scale with it */
    double trace = TD_TRACE_PAIR_DISTINCT * hp->n_experts_per_tok / 8.0;
    double TVp = TV - (double)(L - K) * (d2 - trace) * per_expert;
    double at = 1 + acceptance; /* tokens per step at the simulated rate */
    double implied = at * T1 / (TV + td), projected = at * T1 / (TVp + td);
    if (!b->o.json) {
        printf("model       %s, %d threads, %s kernels\n", b->name, td_cpu_threads(td_engine_cpu(b->engine)),
               td_kernels_name(td_cpu_kernels(td_engine_cpu(b->engine))));
        printf("runs        prompt %lld tokens, then %lld tokens plain and with drafts forced right at %.2f\n",
               (long long)prompt, (long long)r->tokens, acceptance);
        printf("plain       %.2f tok/s (%.3f ms per token)\n", plain_tps, 1e3 * t1);
        printf("mtp         %.2f tok/s: acceptance %.3f (%lld of %lld), %.2f tokens/step, speedup %.2fx as run%s\n",
               mtp_tps, (double)r->accepted / steps, (long long)r->accepted, (long long)r->steps, tps,
               mtp_tps / plain_tps, r->identical ? ", greedy stream identical" : ", GREEDY STREAM DIFFERS");
        printf("costs       verify of 2 tokens %.3f ms = %.2fx a 1-token step; MTP draft %.3f ms = %.2fx\n", 1e3 * tv,
               tv / t1, 1e3 * td, td / t1);
        printf("experts     per MoE layer: %.2f distinct for 1 token, %.2f for a verify pair; one expert %.3f ms\n", d1,
               d2, 1e3 * per_expert);
        if (extrap)
            printf("whole model %d layers (%d dense): 1-token step %.3f ms, verify %.3f ms (%.2fx)\n", L, K, 1e3 * T1,
                   1e3 * TV, TV / T1);
        printf("speedup     at acceptance %.2f: %.2fx with %.2f distinct experts per pair (measured), %.2fx with %.2f "
               "(R1's trace: 13.8 of 16 for top-8)%s\n",
               acceptance, implied, d2, projected, trace, extrap ? ", on the whole model" : "");
    }
    cJSON *j = cJSON_CreateObject();
    td_bm_json_common(b, j, "mtp");
    cJSON_AddNumberToObject(j, "simulate_acceptance", acceptance);
    cJSON_AddNumberToObject(j, "acceptance", (double)r->accepted / steps);
    cJSON_AddNumberToObject(j, "tokens", n1);
    cJSON_AddNumberToObject(j, "tokens_per_step", tps);
    cJSON_AddNumberToObject(j, "plain_tok_s", plain_tps);
    cJSON_AddNumberToObject(j, "mtp_tok_s", mtp_tps);
    cJSON_AddNumberToObject(j, "speedup", mtp_tps / plain_tps);
    cJSON_AddBoolToObject(j, "identical", r->identical);
    cJSON_AddNumberToObject(j, "decode_ms", 1e3 * t1);
    cJSON_AddNumberToObject(j, "verify_ms", 1e3 * tv);
    cJSON_AddNumberToObject(j, "draft_ms", 1e3 * td);
    cJSON_AddNumberToObject(j, "verify_ratio", tv / t1);
    cJSON_AddNumberToObject(j, "experts_single", d1);
    cJSON_AddNumberToObject(j, "experts_verify", d2);
    cJSON_AddNumberToObject(j, "expert_ms", 1e3 * per_expert);
    if (extrap) {
        cJSON_AddNumberToObject(j, "extrapolate_layers", L);
        cJSON_AddNumberToObject(j, "decode_ms_extrapolated", 1e3 * T1);
        cJSON_AddNumberToObject(j, "verify_ms_extrapolated", 1e3 * TV);
        cJSON_AddNumberToObject(j, "verify_ratio_extrapolated", TV / T1);
    }
    cJSON_AddNumberToObject(j, "speedup_implied", implied);
    cJSON_AddNumberToObject(j, "trace_pair_distinct", trace);
    cJSON_AddNumberToObject(j, "speedup_projected", projected);
    char *line = cJSON_PrintUnformatted(j);
    if (line) puts(line);
    free(line);
    cJSON_Delete(j);
}

static int td_bench_mtp_simulate(const td_bm_opts *o, double acceptance, int64_t tokens, int64_t prompt)
{
    td_bm b;
    td_ms_result r = {0};
    int64_t V = 0;
    int32_t *g = malloc((size_t)(tokens + 2) * sizeof *g);
    float *logits2 = NULL;
    td_status st = g ? td_bm_open(o, &b) : td_fail(TD_E_NOMEM, "out of memory");
    if (st == TD_OK && !b.model->mtp)
        st = td_fail(TD_E_NOT_FOUND, "%s has no MTP block (with --synth, add --keep-mtp)", b.name);
    if (st == TD_OK && prompt + tokens + 2 > o->ctx)
        st = td_fail(TD_E_ARG, "the prompt (%lld) and --tokens (%lld) do not fit --ctx %lld", (long long)prompt,
                     (long long)tokens, (long long)o->ctx);
    if (st == TD_OK) {
        V = b.model->hp.vocab_size;
        if (!(logits2 = malloc((size_t)(2 * V) * sizeof *logits2))) st = td_fail(TD_E_NOMEM, "out of memory");
    }
    if (st == TD_OK) td_bm_prefault(&b);
    if (st == TD_OK) st = td_ms_prompt(&b, prompt, false);
    if (st == TD_OK) st = td_ms_plain(&b, tokens, g, &r);
    if (st == TD_OK) st = td_ms_prompt(&b, prompt, true); /* again, with the MTP rows kept up */
    if (st == TD_OK) st = td_ms_mtp(&b, tokens, acceptance, g, logits2, &r);
    int rc = 0;
    if (st == TD_OK) td_ms_report(&b, acceptance, prompt, &r);
    else rc = td_cli_fail("bench mtp", st);
    td_prof_detach(&r.plain);
    td_prof_detach(&r.mtp);
    if (g) td_bm_close(&b);
    free(g);
    free(logits2);
    return rc;
}

bool td_bench_mtp_simulated(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--simulate-acceptance", 21) == 0 || strncmp(argv[i], "--synth", 7) == 0) return true;
    return false;
}

static void td_ms_help(void)
{
    printf("usage: tandem bench mtp --simulate-acceptance P (--model M | --synth CONFIG [--layers N] [--type T])\n"
           "                        [--tokens N] [--prompt N] [options]\n\n"
           "Decodes greedily one token per step, then runs MTP's verify schedule with the draft forced right at\n"
           "rate P (the main model's own next-but-one token, so the output stays exact; the MTP block's draft is\n"
           "computed and paid for, then replaced). Prints the cost of a 2-token verify against a 1-token step, the\n"
           "distinct experts per MoE layer of a verify pair, and the speedup: as run, implied by the costs at\n"
           "acceptance P, and projected with the %.1f distinct experts per adjacent pair of a published\n"
           "DeepSeek-R1 routing trace (random routing touches about 15.75). --synth models get their MTP block.\n"
           "Last line: JSON.\n\n"
           "  --simulate-acceptance P  the forced acceptance rate, 0..1\n"
           "  --tokens N               tokens decoded per run (default 64)\n"
           "  --prompt N               random prompt tokens before them (default 64)\n"
           "%s",
           TD_TRACE_PAIR_DISTINCT, td_bm_options_help);
}

int td_bench_mtp_sim_main(int argc, char **argv)
{
    td_bm_opts o;
    td_bm_opts_init(&o);
    o.synth.keep_mtp = true;
    double acceptance = -1;
    int64_t tokens = 64, prompt = 64;
    td_args a;
    td_args_init(&a, "bench mtp", argc, argv);
    while (td_args_next(&a)) {
        const char *v;
        int r = td_bm_parse(&a, &o);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_ms_help();
            return 0;
        } else if (td_args_is(&a, "--simulate-acceptance")) {
            if (!(v = td_args_value(&a)) || !td_parse_double(&a, v, 0, 1, &acceptance)) return 2;
        } else if (td_args_is(&a, "--tokens")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 2, 1 << 20, &tokens)) return 2;
        } else if (td_args_is(&a, "--prompt")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 1, 1 << 24, &prompt)) return 2;
        } else {
            return td_args_unknown(&a);
        }
    }
    if (!td_bm_check(&o, "bench mtp")) return 2;
    if (acceptance < 0)
        return td_cli_usage_error("bench mtp", "--synth needs --simulate-acceptance P: a random MTP head drafts "
                                  "nothing a model accepts");
    return td_bench_mtp_simulate(&o, acceptance, tokens, prompt);
}
