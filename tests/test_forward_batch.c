/* The batched entry point and the asynchronous expert submission:
 *  - two sessions in one forward call give, byte for byte, the logits of two separate calls (prefill of
 *    different lengths and positions, then decode steps), and their caches stay apart;
 *  - the routed experts on the driver thread (moe_async on) give the bytes of the inline path;
 *  - a call that names a session twice, or another engine's session, is refused. */
#include "td_engine.h"
#include "td_safetensors.h"
#include "td_test.h"

#include <stdlib.h>
#include <string.h>

typedef struct ids {
    int32_t *p;
    int64_t n;
} ids;

static ids ref_ids(const char *ref_path)
{
    ids r = {0};
    td_tensor_dir *dir = NULL;
    if (td_tensor_dir_create(&dir) != TD_OK || td_st_load(ref_path, dir, NULL) != TD_OK) {
        TD_CHECKF(false, "%s: %s", ref_path, td_errmsg());
        td_tensor_dir_free(dir);
        return r;
    }
    const td_tensor *t = td_tensor_dir_find(dir, "input_ids");
    r.n = t->shape[0];
    r.p = malloc((size_t)r.n * sizeof(int32_t));
    memcpy(r.p, t->data, (size_t)r.n * sizeof(int32_t));
    td_tensor_dir_free(dir);
    return r;
}

/* prompt A = the first na ids, prompt B = the ids from `skew` on, nb of them; then `steps` decode steps
 * each feeding the reference's next ids. Returns logits [na + steps][V] and [nb + steps][V]. */
typedef struct run_out {
    float *a, *b;
} run_out;

static bool run(td_engine *e, const ids *x, int64_t na, int64_t skew, int64_t nb, int steps, bool batched, run_out *o)
{
    int64_t V = td_engine_model(e)->hp.vocab_size;
    td_session_params sp = {.n_ctx = 64};
    td_session *sa = NULL, *sb = NULL;
    if (!TD_CHECK(td_session_create(e, &sp, &sa) == TD_OK && td_session_create(e, &sp, &sb) == TD_OK)) {
        td_session_free(sa);
        return false;
    }
    o->a = calloc((size_t)((na + steps) * V), sizeof(float));
    o->b = calloc((size_t)((nb + steps) * V), sizeof(float));
    bool ok = true;
    if (batched) {
        td_forward_item it[2] = {{.s = sa, .tokens = x->p, .n = na, .logits_all = o->a},
                                 {.s = sb, .tokens = x->p + skew, .n = nb, .logits_all = o->b}};
        ok &= TD_CHECKF(td_engine_forward_batch(e, it, 2) == TD_OK, "%s", td_errmsg());
    } else {
        ok &= TD_CHECK(td_session_forward(sa, x->p, na, o->a, NULL) == TD_OK);
        ok &= TD_CHECK(td_session_forward(sb, x->p + skew, nb, o->b, NULL) == TD_OK);
    }
    for (int k = 0; k < steps && ok; k++) {
        const int32_t *ta = x->p + na + k, *tb = x->p + skew + nb + k;
        if (batched) {
            td_forward_item it[2] = {{.s = sb, .tokens = tb, .n = 1}, {.s = sa, .tokens = ta, .n = 1}};
            ok &= TD_CHECK(td_engine_forward_batch(e, it, 2) == TD_OK);
        } else {
            ok &= TD_CHECK(td_session_forward(sa, ta, 1, NULL, NULL) == TD_OK);
            ok &= TD_CHECK(td_session_forward(sb, tb, 1, NULL, NULL) == TD_OK);
        }
        memcpy(o->a + (na + k) * V, td_session_logits(sa), (size_t)V * sizeof(float));
        memcpy(o->b + (nb + k) * V, td_session_logits(sb), (size_t)V * sizeof(float));
    }
    ok &= TD_CHECK(td_session_pos(sa) == na + steps && td_session_pos(sb) == nb + steps);
    td_session_free(sa);
    td_session_free(sb);
    return ok;
}

static void free_out(run_out *o)
{
    free(o->a);
    free(o->b);
}

static void test_model(const char *model_path, const char *ref_path, td_kernels kernels)
{
    td_model *m = NULL;
    if (!TD_CHECKF(td_model_open(model_path, NULL, &m) == TD_OK, "%s: %s", model_path, td_errmsg())) return;
    ids x = ref_ids(ref_path);
    int64_t V = m->hp.vocab_size, na = x.n / 2, skew = 3, nb = x.n / 2 - 5;
    int steps = 4;
    /* a batch smaller than the two prompts together, so that calls split and sessions share chunks */
    td_engine_params ep = {.kernels = kernels, .n_threads = 2, .max_batch = (na + nb) * 2 / 3};
    td_engine *e = NULL;
    if (x.p && TD_CHECKF(td_engine_open(m, &ep, &e) == TD_OK, "%s", td_errmsg())) {
        run_out sep = {0}, bat = {0}, asy = {0};
        if (run(e, &x, na, skew, nb, steps, false, &sep) && run(e, &x, na, skew, nb, steps, true, &bat)) {
            TD_CHECKF(memcmp(sep.a, bat.a, (size_t)((na + steps) * V) * sizeof(float)) == 0,
                      "%s %s: session A batched differs from alone", model_path, td_kernels_name(kernels));
            TD_CHECKF(memcmp(sep.b, bat.b, (size_t)((nb + steps) * V) * sizeof(float)) == 0,
                      "%s %s: session B batched differs from alone", model_path, td_kernels_name(kernels));
        }
        td_engine *ea = NULL;
        td_engine_params ap = ep;
        ap.moe_async = TD_MOE_ASYNC_ON;
        if (TD_CHECK(td_engine_open(m, &ap, &ea) == TD_OK) && run(ea, &x, na, skew, nb, steps, true, &asy)) {
            TD_CHECKF(sep.a && memcmp(sep.a, asy.a, (size_t)((na + steps) * V) * sizeof(float)) == 0,
                      "%s %s: experts on the driver thread change the logits", model_path, td_kernels_name(kernels));
            td_backend *const *bs;
            int nbk = td_engine_backends(ea, &bs);
            td_backend_stats st;
            bs[0]->i->stats(bs[0], &st);
            TD_CHECK(nbk == 1 && st.moe_submits > 0 && st.moe_busy_s > 0);
        }
        /* misuse */
        td_session *s = NULL, *other = NULL;
        td_session_params sp = {.n_ctx = 16};
        if (TD_CHECK(td_session_create(e, &sp, &s) == TD_OK && ea && td_session_create(ea, &sp, &other) == TD_OK)) {
            td_forward_item twice[2] = {{.s = s, .tokens = x.p, .n = 1}, {.s = s, .tokens = x.p, .n = 1}};
            TD_CHECK(td_engine_forward_batch(e, twice, 2) == TD_E_ARG && strstr(td_errmsg(), "twice"));
            td_forward_item foreign[1] = {{.s = other, .tokens = x.p, .n = 1}};
            TD_CHECK(td_engine_forward_batch(e, foreign, 1) == TD_E_ARG && strstr(td_errmsg(), "another engine"));
            TD_CHECK(td_session_pos(s) == 0 && td_session_pos(other) == 0);
        }
        td_session_free(s);
        td_session_free(other);
        td_engine_close(ea);
        free_out(&sep);
        free_out(&bat);
        free_out(&asy);
    }
    td_engine_close(e);
    free(x.p);
    td_model_close(m);
}

int main(void)
{
    char model[4096], ref[4200];
    snprintf(model, sizeof model, "%s", td_test_fixture("safetensors/tiny-dsv3-bf16"));
    snprintf(ref, sizeof ref, "%s/reference.safetensors", model);
    test_model(model, ref, TD_KERNELS_REF);
    test_model(model, ref, TD_KERNELS_AUTO);
    snprintf(model, sizeof model, "%s", td_test_fixture("gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf"));
    snprintf(ref, sizeof ref, "%s", td_test_fixture("gguf/tiny-dsv3-q4_k_m-mla-mtp.reference.safetensors"));
    test_model(model, ref, TD_KERNELS_AUTO);
    return td_test_finish();
}
