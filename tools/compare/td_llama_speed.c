/* td_llama_run speed: one engine's prompt and decode speed on a GGUF, for tools/compare/side-by-side.sh,
 * which runs it for both engines in turn. One engine per process, so that neither's threads, caches or
 * allocations sit beside the other's while it is timed.
 *
 * Both engines get the same work: the same prompt (token ids drawn from a fixed seed over the vocabulary,
 * so that any file gives one, tokenizer or not), processed in one call, then n tokens decoded one at a
 * time, each the argmax of the previous logits. A warm-up of a few tokens first faults the weights in and
 * starts the threads; it is not timed. */
#include "td_llama_run.h"

#include "td_clock.h"
#include "td_engine.h"
#include "td_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The prompt: ids in [n_special, n_vocab) from a fixed LCG, the same for both engines and every run. */
static void td_speed_prompt(int32_t *ids, int n, int32_t n_vocab)
{
    uint64_t rng = 0x5eed;
    int32_t lo = n_vocab > 1024 ? 256 : 0; /* away from the first ids, where tokenizers keep special tokens */
    for (int i = 0; i < n; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = lo + (int32_t)((rng >> 33) % (uint64_t)(n_vocab - lo));
    }
}

static int32_t td_argmax(const float *l, int64_t n)
{
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (l[i] > l[best]) best = (int32_t)i;
    return best;
}

typedef struct td_speed {
    double prompt_s, decode_s;
    int32_t first, last; /* the first and last decoded tokens: the engines' streams, for a glance */
} td_speed;

/* ------------------------------------------------------------------ llama.cpp */

static bool td_speed_llama_run(struct llama_context *lc, const struct llama_vocab *v, int32_t *ids, int n_prompt,
                               int n_decode, td_speed *r)
{
    llama_memory_clear(llama_get_memory(lc), true);
    double t0 = td_now();
    if (llama_decode(lc, llama_batch_get_one(ids, n_prompt)) != 0) return false;
    llama_synchronize(lc);
    double t1 = td_now();
    int32_t n_vocab = llama_vocab_n_tokens(v);
    llama_token tok = td_argmax(llama_get_logits_ith(lc, -1), n_vocab);
    r->first = tok;
    for (int i = 1; i < n_decode; i++) {
        if (llama_decode(lc, llama_batch_get_one(&tok, 1)) != 0) return false;
        tok = td_argmax(llama_get_logits_ith(lc, -1), n_vocab);
    }
    llama_synchronize(lc);
    r->prompt_s = t1 - t0;
    r->decode_s = td_now() - t1;
    r->last = tok;
    return true;
}

static int td_speed_llama(const td_lr_opts *o, td_speed *r)
{
    struct llama_model *m = td_lr_load(o->model, false, false);
    if (!m) return 1;
    const struct llama_vocab *v = llama_model_get_vocab(m);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(o->prompt_tokens + o->n_predict + 8);
    cp.n_batch = (uint32_t)o->prompt_tokens;           /* the prompt in one llama_decode */
    cp.n_ubatch = cp.n_batch < 512 ? cp.n_batch : 512; /* llama.cpp's default micro-batch */
    cp.n_threads = cp.n_threads_batch = o->threads;
    struct llama_context *lc = llama_init_from_model(m, cp);
    int32_t *ids = malloc((size_t)o->prompt_tokens * sizeof *ids);
    int rc = 1;
    if (!lc || !ids) {
        fprintf(stderr, "td_llama_run: llama.cpp made no context for %s\n", o->model);
        goto close_model;
    }
    td_speed_prompt(ids, o->prompt_tokens, llama_vocab_n_tokens(v));
    td_speed warm;
    int n_warm = o->prompt_tokens < 8 ? o->prompt_tokens : 8;
    if (!td_speed_llama_run(lc, v, ids, n_warm, 2, &warm) ||
        !td_speed_llama_run(lc, v, ids, o->prompt_tokens, o->n_predict, r)) {
        fprintf(stderr, "td_llama_run: llama_decode failed on %s\n", o->model);
        goto close_model;
    }
    rc = 0;
close_model:
    free(ids);
    if (lc) llama_free(lc);
    llama_model_free(m);
    return rc;
}

/* ------------------------------------------------------------------ tandem */

static td_status td_speed_tandem_run(td_session *s, int32_t *ids, int n_prompt, int n_decode, int64_t n_vocab,
                                     td_speed *r)
{
    TD_TRY(td_session_rewind(s, 0));
    double t0 = td_now();
    TD_TRY(td_session_forward(s, ids, n_prompt, NULL, NULL));
    double t1 = td_now();
    int32_t tok = td_argmax(td_session_logits(s), n_vocab);
    r->first = tok;
    for (int i = 1; i < n_decode; i++) {
        TD_TRY(td_session_forward(s, &tok, 1, NULL, NULL));
        tok = td_argmax(td_session_logits(s), n_vocab);
    }
    r->prompt_s = t1 - t0;
    r->decode_s = td_now() - t1;
    r->last = tok;
    return TD_OK;
}

static int td_speed_tandem(const td_lr_opts *o, td_speed *r)
{
    td_model *m = NULL;
    td_engine *e = NULL;
    td_session *s = NULL;
    td_model_params mp = {.quiet = true};
    td_engine_params ep = {.kernels = o->kernels, .n_threads = o->threads};
    td_session_params sp = {.n_ctx = o->prompt_tokens + o->n_predict + 8};
    int32_t *ids = malloc((size_t)o->prompt_tokens * sizeof *ids);
    td_status st = ids ? td_model_open(o->model, &mp, &m) : td_fail(TD_E_NOMEM, "out of memory");
    if (st == TD_OK) st = td_engine_open(m, &ep, &e);
    if (st == TD_OK) st = td_session_create(e, &sp, &s);
    if (st == TD_OK) {
        td_speed warm;
        int n_warm = o->prompt_tokens < 8 ? o->prompt_tokens : 8;
        td_speed_prompt(ids, o->prompt_tokens, (int32_t)m->hp.vocab_size);
        st = td_speed_tandem_run(s, ids, n_warm, 2, m->hp.vocab_size, &warm);
        if (st == TD_OK) st = td_speed_tandem_run(s, ids, o->prompt_tokens, o->n_predict, m->hp.vocab_size, r);
    }
    if (st != TD_OK) fprintf(stderr, "td_llama_run: tandem: %s\n", td_errmsg());
    td_session_free(s);
    td_engine_close(e);
    td_model_close(m);
    free(ids);
    return st == TD_OK ? 0 : 1;
}

int td_lr_cmd_speed(const td_lr_opts *o)
{
    if (!o->engine || (strcmp(o->engine, "llama") != 0 && strcmp(o->engine, "tandem") != 0)) {
        fprintf(stderr, "td_llama_run speed: --engine llama or --engine tandem\n");
        return 2;
    }
    bool llama = strcmp(o->engine, "llama") == 0;
    td_speed r = {0};
    int rc = llama ? td_speed_llama(o, &r) : td_speed_tandem(o, &r);
    if (rc != 0) return rc;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "engine", o->engine);
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddNumberToObject(j, "threads", o->threads);
    cJSON_AddNumberToObject(j, "prompt_tokens", o->prompt_tokens);
    cJSON_AddNumberToObject(j, "decode_tokens", o->n_predict);
    cJSON_AddNumberToObject(j, "prompt_tok_s", o->prompt_tokens / r.prompt_s);
    /* the first decoded token comes from the prompt's logits; the n - 1 after it are the decode steps */
    cJSON_AddNumberToObject(j, "decode_tok_s", o->n_predict > 1 ? (o->n_predict - 1) / r.decode_s : 0);
    cJSON_AddNumberToObject(j, "first_token", r.first);
    cJSON_AddNumberToObject(j, "last_token", r.last);
    td_lr_print_json(j);
    return 0;
}
