/* The reference forward pass layer by layer against the fixtures' float64 references (hidden.K after K
 * layers, topk.L of each MoE layer, final_hidden), the two attention forms against each other, and
 * prefill-then-decode against one prefill of the whole sequence. */
#include "td_engine.h"
#include "td_eval.h"
#include "td_safetensors.h"
#include "td_test.h"

#include <stdlib.h>
#include <string.h>

typedef struct fixture {
    td_model *m;
    td_engine *e;
    td_tensor_dir *ref;
    int32_t *ids;
    int64_t T;
} fixture;

static bool open_fixture(const char *name, fixture *f)
{
    memset(f, 0, sizeof *f);
    char dir[4096], ref[4200];
    snprintf(dir, sizeof dir, "%s", td_test_fixture(name));
    snprintf(ref, sizeof ref, "%s/reference.safetensors", dir);
    td_engine_params ep = {.kernels = TD_KERNELS_REF};
    if (!TD_CHECKF(td_model_open(dir, NULL, &f->m) == TD_OK, "%s: %s", name, td_errmsg())) return false;
    if (!TD_CHECK(td_engine_open(f->m, &ep, &f->e) == TD_OK)) return false;
    TD_CHECK(td_tensor_dir_create(&f->ref) == TD_OK);
    if (!TD_CHECKF(td_st_load(ref, f->ref, NULL) == TD_OK, "%s", td_errmsg())) return false;
    const td_tensor *ids = td_tensor_dir_find(f->ref, "input_ids");
    f->T = ids->shape[0];
    f->ids = malloc((size_t)f->T * sizeof *f->ids);
    memcpy(f->ids, ids->data, (size_t)f->T * sizeof *f->ids);
    return true;
}

static void close_fixture(fixture *f)
{
    free(f->ids);
    td_tensor_dir_free(f->ref);
    td_engine_close(f->e);
    td_model_close(f->m);
}

static float *ref_floats(const fixture *f, const char *name)
{
    const td_tensor *t = td_tensor_dir_find(f->ref, name);
    if (!t) return NULL;
    float *p = malloc((size_t)t->nbytes);
    memcpy(p, t->data, (size_t)t->nbytes);
    return p;
}

/* hidden.K, topk.L and final_hidden from one traced prefill, in one attention form */
static void test_layers(const char *name, td_attn_path path)
{
    fixture f;
    if (!open_fixture(name, &f)) return;
    const td_hparams *hp = &f.m->hp;
    int64_t T = f.T, H = hp->hidden_size;
    int L = hp->n_layers, k = hp->n_experts_per_tok;
    float **hidden = calloc((size_t)L + 1, sizeof *hidden);
    int32_t **topk = calloc((size_t)L, sizeof *topk);
    for (int l = 0; l <= L; l++) hidden[l] = malloc((size_t)(T * H) * sizeof(float));
    for (int l = 0; l < L; l++) topk[l] = malloc((size_t)(T * k) * sizeof(int32_t));
    td_trace tr = {hidden, topk};
    td_session *s;
    td_session_params sp = {.n_ctx = T + 8, .attn = path};
    TD_CHECK(td_session_create(f.e, &sp, &s) == TD_OK);
    /* the accessors that generation, MTP and eval use instead of the session's internals */
    TD_CHECK(td_session_engine(s) == f.e && td_session_model(s) == f.m && td_session_attn_path(s) == path);
    td_session_set_trace(s, &tr);
    float *final = malloc((size_t)(T * H) * sizeof(float));
    TD_CHECKF(td_session_forward(s, f.ids, T, NULL, final) == TD_OK, "%s", td_errmsg());
    for (int l = 0; l <= L; l++) {
        char n[32];
        snprintf(n, sizeof n, "hidden.%d", l);
        float *ref = ref_floats(&f, n);
        double err = td_max_rel_err(hidden[l], ref, T * H);
        TD_CHECKF(err <= 1e-5, "%s path %d: %s max rel err %.3g", name, path, n, err);
        free(ref);
        if (l < L && f.m->layers[l].is_moe) {
            snprintf(n, sizeof n, "topk.%d", l);
            const td_tensor *t = td_tensor_dir_find(f.ref, n);
            TD_CHECKF(t && memcmp(t->data, topk[l], (size_t)(T * k) * sizeof(int32_t)) == 0,
                      "%s path %d: %s differs from the reference", name, path, n);
        }
    }
    float *ref = ref_floats(&f, "final_hidden");
    TD_CHECKF(td_max_rel_err(final, ref, T * H) <= 1e-5, "%s: final_hidden", name);
    free(ref);
    free(final);
    for (int l = 0; l <= L; l++) free(hidden[l]);
    for (int l = 0; l < L; l++) free(topk[l]);
    free(hidden);
    free(topk);
    td_session_free(s);
    close_fixture(&f);
}

/* Prefill of the first half then token-by-token decode gives the logits of one whole prefill; and the
 * decompressed and absorbed attention forms agree. Also: rewinding and recomputing gives the same. */
static void test_decode_consistency(const char *name)
{
    fixture f;
    if (!open_fixture(name, &f)) return;
    int64_t T = f.T, V = f.m->hp.vocab_size, half = T / 2;
    float *whole = malloc((size_t)(T * V) * sizeof(float));
    float *whole_abs = malloc((size_t)(T * V) * sizeof(float));
    float *stepped = malloc((size_t)(T * V) * sizeof(float));
    td_session *s;
    td_session_params sp = {.n_ctx = T, .attn = TD_ATTN_DECOMPRESSED};
    TD_CHECK(td_session_create(f.e, &sp, &s) == TD_OK);
    TD_CHECK(td_session_forward(s, f.ids, T, whole, NULL) == TD_OK);
    TD_CHECK(td_session_rewind(s, 0) == TD_OK);
    td_session_set_attn_path(s, TD_ATTN_ABSORBED);
    TD_CHECK(td_session_forward(s, f.ids, T, whole_abs, NULL) == TD_OK);
    double err = td_max_rel_err(whole_abs, whole, T * V);
    TD_CHECKF(err <= 1e-5, "%s: absorbed vs decompressed attention differ by %.3g", name, err);

    TD_CHECK(td_session_rewind(s, 0) == TD_OK);
    td_session_set_attn_path(s, TD_ATTN_DECOMPRESSED);
    TD_CHECK(td_session_forward(s, f.ids, half, stepped, NULL) == TD_OK);
    td_session_set_attn_path(s, TD_ATTN_ABSORBED);
    for (int64_t t = half; t < T; t++) TD_CHECK(td_session_forward(s, &f.ids[t], 1, stepped + t * V, NULL) == TD_OK);
    err = td_max_rel_err(stepped, whole, T * V);
    TD_CHECKF(err <= 1e-5, "%s: prefill-then-decode differs from one prefill by %.3g", name, err);

    /* rewind into the middle and run the rest again: the cache past the rewind point is recomputed */
    TD_CHECK(td_session_rewind(s, half + 1) == TD_OK);
    TD_CHECK(td_session_forward(s, f.ids + half + 1, T - half - 1, stepped + (half + 1) * V, NULL) == TD_OK);
    err = td_max_rel_err(stepped, whole, T * V);
    TD_CHECKF(err <= 1e-5, "%s: after rewind %.3g", name, err);
    /* the context is full now: one more token must be refused, not overrun */
    TD_CHECK(td_session_forward(s, f.ids, 1, NULL, NULL) == TD_E_ARG);
    int32_t bad = (int32_t)V;
    TD_CHECK(td_session_rewind(s, 0) == TD_OK && td_session_forward(s, &bad, 1, NULL, NULL) == TD_E_ARG);
    td_session_free(s);
    free(whole);
    free(whole_abs);
    free(stepped);
    close_fixture(&f);
}

/* A prompt longer than the engine's batch runs in chunks, and from the second chunk on the decompressed
 * form expands more cached positions than one batch holds. A batch of 7 makes that happen on the
 * fixtures' short prompts (a 512-token batch met it at 528 tokens); the logits must match the float64
 * reference, in both forms and with the fast kernels too. */
static void test_chunked_prefill(const char *name, td_kernels kernels, td_attn_path path)
{
    fixture f;
    if (!open_fixture(name, &f)) return;
    td_engine *small = NULL;
    td_engine_params ep = {.kernels = kernels, .max_batch = 7, .n_threads = 2};
    if (!TD_CHECKF(td_engine_open(f.m, &ep, &small) == TD_OK, "%s", td_errmsg())) {
        close_fixture(&f);
        return;
    }
    int64_t T = f.T, V = f.m->hp.vocab_size;
    float *logits = malloc((size_t)(T * V) * sizeof(float));
    td_session *s;
    td_session_params sp = {.n_ctx = T, .attn = path, .kv_type = TD_KV_F32};
    TD_CHECK(td_session_create(small, &sp, &s) == TD_OK);
    TD_CHECKF(td_session_forward(s, f.ids, T, logits, NULL) == TD_OK, "%s", td_errmsg());
    float *ref = ref_floats(&f, "logits");
    double err = td_max_rel_err(logits, ref, T * V);
    double limit = kernels == TD_KERNELS_REF ? 1e-5 : 1e-2;
    TD_CHECKF(err <= limit, "%s kernels %s path %d, batch 7: logits max rel err %.3g", name, td_kernels_name(kernels),
              path, err);
    free(ref);
    free(logits);
    td_session_free(s);
    td_engine_close(small);
    close_fixture(&f);
}

int main(void)
{
    const char *names[] = {"safetensors/tiny-dsv3-bf16", "safetensors/tiny-dsv3-fp8", "safetensors/tiny-dsv3-qdirect-bf16"};
    for (int i = 0; i < 3; i++) {
        test_layers(names[i], TD_ATTN_DECOMPRESSED);
        test_layers(names[i], TD_ATTN_ABSORBED);
        test_decode_consistency(names[i]);
        test_chunked_prefill(names[i], TD_KERNELS_REF, TD_ATTN_DECOMPRESSED);
        test_chunked_prefill(names[i], TD_KERNELS_REF, TD_ATTN_ABSORBED);
        test_chunked_prefill(names[i], TD_KERNELS_AUTO, TD_ATTN_DECOMPRESSED);
    }
    return td_test_finish();
}
