/* tandem synth: a GGUF with a real config's shapes and random, well-formed weights (td_synth.h), then a
 * check that runs it: over N random tokens, how many experts each MoE layer's router touches, how evenly,
 * and how large the hidden state grows layer by layer (it must stay finite). */
#include "td_alloc.h"
#include "td_cli.h"
#include "td_clock.h"
#include "td_commands.h"
#include "td_engine.h"
#include "td_synth.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void td_synth_help(void)
{
    printf("usage: tandem synth --config config.json --to out.gguf [--layers N] [--type T] [--seed S]\n"
           "                    [--split N] [--keep-mtp] [--tokenizer T] [--threads N] [--check-tokens N] [--json]\n\n"
           "Writes a DeepSeek-V3-family GGUF (deepseek2, MLA layout, llama.cpp names and keys) with the config's\n"
           "shapes and random weights drawn like a freshly initialized model (std = initializer_range), quantized on\n"
           "every core; the same seed gives the same bytes for any thread count. Then runs N random tokens through it\n"
           "and prints, per MoE layer, how many experts the router touched and how evenly (at least 95%% of them must\n"
           "be, as in a trained model), and the hidden state's size after every layer (it must stay finite).\n\n"
           "  --config C        config.json of any model tandem reads (DeepSeek-V3/R1, V2, Kimi-K2)\n"
           "  --to F            output .gguf (with --split N: the stem of N parts)\n"
           "  --layers N        keep the config's leading dense layers (at most N), then MoE layers (default: all)\n"
           "  --type T          q4_k_m (default) | q4_k | q5_k | q6_k | q8_0 | bf16 (convert's recipe)\n"
           "  --seed S          default 1\n"
           "  --keep-mtp        write the MTP block (blk.N.nextn.*)\n"
           "  --tokenizer T     tokenizer.json or a GGUF to take the tokenizer from (default: a generated\n"
           "                    byte-level BPE padded to vocab_size)\n"
           "  --init-std X      std of the weights (default: the config's initializer_range)\n"
           "  --threads N       quantizing and checking threads (default: all cores)\n"
           "  --check-tokens N  tokens of the routing and hidden-state check (default 1000; 0 skips it)\n"
           "  --dry-run         print the model and its size, write nothing (--to not needed)\n"
           "  --quiet           no progress line\n"
           "  --json            print only the JSON line\n");
}

typedef struct td_synth_opts {
    td_synth_params p;
    const char *to;
    int64_t check_tokens;
    bool json, quiet, dry_run;
} td_synth_opts;

static int td_synth_parse(int argc, char **argv, td_synth_opts *o)
{
    *o = (td_synth_opts){.p = {.type = TD_CONVERT_Q4_K_M, .seed = 1}, .check_tokens = 1000};
    td_args a;
    td_args_init(&a, "synth", argc, argv);
    while (td_args_next(&a)) {
        const char *v;
        int64_t x;
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_synth_help();
            return 0;
        } else if (td_args_is(&a, "--config")) {
            if (!(o->p.config = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--to")) {
            if (!(o->to = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--tokenizer")) {
            if (!(o->p.tokenizer = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--layers")) {
            if (!(v = td_args_value(&a)) || !td_parse_int(&a, v, 1, 4096, &o->p.layers)) return 2;
        } else if (td_args_is(&a, "--split")) {
            if (!(v = td_args_value(&a)) || !td_parse_int(&a, v, 1, 9999, &o->p.parts)) return 2;
        } else if (td_args_is(&a, "--threads")) {
            if (!(v = td_args_value(&a)) || !td_parse_int(&a, v, 0, 4096, &o->p.threads)) return 2;
        } else if (td_args_is(&a, "--seed")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 0, INT64_MAX, &x)) return 2;
            o->p.seed = (uint64_t)x;
        } else if (td_args_is(&a, "--init-std")) {
            if (!(v = td_args_value(&a)) || !td_parse_double(&a, v, 1e-6, 10, &o->p.init_std)) return 2;
        } else if (td_args_is(&a, "--check-tokens")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 0, 1 << 20, &o->check_tokens)) return 2;
        } else if (td_args_is(&a, "--type")) {
            if (!(v = td_args_value(&a))) return 2;
            if (!td_convert_mode_from_name(v, &o->p.type))
                return td_cli_usage_error("synth", "--type: '%s' is not one of q4_k_m, q4_k, q5_k, q6_k, q8_0, bf16", v);
        } else if (td_args_is(&a, "--keep-mtp")) {
            o->p.keep_mtp = true;
        } else if (td_args_is(&a, "--dry-run")) {
            o->dry_run = true;
        } else if (td_args_is(&a, "--quiet")) {
            o->quiet = true;
        } else if (td_args_is(&a, "--json")) {
            o->json = true;
        } else {
            return td_args_unknown(&a);
        }
    }
    if (!o->p.config) return td_cli_usage_error("synth", "--config is required");
    if (!o->to && !o->dry_run) return td_cli_usage_error("synth", "--to is required");
    o->p.progress = !o->quiet && !o->json && isatty(STDERR_FILENO);
    return -1;
}

/* ------------------------------------------------------------------ the check */

typedef struct td_synth_check {
    int64_t tokens;
    int n_layers, n_experts;
    int64_t *load;       /* [n_layers][E] tokens routed to each expert */
    double *sumsq;       /* [n_layers + 1] of the hidden after k layers */
    double *maxabs;      /* [n_layers + 1] */
    bool finite;
} td_synth_check;

static void td_check_free(td_synth_check *c)
{
    td_free(c->load);
    td_free(c->sumsq);
    td_free(c->maxabs);
}

static void td_check_chunk(td_synth_check *c, const td_hparams *hp, td_trace *tr, int64_t n)
{
    int64_t H = hp->hidden_size, k = hp->n_experts_per_tok;
    for (int l = 0; l <= hp->n_layers; l++)
        for (int64_t i = 0; i < n * H; i++) {
            double v = tr->hidden[l][i];
            c->finite &= isfinite(v) != 0;
            c->sumsq[l] += v * v;
            c->maxabs[l] = fmax(c->maxabs[l], fabs(v));
        }
    for (int l = 0; l < hp->n_layers; l++)
        if (tr->topk[l])
            for (int64_t i = 0; i < n * k; i++) c->load[(int64_t)l * hp->n_routed_experts + tr->topk[l][i]]++;
}

/* Runs `tokens` random token ids through the model in chunks, capturing every layer's hidden state and
 * every MoE layer's expert choices. */
static td_status td_check_run(const char *path, int threads, td_synth_check *c)
{
    td_model *m = NULL;
    td_engine *e = NULL;
    td_session *s = NULL;
    td_model_params mp = {.quiet = true};
    TD_TRY(td_model_open(path, &mp, &m));
    const td_hparams *hp = &m->hp;
    const int64_t chunk = 250, H = hp->hidden_size, k = hp->n_experts_per_tok;
    c->n_layers = hp->n_layers;
    c->n_experts = hp->n_routed_experts;
    c->finite = true;
    c->load = td_calloc((size_t)hp->n_layers * (size_t)(c->n_experts ? c->n_experts : 1), sizeof *c->load);
    c->sumsq = td_calloc((size_t)hp->n_layers + 1, sizeof *c->sumsq);
    c->maxabs = td_calloc((size_t)hp->n_layers + 1, sizeof *c->maxabs);
    float **hidden = td_calloc((size_t)hp->n_layers + 1, sizeof *hidden);
    int32_t **topk = td_calloc((size_t)hp->n_layers, sizeof *topk);
    int32_t *ids = td_malloc((size_t)chunk * sizeof *ids);
    td_status st = c->load && c->sumsq && c->maxabs && hidden && topk && ids ? TD_OK : td_fail(TD_E_NOMEM, "out of memory");
    for (int l = 0; st == TD_OK && l <= hp->n_layers; l++) {
        if (!(hidden[l] = td_malloc((size_t)(chunk * H) * sizeof(float)))) st = td_fail(TD_E_NOMEM, "out of memory");
        if (st == TD_OK && l < hp->n_layers && td_hparams_layer_is_moe(hp, l) &&
            !(topk[l] = td_malloc((size_t)(chunk * k) * sizeof(int32_t))))
            st = td_fail(TD_E_NOMEM, "out of memory");
    }
    td_engine_params ep = {.n_threads = threads, .max_batch = chunk};
    if (st == TD_OK) st = td_engine_open(m, &ep, &e);
    td_session_params sp = {.n_ctx = c->tokens};
    if (st == TD_OK) st = td_session_create(e, &sp, &s);
    td_trace tr = {.hidden = hidden, .topk = topk};
    if (st == TD_OK) td_session_set_trace(s, &tr);
    uint64_t rng = 0x5eed;
    for (int64_t done = 0; st == TD_OK && done < c->tokens; done += chunk) {
        int64_t n = c->tokens - done < chunk ? c->tokens - done : chunk;
        for (int64_t i = 0; i < n; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((rng >> 33) % (uint64_t)hp->vocab_size);
        }
        st = td_session_forward(s, ids, n, NULL, NULL);
        if (st == TD_OK) td_check_chunk(c, hp, &tr, n);
    }
    td_session_free(s);
    td_engine_close(e);
    for (int l = 0; hidden && l <= hp->n_layers; l++) td_free(hidden[l]);
    for (int l = 0; topk && l < hp->n_layers; l++) td_free(topk[l]);
    td_free(hidden);
    td_free(topk);
    td_free(ids);
    td_model_close(m);
    return st;
}

/* Per MoE layer: experts touched, and the busiest expert's load over the mean. Returns the smallest
 * touched fraction (1 without MoE layers). */
static double td_check_report(const td_synth_check *c, const td_hparams *hp, bool print, cJSON *j)
{
    double worst = 1;
    cJSON *layers = cJSON_AddArrayToObject(j, "balance");
    if (print && c->n_experts)
        printf("routing     %lld random tokens, top-%d of %d experts: per MoE layer, experts touched and the\n"
               "            busiest expert's load / the mean load\n",
               (long long)c->tokens, hp->n_experts_per_tok, c->n_experts);
    for (int l = 0; l < c->n_layers; l++) {
        if (!td_hparams_layer_is_moe(hp, l)) continue;
        const int64_t *load = c->load + (int64_t)l * c->n_experts;
        int touched = 0;
        int64_t max = 0;
        for (int x = 0; x < c->n_experts; x++) {
            touched += load[x] > 0;
            max = load[x] > max ? load[x] : max;
        }
        double mean = (double)(c->tokens * hp->n_experts_per_tok) / c->n_experts, frac = (double)touched / c->n_experts;
        worst = fmin(worst, frac);
        if (print)
            printf("  layer %-3d %d/%d touched (%.1f%%), busiest %.2fx the mean\n", l, touched, c->n_experts, 100 * frac,
                   (double)max / mean);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", l);
        cJSON_AddNumberToObject(o, "touched", touched);
        cJSON_AddNumberToObject(o, "experts", c->n_experts);
        cJSON_AddNumberToObject(o, "max_over_mean", (double)max / mean);
        cJSON_AddItemToArray(layers, o);
    }
    cJSON *rms = cJSON_AddArrayToObject(j, "hidden_rms");
    if (print) printf("hidden      rms (max |x|) after each layer, from the embedding:");
    for (int l = 0; l <= c->n_layers; l++) {
        double r = sqrt(c->sumsq[l] / (double)(c->tokens * hp->hidden_size));
        if (print) printf("%s%.3g (%.3g)", l % 6 ? ", " : "\n           ", r, c->maxabs[l]);
        cJSON_AddItemToArray(rms, cJSON_CreateNumber(r));
    }
    if (print) printf("\n");
    cJSON_AddBoolToObject(j, "finite", c->finite);
    cJSON_AddNumberToObject(j, "min_touched_fraction", worst);
    return worst;
}

int td_cmd_synth(int argc, char **argv)
{
    td_synth_opts o;
    int rc = td_synth_parse(argc, argv, &o);
    if (rc >= 0) return rc;
    td_hparams hp;
    double std;
    td_status st = td_synth_hparams(&o.p, &hp, &std);
    uint64_t bytes = 0;
    if (st == TD_OK) st = td_synth_size(&o.p, &bytes);
    if (st != TD_OK) return td_cli_fail("synth", st);
    char b1[32], desc[512];
    td_hparams_describe(&hp, desc, sizeof desc);
    if (!o.json)
        printf("model       %s\nweights     %s of %s, std %g, seed %llu\n", desc, td_cli_fmt_bytes(bytes, b1, sizeof b1),
               td_convert_mode_name(o.p.type), std, (unsigned long long)o.p.seed);
    if (o.dry_run) {
        printf("{\"bytes\":%llu,\"layers\":%d,\"dense_layers\":%d,\"std\":%g}\n", (unsigned long long)bytes, hp.n_layers,
               hp.first_k_dense_replace, std);
        return 0;
    }
    fflush(stdout);
    double t0 = td_now();
    if ((st = td_synth_write(&o.p, o.to)) != TD_OK) return td_cli_fail("synth", st);
    double secs = td_now() - t0;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "file", o.to);
    cJSON_AddNumberToObject(j, "bytes", (double)bytes);
    cJSON_AddNumberToObject(j, "seconds", secs);
    cJSON_AddNumberToObject(j, "mb_s", (double)bytes / secs / 1e6);
    if (!o.json) printf("written     %s in %.1f s (%.0f MB/s)\n", o.to, secs, (double)bytes / secs / 1e6);
    if (o.check_tokens > 0 && o.p.parts <= 1) {
        td_synth_check c = {.tokens = o.check_tokens};
        fflush(stdout);
        st = td_check_run(o.to, o.p.threads, &c);
        if (st == TD_OK) {
            double worst = td_check_report(&c, &hp, !o.json, j);
            if (!c.finite) st = td_fail(TD_E_FORMAT, "the hidden state is not finite: the weights are broken");
            else if (worst < 0.95)
                st = td_fail(TD_E_FORMAT, "a MoE layer's router touched only %.1f%% of the experts over %lld tokens "
                             "(at least 95%% expected)", 100 * worst, (long long)c.tokens);
        }
        td_check_free(&c);
    }
    char *line = cJSON_PrintUnformatted(j);
    if (line) puts(line);
    free(line);
    cJSON_Delete(j);
    return st == TD_OK ? 0 : td_cli_fail("synth", st);
}
