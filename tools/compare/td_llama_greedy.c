/* td_llama_run greedy: llama.cpp and tandem decode the same prompt greedily, in step. At every step both
 * see the same tokens; their logits are compared (largest difference, KL divergence) and their choices
 * must agree. A step where llama.cpp's top-2 logit gap is under the margin is a near-tie: the engines'
 * rounding may pick either token there, so a disagreement at one ends the comparison instead of failing
 * it. Any other disagreement fails. */
#include "td_llama_run.h"

#include "td_engine.h"
#include "td_eval.h"
#include "td_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct td_step_cmp {
    int32_t a, b;     /* llama.cpp's and tandem's argmax */
    double gap;       /* llama.cpp's top-1 minus top-2 logit */
    double max_diff;  /* max |logit difference| */
    double kl;        /* KL(llama.cpp || tandem) of the softmaxes */
} td_step_cmp;

static td_step_cmp td_compare_logits(const float *l, const float *t, int64_t n)
{
    td_step_cmp c = {0, 0, 0, 0, 0};
    double l1 = -INFINITY, l2 = -INFINITY, t1 = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (l[i] > l1) {
            l2 = l1;
            l1 = l[i];
            c.a = (int32_t)i;
        } else if (l[i] > l2) {
            l2 = l[i];
        }
        if (t[i] > t1) {
            t1 = t[i];
            c.b = (int32_t)i;
        }
        double d = fabs((double)l[i] - t[i]);
        if (d > c.max_diff) c.max_diff = d;
    }
    c.gap = l1 - l2;
    c.kl = td_kl_logits(l, t, n);
    return c;
}

typedef struct td_greedy {
    struct llama_model *lm;
    struct llama_context *lc;
    td_model *tm;
    td_engine *te;
    td_session *ts;
    llama_token *ids; /* the prompt, then the agreed tokens */
    int n_ids, n_prompt, cap;
} td_greedy;

/* The prompts: --prompt, or every line of --prompts. */
static char **td_greedy_prompts(const td_lr_opts *o, int *n)
{
    *n = 0;
    char **list = NULL;
    if (o->prompt) {
        list = malloc(sizeof *list);
        if (list && (list[0] = strdup(o->prompt))) *n = 1;
        return list;
    }
    FILE *f = fopen(o->prompts, "r");
    if (!f) {
        fprintf(stderr, "td_llama_run: cannot open %s\n", o->prompts);
        return NULL;
    }
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!line[0]) continue;
        char **grown = realloc(list, (size_t)(*n + 1) * sizeof *list);
        if (!grown || !(grown[*n] = strdup(line))) {
            list = grown;
            break;
        }
        list = grown;
        (*n)++;
    }
    fclose(f);
    return list;
}

static bool td_greedy_open(td_greedy *g, const td_lr_opts *o, int max_prompt_bytes)
{
    if (!(g->lm = td_lr_load(o->model, false, true))) return false;
    const struct llama_vocab *v = llama_model_get_vocab(g->lm);
    g->cap = max_prompt_bytes + 8 + o->n_predict; /* a token is at least one byte, plus BOS */
    g->ids = malloc((size_t)g->cap * sizeof *g->ids);
    if (!g->ids) return false;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = cp.n_batch = cp.n_ubatch = (uint32_t)g->cap;
    cp.n_threads = cp.n_threads_batch = o->threads;
    if (!(g->lc = llama_init_from_model(g->lm, cp))) {
        fprintf(stderr, "td_llama_run: llama.cpp made no context for %s\n", o->model);
        return false;
    }
    td_model_params mp = {.quiet = true};
    td_engine_params ep = {.kernels = o->kernels, .n_threads = o->threads};
    td_session_params sp = {.n_ctx = g->cap};
    td_status st = td_model_open(o->model, &mp, &g->tm);
    if (st == TD_OK) st = td_engine_open(g->tm, &ep, &g->te);
    if (st == TD_OK) st = td_session_create(g->te, &sp, &g->ts);
    if (st != TD_OK) {
        fprintf(stderr, "td_llama_run: tandem: %s\n", td_errmsg());
        return false;
    }
    if (g->tm->hp.vocab_size != llama_vocab_n_tokens(v)) {
        fprintf(stderr, "td_llama_run: vocabularies differ: %lld logits in tandem, %d in llama.cpp\n",
                (long long)g->tm->hp.vocab_size, llama_vocab_n_tokens(v));
        return false;
    }
    return true;
}

static void td_greedy_close(td_greedy *g)
{
    td_session_free(g->ts);
    td_engine_close(g->te);
    td_model_close(g->tm);
    if (g->lc) llama_free(g->lc);
    if (g->lm) llama_model_free(g->lm);
    free(g->ids);
}

/* Runs tokens [from, n_ids) through both engines. */
static bool td_greedy_feed(td_greedy *g, int from)
{
    if (llama_decode(g->lc, llama_batch_get_one(g->ids + from, g->n_ids - from)) != 0) {
        fprintf(stderr, "td_llama_run: llama_decode failed at position %d\n", from);
        return false;
    }
    if (td_session_forward(g->ts, g->ids + from, g->n_ids - from, NULL, NULL) != TD_OK) {
        fprintf(stderr, "td_llama_run: tandem: %s\n", td_errmsg());
        return false;
    }
    return true;
}

typedef struct td_greedy_sum {
    int steps, agreed, near_ties, near_tie_stops, disagreements;
    double min_gap, max_diff, kl_sum, kl_max, stop_gap_max; /* stop_gap_max: largest gap where they parted */
} td_greedy_sum;

/* One prompt from a fresh state: both engines decode in step until n tokens or a disagreement. */
static bool td_greedy_prompt(td_greedy *g, const td_lr_opts *o, const char *prompt, td_greedy_sum *sum)
{
    llama_memory_clear(llama_get_memory(g->lc), true);
    if (td_session_rewind(g->ts, 0) != TD_OK) return false;
    const struct llama_vocab *v = llama_model_get_vocab(g->lm);
    g->n_prompt = g->n_ids = llama_tokenize(v, prompt, (int32_t)strlen(prompt), g->ids, g->cap - o->n_predict, true, true);
    if (g->n_ids <= 0) {
        fprintf(stderr, "td_llama_run: llama.cpp could not tokenize \"%.60s\"\n", prompt);
        return false;
    }
    if (!td_greedy_feed(g, 0)) return false;
    int64_t n_vocab = g->tm->hp.vocab_size;
    for (int step = 0; step < o->n_predict; step++) {
        td_step_cmp c = td_compare_logits(llama_get_logits_ith(g->lc, -1), td_session_logits(g->ts), n_vocab);
        if (o->verbose)
            fprintf(stderr, "step %d: token %d (tandem %d), gap %.4f, max |logit diff| %.4f, KL %.3g\n", step, c.a,
                    c.b, c.gap, c.max_diff, c.kl);
        sum->steps++;
        sum->near_ties += c.gap < o->margin;
        sum->min_gap = fmin(sum->min_gap, c.gap);
        sum->max_diff = fmax(sum->max_diff, c.max_diff);
        sum->kl_sum += c.kl;
        sum->kl_max = fmax(sum->kl_max, c.kl);
        if (c.a != c.b) {
            sum->stop_gap_max = fmax(sum->stop_gap_max, c.gap);
            if (c.gap < o->margin) {
                sum->near_tie_stops++;
            } else {
                sum->disagreements++;
                fprintf(stderr, "\"%.60s\" step %d: llama.cpp picks %d, tandem %d, where llama.cpp's top-2 gap is "
                                "%.4f (margin %g)\n",
                        prompt, step, c.a, c.b, c.gap, o->margin);
            }
            return true;
        }
        sum->agreed++;
        g->ids[g->n_ids++] = c.a;
        if (step + 1 < o->n_predict && !td_greedy_feed(g, g->n_ids - 1)) return false;
    }
    return true;
}

int td_lr_cmd_greedy(const td_lr_opts *o)
{
    if (!o->prompt == !o->prompts) {
        fprintf(stderr, "td_llama_run greedy: give --prompt or --prompts\n");
        return 2;
    }
    int n_prompts = 0, longest = 0, rc = 1;
    char **prompts = td_greedy_prompts(o, &n_prompts);
    for (int i = 0; i < n_prompts; i++)
        if ((int)strlen(prompts[i]) > longest) longest = (int)strlen(prompts[i]);
    td_greedy g = {0};
    td_greedy_sum sum = {.min_gap = INFINITY};
    if (n_prompts == 0 || !td_greedy_open(&g, o, longest)) goto done;
    for (int i = 0; i < n_prompts; i++)
        if (!td_greedy_prompt(&g, o, prompts[i], &sum)) goto done;
    rc = sum.disagreements ? 1 : 0;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddNumberToObject(j, "prompts", n_prompts);
    cJSON_AddNumberToObject(j, "steps", sum.steps);
    cJSON_AddNumberToObject(j, "agreed", sum.agreed);
    cJSON_AddNumberToObject(j, "disagreements", sum.disagreements);
    cJSON_AddNumberToObject(j, "near_tie_stops", sum.near_tie_stops);
    cJSON_AddNumberToObject(j, "stop_gap_max", sum.stop_gap_max);
    cJSON_AddNumberToObject(j, "margin", o->margin);
    cJSON_AddNumberToObject(j, "near_ties", sum.near_ties);
    cJSON_AddNumberToObject(j, "min_gap", sum.min_gap);
    cJSON_AddNumberToObject(j, "max_logit_diff", sum.max_diff);
    cJSON_AddNumberToObject(j, "kl_mean", sum.steps ? sum.kl_sum / sum.steps : 0);
    cJSON_AddNumberToObject(j, "kl_max", sum.kl_max);
    if (n_prompts == 1) {
        cJSON *toks = cJSON_AddArrayToObject(j, "tokens");
        for (int i = g.n_prompt; i < g.n_ids; i++) cJSON_AddItemToArray(toks, cJSON_CreateNumber(g.ids[i]));
    }
    td_lr_print_json(j);
done:
    td_greedy_close(&g);
    for (int i = 0; i < n_prompts; i++) free(prompts[i]);
    free(prompts);
    return rc;
}
