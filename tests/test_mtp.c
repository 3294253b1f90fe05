/* MTP speculative decoding: greedy streams are identical with and without MTP (k = 1, 2, 3 and auto) on
 * every fixture with an MTP block and on the bundled model when models/ holds one; the session's MTP
 * bookkeeping gives the fixture references' MTP logits through forwards, drafts and rewinds; chained
 * drafts and deep rewinds behave; the expert counters agree with the router's choices; a model without
 * MTP gets a clear error; bad parameters are refused. */
#include "td_alloc.h"
#include "td_chat_template.h"
#include "td_engine.h"
#include "td_eval.h"
#include "td_generate.h"
#include "td_mtp_spec.h"
#include "td_safetensors.h"
#include "td_test.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* tokens generated per run: 200, or 32 under the sanitizers (the same code paths in a fraction of the time) */
static int64_t g_tokens = 200;
static int64_t g_ctx = 512; /* the sessions' context */


/* the safetensors fixtures have no tokenizer; the generator only needs one to stream text */
static td_tokenizer *td_plain_tokenizer(int64_t n)
{
    td_tokenizer *t = NULL;
    if (td_tokenizer_placeholder(n, &t) != TD_OK) fprintf(stderr, "tokenizer: %s\n", td_errmsg());
    return t;
}

typedef struct td_fx {
    char name[256];
    td_model *model;
    td_engine *engine;
    td_tokenizer *tok;
    int32_t prompt[256];
    int64_t n_prompt;
    const float *ref_mtp; /* [n_prompt-1][V] or NULL */
    float *ref_mtp_copy;
} td_fx;

/* Opens a model with a prompt: the reference's input_ids beside it, or a fixed token pattern. */
static bool td_fx_open(td_fx *f, const char *model_path, const char *ref_path, td_kernels kernels)
{
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s (%s kernels)", model_path, td_kernels_name(kernels));
    td_model_params mp = {.quiet = true};
    if (td_model_open(model_path, &mp, &f->model) != TD_OK) return false;
    /* the fast kernels on two threads, so that the split of work between threads is covered too */
    td_engine_params ep = {.kernels = kernels, .n_threads = kernels == TD_KERNELS_REF ? 1 : 2};
    if (!TD_CHECKF(td_engine_open(f->model, &ep, &f->engine) == TD_OK, "%s", td_errmsg())) return false;
    int64_t V = f->model->hp.vocab_size;
    if (td_tokenizer_for_model(f->model, &f->tok) != TD_OK) {
        td_err_clear();
        f->tok = td_plain_tokenizer((int)V);
    }
    td_tensor_dir *dir = NULL;
    if (ref_path && td_tensor_dir_create(&dir) == TD_OK && td_st_load(ref_path, dir, NULL) == TD_OK) {
        const td_tensor *ids = td_tensor_dir_find(dir, "input_ids"), *mtp = td_tensor_dir_find(dir, "mtp_logits");
        if (ids && ids->shape[0] <= 256) {
            f->n_prompt = ids->shape[0];
            memcpy(f->prompt, ids->data, (size_t)f->n_prompt * sizeof(int32_t));
        }
        if (mtp && ids && mtp->shape[0] == f->n_prompt - 1 && mtp->shape[1] == V) {
            f->ref_mtp_copy = td_malloc((size_t)mtp->nbytes);
            if (f->ref_mtp_copy) memcpy(f->ref_mtp_copy, mtp->data, (size_t)mtp->nbytes);
            f->ref_mtp = f->ref_mtp_copy;
        }
    }
    td_tensor_dir_free(dir);
    if (f->n_prompt == 0 && td_tokenizer_bos(f->tok) >= 0) { /* a real tokenizer: a chat prompt */
        const char *why;
        size_t n;
        int32_t bos = td_tokenizer_bos(f->tok);
        const char *b = td_tokenizer_token_bytes(f->tok, bos, &n);
        char bos_text[64], *text = NULL;
        snprintf(bos_text, sizeof bos_text, "%.*s", (int)n, b);
        td_template t = td_template_detect(td_tokenizer_chat_template(f->tok), model_path, &why);
        td_chat_msg msg = {TD_ROLE_USER, "Tell me a story about a lighthouse keeper."};
        td_tokens ids = {0};
        if (td_template_render(t, &msg, 1, bos_text, true, &text) == TD_OK &&
            td_tokenizer_encode(f->tok, text, strlen(text), false, &ids) == TD_OK && ids.n <= 256) {
            memcpy(f->prompt, ids.ids, (size_t)ids.n * sizeof(int32_t));
            f->n_prompt = ids.n;
        }
        td_free(text);
        td_tokens_free(&ids);
    }
    if (f->n_prompt == 0) {
        f->n_prompt = 24;
        for (int i = 0; i < 24; i++) f->prompt[i] = (int32_t)((7 + 31 * i) % V);
    }
    return f->tok != NULL;
}

static void td_fx_close(td_fx *f)
{
    td_tokenizer_free(f->tok);
    td_engine_close(f->engine);
    td_model_close(f->model);
    td_free(f->ref_mtp_copy);
}

/* The main model as its own drafter: a second session on the same engine runs the context plus the drafts
 * so far, and every `wrong_every`-th draft is spoiled (its top token forbidden), so that verification sees
 * accepted drafts, rejections at every depth, and bonus tokens. */
typedef struct td_oracle {
    td_session *s;
    int64_t V;
    int calls, wrong_every;
} td_oracle;

static td_status td_oracle_draft(void *user, const td_session *main_s, const int32_t *toks, int n, float *logits)
{
    td_oracle *o = user;
    int64_t pos = td_session_pos(main_s), len = pos + n, have = td_session_pos(o->s), c = 0;
    const int32_t *hist = td_session_tokens(main_s), *mine = td_session_tokens(o->s);
    while (c < have && c < len && mine[c] == (c < pos ? hist[c] : toks[c - pos])) c++;
    if (c == len) c--; /* run the last token again for its logits */
    TD_TRY(td_session_rewind(o->s, c));
    if (c < pos) TD_TRY(td_session_forward(o->s, hist + c, pos - c, NULL, NULL));
    int64_t from = c > pos ? c - pos : 0;
    TD_TRY(td_session_forward(o->s, toks + from, n - from, NULL, NULL));
    memcpy(logits, td_session_logits(o->s), (size_t)o->V * sizeof(float));
    if (o->wrong_every && ++o->calls % o->wrong_every == 0) logits[td_argmax(logits, o->V)] = -INFINITY;
    return TD_OK;
}

/* g_tokens greedy tokens from the prompt, plain (mode OFF) or speculative (wrong_every >= 0: with the
 * oracle drafter). */
static bool td_run(td_fx *f, td_mtp_mode mode, int k, int wrong_every, td_tokens *out, td_gen_stats *st,
                   td_mtp_stats *ms)
{
    td_oracle oracle = {.V = f->model->hp.vocab_size, .wrong_every = wrong_every};
    td_session *s = NULL;
    td_sampler *smp = NULL;
    td_generator *g = NULL;
    td_mtp_spec *sp = NULL;
    td_session_params spp = {.n_ctx = g_ctx};
    bool ok = TD_CHECK(td_session_create(f->engine, &spp, &s) == TD_OK) &&
              TD_CHECK(td_sampler_create(f->model->hp.vocab_size, NULL, &smp) == TD_OK) &&
              TD_CHECK(td_generator_create(s, f->tok, smp, &g) == TD_OK);
    if (ok && wrong_every >= 0) ok = TD_CHECK(td_session_create(f->engine, &spp, &oracle.s) == TD_OK);
    if (ok && mode != TD_MTP_OFF) {
        td_mtp_params mp = {.mode = mode, .k = k};
        if (wrong_every >= 0) mp.drafter = td_oracle_draft, mp.drafter_user = &oracle;
        ok = TD_CHECKF(td_mtp_spec_create(g, &mp, &sp) == TD_OK, "%s: %s", f->name, td_errmsg());
    }
    td_gen_params p = {.max_tokens = g_tokens, .ignore_eos = true};
    if (ok) ok = TD_CHECKF(td_generate(g, f->prompt, f->n_prompt, &p, out, st) == TD_OK, "%s", td_errmsg());
    if (sp) td_mtp_spec_stats(sp, ms);
    td_mtp_spec_free(sp);
    td_generator_free(g);
    td_sampler_free(smp);
    td_session_free(s);
    td_session_free(oracle.s);
    return ok;
}

typedef struct td_variant {
    td_mtp_mode mode;
    int k, wrong_every; /* wrong_every >= 0: the oracle drafter */
} td_variant;

static void td_test_greedy_identity(td_fx *f, const td_variant *runs, int n_runs)
{
    td_tokens plain = {0};
    td_gen_stats st;
    td_mtp_stats ms;
    if (!td_run(f, TD_MTP_OFF, 1, -1, &plain, &st, &ms)) return;
    TD_CHECK(plain.n == g_tokens);
    for (int r = 0; r < n_runs; r++) {
        td_tokens spec = {0};
        if (td_run(f, runs[r].mode, runs[r].k, runs[r].wrong_every, &spec, &st, &ms)) {
            int64_t first = 0;
            while (first < plain.n && first < spec.n && plain.ids[first] == spec.ids[first]) first++;
            TD_CHECKF(spec.n == plain.n && first == plain.n,
                      "%s, --mtp %s k=%d%s: %lld tokens, the first difference at %lld of %lld", f->name,
                      td_mtp_mode_name(runs[r].mode), runs[r].k, runs[r].wrong_every >= 0 ? " (oracle)" : "",
                      (long long)spec.n, (long long)first, (long long)plain.n);
            /* the oracle is right but for the spoiled drafts (and rare near-ties between batch shapes) */
            if (runs[r].wrong_every > 0 && runs[r].mode == TD_MTP_ON)
                TD_CHECKF(ms.accepted >= ms.drafted / 3 && ms.accepted < ms.drafted, "oracle: %lld of %lld accepted",
                          (long long)ms.accepted, (long long)ms.drafted);
            /* auto may keep plain decoding from the start (it does where MTP does not pay) */
            TD_CHECK((ms.drafted > 0 || (runs[r].mode == TD_MTP_AUTO && !ms.drafting)) && ms.accepted >= 0 &&
                     ms.accepted <= ms.drafted);
            TD_CHECK(runs[r].mode == TD_MTP_AUTO || !isnan(st.mtp_acceptance));
            TD_CHECK(st.gen_tokens == g_tokens && st.tokens_per_step >= 1.0);
            if (runs[r].mode == TD_MTP_AUTO) TD_CHECKF(ms.decided, "%s: auto did not decide in 200 tokens", f->name);
            printf("%s: --mtp %s k=%d%s: acceptance %.3f, %.2f tokens/step, %.0f tok/s%s\n", f->name,
                   td_mtp_mode_name(runs[r].mode), runs[r].k, runs[r].wrong_every >= 0 ? " (oracle)" : "",
                   ms.drafted ? (double)ms.accepted / (double)ms.drafted : 0, st.tokens_per_step, st.decode_tok_s,
                   ms.decided ? (ms.drafting ? ", auto chose MTP" : ", auto chose plain") : "");
        }
        td_tokens_free(&spec);
    }
    td_tokens_free(&plain);
}

/* A context that fills up mid-step: drafts shrink to the room left, and generation ends where plain
 * decoding ends, with the same tokens. */
static void td_test_context_full(td_fx *f)
{
    int64_t saved_tokens = g_tokens, saved_ctx = g_ctx;
    g_tokens = 0; /* until the context is full */
    for (int64_t room = 1; room <= 7; room += 3) {
        g_ctx = f->n_prompt + room;
        td_tokens plain = {0};
        td_gen_stats st;
        td_mtp_stats ms;
        if (!td_run(f, TD_MTP_OFF, 1, -1, &plain, &st, &ms)) break;
        TD_CHECK(st.stop == TD_GEN_STOP_CONTEXT && plain.n == room + 1);
        const td_variant runs[] = {{TD_MTP_ON, 2, -1}, {TD_MTP_ON, 3, 4}, {TD_MTP_ON, 8, 0}};
        for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
            td_tokens spec = {0};
            if (td_run(f, runs[r].mode, runs[r].k, runs[r].wrong_every, &spec, &st, &ms))
                TD_CHECKF(st.stop == TD_GEN_STOP_CONTEXT && spec.n == plain.n &&
                              memcmp(spec.ids, plain.ids, (size_t)plain.n * sizeof(int32_t)) == 0,
                          "%s: room %lld, k=%d: %lld tokens (plain %lld), stop %s", f->name, (long long)room, runs[r].k,
                          (long long)spec.n, (long long)plain.n, td_gen_stop_name(st.stop));
            td_tokens_free(&spec);
        }
        td_tokens_free(&plain);
    }
    g_tokens = saved_tokens;
    g_ctx = saved_ctx;
}

/* ------------------------------------------------------------------ bookkeeping vs the reference */

/* Drafting at position i (cache holding prompt[0..i], next token prompt[i+1]) must give the fixture's
 * mtp_logits[i], however the cache got there: one prefill, token by token, or rewinds and replays. */
static void td_test_bookkeeping(td_fx *f)
{
    if (!f->ref_mtp) return;
    int64_t V = f->model->hp.vocab_size, T = f->n_prompt;
    td_session *s;
    td_session_params spp = {.n_ctx = 256};
    if (!TD_CHECK(td_session_create(f->engine, &spp, &s) == TD_OK)) return;
    td_session_mtp_keep_up(s, true);
    double worst = 0;
#define DRAFT_AT(i)                                                                                                    \
    do {                                                                                                               \
        TD_CHECK(td_session_pos(s) == (i) + 1);                                                                        \
        TD_CHECKF(td_session_mtp_draft(s, f->prompt[(i) + 1]) == TD_OK, "%s", td_errmsg());                            \
        double e = td_max_rel_err(td_session_mtp_logits(s), f->ref_mtp + (i)*V, V);                                    \
        if (!(e <= worst)) worst = e;                                                                                  \
    } while (0)
    /* 1. token by token, drafting at every position */
    for (int64_t i = 0; i < T - 1; i++) {
        TD_CHECK(td_session_forward(s, &f->prompt[i], 1, NULL, NULL) == TD_OK);
        DRAFT_AT(i);
    }
    double token_by_token = worst;
    /* 2. a rewind to the middle, a wrong token, a draft with it, a rewind, the right tokens */
    int64_t mid = T / 2;
    TD_CHECK(td_session_rewind(s, mid) == TD_OK);
    int32_t wrong = (f->prompt[mid] + 1) % (int32_t)V;
    TD_CHECK(td_session_forward(s, &wrong, 1, NULL, NULL) == TD_OK);
    TD_CHECK(td_session_mtp_draft(s, wrong) == TD_OK && td_session_mtp_chain(s, wrong) == TD_OK);
    TD_CHECK(td_session_rewind(s, mid) == TD_OK);
    TD_CHECK(td_session_forward(s, &f->prompt[mid], 1, NULL, NULL) == TD_OK);
    DRAFT_AT(mid);
    /* 3. a draft guessing the wrong next token, then the right one runs: the guessed row is redone */
    TD_CHECK(td_session_mtp_draft(s, wrong) == TD_OK);
    TD_CHECK(td_session_forward(s, &f->prompt[mid + 1], 1, NULL, NULL) == TD_OK);
    DRAFT_AT(mid + 1);
    /* 4. chained drafts leave speculative rows that the next draft replaces */
    TD_CHECK(td_session_mtp_chain(s, 3) == TD_OK && td_session_mtp_chain(s, 4) == TD_OK);
    TD_CHECK(td_session_forward(s, &f->prompt[mid + 2], T - 1 - (mid + 2), NULL, NULL) == TD_OK);
    DRAFT_AT(T - 2);
    /* 5. one long prefill with keep_up (the rows caught up inside the forward), then a draft */
    TD_CHECK(td_session_rewind(s, 0) == TD_OK);
    TD_CHECK(td_session_forward(s, f->prompt, T - 1, NULL, NULL) == TD_OK);
    TD_CHECK(td_session_mtp_pos(s) == (T - 1 > TD_MTP_RING / 2 ? T - 2 : 0));
    DRAFT_AT(T - 2);
    /* 6. and without keep_up: the draft runs every row in one batch from the ring */
    TD_CHECK(td_session_rewind(s, 0) == TD_OK);
    td_session_mtp_keep_up(s, false);
    int64_t n6 = T - 1 < TD_MTP_RING ? T - 1 : TD_MTP_RING;
    TD_CHECK(td_session_forward(s, f->prompt, n6, NULL, NULL) == TD_OK && td_session_mtp_pos(s) == 0);
    DRAFT_AT(n6 - 1);
    TD_CHECKF(worst < 1e-4, "%s: MTP drafts differ from the reference by %.3g (token by token: %.3g)", f->name, worst,
              token_by_token);
    printf("%s: MTP draft logits vs reference: max rel err %.3g\n", f->name, worst);
#undef DRAFT_AT

    /* a rewind deeper than the ring, and drafting with nothing to draft from */
    TD_CHECK(td_session_rewind(s, 0) == TD_OK);
    TD_CHECK(!td_session_mtp_can_draft(s) && td_session_mtp_draft(s, 1) == TD_E_ARG);
    TD_CHECK(td_session_mtp_chain(s, 1) == TD_E_ARG);
    TD_CHECK(td_session_mtp_draft(s, (int32_t)V) == TD_E_ARG || !td_session_mtp_can_draft(s));
    int32_t many[100];
    for (int i = 0; i < 100; i++) many[i] = (int32_t)((i * 37 + 5) % V);
    TD_CHECK(td_session_forward(s, many, 100, NULL, NULL) == TD_OK);
    TD_CHECK(td_session_rewind(s, 50) == TD_OK && !td_session_mtp_can_draft(s)); /* 50 < 100 - ring */
    TD_CHECK(td_session_forward(s, many + 50, 1, NULL, NULL) == TD_OK && td_session_mtp_can_draft(s));
    TD_CHECK(td_session_mtp_draft(s, 9) == TD_OK && td_session_mtp_draft(s, (int32_t)V) == TD_E_ARG);
    const float *l = td_session_mtp_logits(s);
    bool finite = true;
    for (int64_t i = 0; i < V; i++) finite &= isfinite(l[i]);
    TD_CHECK(finite);
    td_session_free(s);
}

/* ------------------------------------------------------------------ expert counters */

static void td_test_expert_counts(td_fx *f)
{
    const td_hparams *hp = &f->model->hp;
    int L = hp->n_layers, k = hp->n_experts_per_tok;
    td_session *s;
    td_session_params spp = {.n_ctx = 128};
    if (!TD_CHECK(td_session_create(f->engine, &spp, &s) == TD_OK)) return;
    td_expert_counts *c = td_calloc((size_t)L + 1, sizeof *c);
    int32_t *topk[64] = {0};
    for (int l = 0; l < L && l < 64; l++) topk[l] = td_malloc((size_t)(3 * k) * sizeof(int32_t));
    td_trace tr = {.topk = topk};
    td_session_count_experts(s, c);
    TD_CHECK(td_session_forward(s, f->prompt, 4, NULL, NULL) == TD_OK);
    td_session_set_trace(s, &tr);
    TD_CHECK(td_session_forward(s, f->prompt + 4, 1, NULL, NULL) == TD_OK);
    for (int l = 0; l < L; l++)
        if (td_hparams_layer_is_moe(hp, l)) TD_CHECK(c[l].calls[1] == 1 && c[l].distinct[1] == k);
    TD_CHECK(td_session_forward(s, f->prompt + 5, 3, NULL, NULL) == TD_OK);
    td_session_set_trace(s, NULL);
    TD_CHECK(td_session_mtp_draft(s, 1) == TD_OK);
    for (int l = 0; l < L; l++) {
        if (!td_hparams_layer_is_moe(hp, l)) {
            TD_CHECK(c[l].calls[1] == 0 && c[l].calls[3] == 0);
            continue;
        }
        /* distinct ids among the traced batch of 3, counted here from the trace */
        int distinct = 0;
        for (int i = 0; i < 3 * k; i++) {
            int j = 0;
            while (j < i && topk[l][j] != topk[l][i]) j++;
            distinct += j == i;
        }
        TD_CHECKF(c[l].calls[3] == 1 && c[l].distinct[3] == distinct, "layer %d: %lld calls, %lld distinct, want %d", l,
                  (long long)c[l].calls[3], (long long)c[l].distinct[3], distinct);
        TD_CHECK(c[l].calls[4] == 1 && c[l].distinct[4] >= k && c[l].distinct[4] <= 4 * k);
    }
    /* the MTP block's layer is counted last: one draft of the 8 rows up to pos-1 */
    if (td_hparams_layer_is_moe(hp, L)) TD_CHECK(c[L].calls[8] == 1);
    td_session_count_experts(s, NULL);
    TD_CHECK(td_session_forward(s, f->prompt + 8, 1, NULL, NULL) == TD_OK);
    for (int l = 0; l < L; l++)
        if (td_hparams_layer_is_moe(hp, l)) TD_CHECK(c[l].calls[1] == 1);
    for (int l = 0; l < L && l < 64; l++) td_free(topk[l]);
    td_free(c);
    td_session_free(s);
}

/* ------------------------------------------------------------------ errors */

static void td_test_errors(void)
{
    td_mtp_mode m;
    TD_CHECK(td_mtp_mode_from_name("AUTO", &m) && m == TD_MTP_AUTO && !td_mtp_mode_from_name("maybe", &m));
    TD_CHECK(strcmp(td_mtp_mode_name(TD_MTP_ON), "on") == 0);
    /* the legacy GGUF fixture has no MTP block */
    td_fx f;
    if (!td_fx_open(&f, td_test_fixture("gguf/tiny-dsv3-q8_0-legacy.gguf"), NULL, TD_KERNELS_REF)) {
        td_fx_close(&f);
        return;
    }
    td_session *s;
    td_sampler *smp;
    td_generator *g;
    static char sentinel;
    td_mtp_spec *sp = (td_mtp_spec *)(void *)&sentinel; /* create must clear it on failure */
    TD_CHECK(td_session_create(f.engine, NULL, &s) == TD_OK);
    TD_CHECK(td_sampler_create(f.model->hp.vocab_size, NULL, &smp) == TD_OK);
    TD_CHECK(td_generator_create(s, f.tok, smp, &g) == TD_OK);
    td_mtp_params p = {.mode = TD_MTP_ON};
    TD_CHECK(td_mtp_spec_create(g, &p, &sp) == TD_E_NOT_FOUND && sp == NULL);
    TD_CHECKF(strstr(td_errmsg(), "no MTP block") && strstr(td_errmsg(), "without MTP"), "message: %s", td_errmsg());
    TD_CHECK(!td_session_has_mtp(s) && !td_session_mtp_can_draft(s) && td_session_mtp_draft(s, 1) == TD_E_NOT_FOUND);
    td_session_mtp_keep_up(s, true); /* harmless */
    TD_CHECK(td_session_forward(s, f.prompt, 20, NULL, NULL) == TD_OK);
    p.mode = TD_MTP_OFF; /* an OFF spec works on any model and leaves the plain step */
    TD_CHECK(td_mtp_spec_create(g, &p, &sp) == TD_OK && sp);
    td_mtp_spec_free(sp);
    p = (td_mtp_params){.mode = TD_MTP_ON, .k = TD_MTP_MAX_DRAFTS + 1};
    TD_CHECK(td_mtp_spec_create(g, &p, &sp) == TD_E_ARG && strstr(td_errmsg(), "out of range"));
    p = (td_mtp_params){.mode = TD_MTP_MODE_COUNT};
    TD_CHECK(td_mtp_spec_create(g, &p, &sp) == TD_E_ARG);
    td_mtp_spec_free(NULL);
    td_generator_free(g);
    td_sampler_free(smp);
    td_session_free(s);
    td_fx_close(&f);
}

/* ------------------------------------------------------------------ the models */

/* level 1: plain vs k = 1; 2: and k = 2; 3: every variant (deeper chains, auto, the oracle drafter that
 * gets drafts accepted) and a context that fills up. check: the bookkeeping and counter tests too. */
static void td_test_model(const char *model_path, const char *ref_path, td_kernels kernels, int level, bool check)
{
    td_fx f;
    clock_t t0 = clock();
    static const td_variant all[] = {{TD_MTP_ON, 1, -1}, {TD_MTP_ON, 2, -1}, {TD_MTP_ON, 3, -1}, {TD_MTP_AUTO, 1, -1},
                                     {TD_MTP_ON, 1, 5},  {TD_MTP_ON, 3, 4},  {TD_MTP_ON, 8, 11}};
    if (td_fx_open(&f, model_path, ref_path, kernels)) {
        if (!TD_CHECKF(f.model->mtp, "%s has no MTP block", f.name)) {
            td_fx_close(&f);
            return;
        }
        if (level >= 3) {
            td_test_greedy_identity(&f, all, (int)(sizeof all / sizeof all[0]));
            td_test_context_full(&f);
        } else if (level > 0) {
            td_test_greedy_identity(&f, all, level);
        }
        if (check) {
            td_test_bookkeeping(&f);
            td_test_expert_counts(&f);
        }
    } else {
        TD_CHECKF(false, "%s: %s", model_path, td_errmsg());
    }
    printf("%s: %.1f s\n", f.name, (double)(clock() - t0) / CLOCKS_PER_SEC);
    td_fx_close(&f);
}

/* The bundled model (a .gguf under models/ in the source tree) once it exists. */
static void td_test_bundled(void)
{
    const char *src = getenv("TANDEM_SOURCE_DIR");
    char dir[4096], path[4400];
    snprintf(dir, sizeof dir, "%s/models", src ? src : "..");
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".gguf") != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        printf("bundled model %s\n", path);
        td_test_model(path, NULL, TD_KERNELS_REF, 1, false);
        td_test_model(path, NULL, TD_KERNELS_AUTO, 3, false);
    }
    closedir(d);
}

int main(void)
{
    static const char *const fixtures[] = {"safetensors/tiny-dsv3-bf16", "safetensors/tiny-dsv3-fp8",
                                           "safetensors/tiny-dsv3-qdirect-bf16", "gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf"};
    char model[4096], ref[4200];
    snprintf(model, sizeof model, "%s", td_test_fixture(fixtures[0]));
    if (access(model, R_OK) != 0) return td_test_skip("the fixtures are missing (TANDEM_SHARED)");
    const char *env = getenv("TANDEM_SANITIZED");
    bool sanitized = env && strcmp(env, "1") == 0;
    if (sanitized) g_tokens = 32;
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        snprintf(model, sizeof model, "%s", td_test_fixture(fixtures[i]));
        size_t n = strlen(model);
        if (n > 5 && strcmp(model + n - 5, ".gguf") == 0)
            snprintf(ref, sizeof ref, "%.*s.reference.safetensors", (int)(n - 5), model);
        else
            snprintf(ref, sizeof ref, "%s/reference.safetensors", model);
        /* every variant runs on the default kernels; the slow reference kernels run the first fixture in
         * full and the others with k = 1 (and 2 where cheap); the FP8 fixture has no fast kernels, so it
         * gets k = 1 there too, the GGUF fixture (heavy attention, a 4096-token head) k = 1 and 2; under the
         * sanitizers less of each */
        bool gguf = strstr(fixtures[i], "gguf") != NULL, fp8 = strstr(fixtures[i], "fp8") != NULL;
        int ref_level = i == 0 ? 3 : sanitized ? (gguf ? 0 : 1) : (gguf || fp8) ? 1 : 2;
        int auto_level = sanitized ? (i == 0 ? 2 : 0) : fp8 ? 1 : gguf ? 2 : 3;
        td_test_model(model, ref, TD_KERNELS_REF, ref_level, true);
        td_test_model(model, ref, TD_KERNELS_AUTO, auto_level, false);
    }
    if (!sanitized) td_test_bundled();
    td_test_errors();
    return td_test_finish();
}
