/* td_llama_run reference: both engines on a reference file's prompt (input_ids, one prefill), each
 * position's logits against the reference's (float64 outputs of an independent implementation; see the
 * fixtures' README). It tells llama.cpp's own rounding from a file that it reads differently: on files
 * that tandem did not write (the GGUF fixtures) it shows how far llama.cpp's logits sit from the truth. */
#include "td_llama_run.h"

#include "td_alloc.h"
#include "td_engine.h"
#include "td_eval.h"
#include "td_model.h"
#include "td_safetensors.h"
#include "td_tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct td_ref_score {
    double kl_sum, kl_max, rel_max;
    int top1;
} td_ref_score;

static int32_t td_argmax(const float *x, int64_t n)
{
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = (int32_t)i;
    return best;
}

static void td_score(td_ref_score *s, const float *ref, const float *got, int64_t n)
{
    double kl = td_kl_logits(ref, got, n), rel = td_max_rel_err(got, ref, n);
    s->kl_sum += kl;
    s->kl_max = fmax(s->kl_max, kl);
    s->rel_max = fmax(s->rel_max, rel);
    s->top1 += td_argmax(ref, n) == td_argmax(got, n);
}

static void td_add_score(cJSON *j, const char *who, const td_ref_score *s, int64_t T)
{
    cJSON *o = cJSON_AddObjectToObject(j, who);
    cJSON_AddNumberToObject(o, "kl_mean", s->kl_sum / (double)T);
    cJSON_AddNumberToObject(o, "kl_max", s->kl_max);
    cJSON_AddNumberToObject(o, "max_rel_err", s->rel_max);
    cJSON_AddNumberToObject(o, "top1_agree", (double)s->top1 / (double)T);
}

/* llama.cpp's logits at every position of ids, into out [T][V]. */
static bool td_llama_all_logits(const td_lr_opts *o, const int32_t *ids, int T, int64_t V, float *out)
{
    struct llama_model *m = td_lr_load(o->model, false, true);
    if (!m) return false;
    bool ok = false;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = cp.n_batch = cp.n_ubatch = (uint32_t)(T + 8);
    cp.n_threads = cp.n_threads_batch = o->threads;
    struct llama_context *ctx = llama_init_from_model(m, cp);
    struct llama_batch b = llama_batch_init(T, 0, 1);
    if (!ctx || llama_vocab_n_tokens(llama_model_get_vocab(m)) != V) {
        fprintf(stderr, "td_llama_run: llama.cpp made no context, or its vocabulary is not %lld\n", (long long)V);
        goto done;
    }
    for (int i = 0; i < T; i++) {
        b.token[i] = ids[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = 1;
    }
    b.n_tokens = T;
    if (llama_decode(ctx, b) != 0) {
        fprintf(stderr, "td_llama_run: llama_decode failed on the reference prompt\n");
        goto done;
    }
    for (int i = 0; i < T; i++) memcpy(out + (size_t)i * V, llama_get_logits_ith(ctx, i), (size_t)V * sizeof *out);
    ok = true;
done:
    llama_batch_free(b);
    if (ctx) llama_free(ctx);
    llama_model_free(m);
    return ok;
}

/* tandem's logits at every position (one prefill, as eval runs it). */
static bool td_tandem_all_logits(const td_lr_opts *o, const int32_t *ids, int T, float *out)
{
    td_model *m = NULL;
    td_engine *e = NULL;
    td_session *s = NULL;
    td_model_params mp = {.quiet = true};
    td_engine_params ep = {.kernels = o->kernels, .n_threads = o->threads};
    td_session_params sp = {.n_ctx = T + 8};
    td_status st = td_model_open(o->model, &mp, &m);
    if (st == TD_OK) st = td_engine_open(m, &ep, &e);
    if (st == TD_OK) st = td_session_create(e, &sp, &s);
    if (st == TD_OK) st = td_session_forward(s, ids, T, out, NULL);
    if (st != TD_OK) fprintf(stderr, "td_llama_run: tandem: %s\n", td_errmsg());
    td_session_free(s);
    td_engine_close(e);
    td_model_close(m);
    return st == TD_OK;
}

int td_lr_cmd_reference(const td_lr_opts *o)
{
    if (!o->reference) {
        fprintf(stderr, "td_llama_run reference: --reference is required\n");
        return 2;
    }
    td_tensor_dir *dir = NULL;
    float *ours = NULL, *theirs = NULL;
    int rc = 1;
    if (td_tensor_dir_create(&dir) != TD_OK || td_st_load(o->reference, dir, NULL) != TD_OK) {
        fprintf(stderr, "td_llama_run: %s\n", td_errmsg());
        goto done;
    }
    const td_tensor *ids = td_tensor_dir_find(dir, "input_ids"), *logits = td_tensor_dir_find(dir, "logits");
    if (!ids || !logits || ids->type != TD_TYPE_I32 || logits->type != TD_TYPE_F32 || logits->ndim != 2 ||
        logits->shape[0] != ids->shape[0]) {
        fprintf(stderr, "td_llama_run: %s: needs input_ids [T] I32 and logits [T, V] F32\n", o->reference);
        goto done;
    }
    int T = (int)ids->shape[0];
    int64_t V = logits->shape[1];
    ours = malloc((size_t)T * (size_t)V * sizeof *ours);
    theirs = malloc((size_t)T * (size_t)V * sizeof *theirs);
    if (!ours || !theirs || !td_llama_all_logits(o, (const int32_t *)ids->data, T, V, theirs) ||
        !td_tandem_all_logits(o, (const int32_t *)ids->data, T, ours))
        goto done;
    td_ref_score sl = {0}, st = {0}, sx = {0};
    const float *ref = (const float *)logits->data;
    for (int i = 0; i < T; i++) {
        td_score(&sl, ref + (size_t)i * V, theirs + (size_t)i * V, V);
        td_score(&st, ref + (size_t)i * V, ours + (size_t)i * V, V);
        td_score(&sx, theirs + (size_t)i * V, ours + (size_t)i * V, V); /* tandem against llama.cpp */
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddNumberToObject(j, "positions", T);
    td_add_score(j, "llama", &sl, T);
    td_add_score(j, "tandem", &st, T);
    td_add_score(j, "tandem_vs_llama", &sx, T);
    td_lr_print_json(j);
    rc = 0;
done:
    free(ours);
    free(theirs);
    td_tensor_dir_free(dir);
    return rc;
}
