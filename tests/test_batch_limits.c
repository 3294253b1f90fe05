/* Every path that may hand the kernels more rows than one batch, with engines whose batch is 1 to 3 tokens
 * (the kernels' scratch holds max_batch rows):
 *  - MTP verify passes of k+1 tokens with k up to 8 drafts (split into several forward calls);
 *  - MTP catch-up runs of up to TD_MTP_RING rows after a prompt and after a deep rewind;
 *  - the decompressed attention form over a context many batches long.
 * Each must give the same greedy stream or logits as an engine with the default batch. */
#include "td_engine.h"
#include "td_eval.h"
#include "td_generate.h"
#include "td_mtp_spec.h"
#include "td_test.h"

#include <stdlib.h>
#include <string.h>

static const char *FIX = "gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf";
enum { N_PROMPT = 40, N_GEN = 24 };

static td_model *g_model;
static td_tokenizer *g_tok;
static int32_t g_prompt[N_PROMPT];

/* Greedy tokens from the prompt on an engine with this batch (0: the default), MTP off (k = 0) or on. */
static bool greedy(int64_t max_batch, int k, td_tokens *out)
{
    td_engine *e = NULL;
    td_session *s = NULL;
    td_sampler *smp = NULL;
    td_generator *g = NULL;
    td_mtp_spec *sp = NULL;
    td_engine_params ep = {.max_batch = max_batch, .n_threads = 2};
    td_session_params spp = {.n_ctx = 128};
    bool ok = TD_CHECK(td_engine_open(g_model, &ep, &e) == TD_OK) && TD_CHECK(td_session_create(e, &spp, &s) == TD_OK) &&
              TD_CHECK(td_sampler_create(g_model->hp.vocab_size, NULL, &smp) == TD_OK) &&
              TD_CHECK(td_generator_create(s, g_tok, smp, &g) == TD_OK);
    if (ok && k > 0) {
        td_mtp_params mp = {.mode = TD_MTP_ON, .k = k};
        ok = TD_CHECKF(td_mtp_spec_create(g, &mp, &sp) == TD_OK, "%s", td_errmsg());
    }
    td_gen_params p = {.max_tokens = N_GEN, .ignore_eos = true};
    td_gen_stats st;
    if (ok) ok = TD_CHECKF(td_generate(g, g_prompt, N_PROMPT, &p, out, &st) == TD_OK, "batch %lld, k %d: %s",
                           (long long)max_batch, k, td_errmsg());
    /* a second answer after rewinding deeper than the MTP ring: its rows are rebuilt in batch-sized calls */
    if (ok && k > 0) {
        td_generator_reset(g);
        ok = TD_CHECKF(td_generate(g, g_prompt, N_PROMPT, &p, NULL, &st) == TD_OK, "again: %s", td_errmsg());
    }
    td_mtp_spec_free(sp);
    td_generator_free(g);
    td_sampler_free(smp);
    td_session_free(s);
    td_engine_close(e);
    return ok;
}

static void test_mtp_verify(void)
{
    td_tokens want = {0};
    if (!greedy(0, 0, &want)) return;
    static const int ks[] = {1, 3, 8};
    for (int64_t b = 1; b <= 3; b++)
        for (int i = 0; i < 3; i++) {
            td_tokens got = {0};
            if (greedy(b, ks[i], &got))
                TD_CHECKF(got.n == want.n && memcmp(got.ids, want.ids, (size_t)want.n * sizeof(int32_t)) == 0,
                          "batch %lld, %d drafts: another greedy stream", (long long)b, ks[i]);
            td_tokens_free(&got);
        }
    td_tokens_free(&want);
}

/* One prompt's logits of every row, decompressed attention, batches of 1 and 3 against the default. */
static void test_decompressed(void)
{
    int64_t V = g_model->hp.vocab_size;
    float *want = malloc((size_t)(N_PROMPT * V) * sizeof(float)), *got = malloc((size_t)(N_PROMPT * V) * sizeof(float));
    for (int64_t b = 0; b <= 3; b += b ? 2 : 1) {
        td_engine *e = NULL;
        td_session *s = NULL;
        td_engine_params ep = {.max_batch = b, .n_threads = 2, .kernels = TD_KERNELS_REF};
        td_session_params spp = {.n_ctx = N_PROMPT, .attn = TD_ATTN_DECOMPRESSED};
        if (TD_CHECK(td_engine_open(g_model, &ep, &e) == TD_OK) && TD_CHECK(td_session_create(e, &spp, &s) == TD_OK))
            TD_CHECKF(td_session_forward(s, g_prompt, N_PROMPT, b ? got : want, NULL) == TD_OK, "%s", td_errmsg());
        if (b) {
            double err = td_max_rel_err(got, want, N_PROMPT * V);
            TD_CHECKF(err < 1e-5, "batch %lld: logits differ by %.3g", (long long)b, err);
        }
        td_session_free(s);
        td_engine_close(e);
    }
    free(want);
    free(got);
}

int main(void)
{
    td_model_params mp = {.quiet = true};
    if (!TD_CHECKF(td_model_open(td_test_fixture(FIX), &mp, &g_model) == TD_OK, "%s", td_errmsg()) ||
        !TD_CHECK(td_tokenizer_for_model(g_model, &g_tok) == TD_OK))
        return td_test_finish();
    for (int i = 0; i < N_PROMPT; i++) g_prompt[i] = (int32_t)((11 + 97 * i) % g_model->hp.vocab_size);
    test_mtp_verify();
    test_decompressed();
    td_tokenizer_free(g_tok);
    td_model_close(g_model);
    return td_test_finish();
}
