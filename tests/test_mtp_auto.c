/* --mtp auto decides from step costs measured once per model and machine (or read from their cache) and
 * from the acceptance seen so far, so it decides before the first token:
 *  - costs that favour MTP: even a 5-token answer is drafted from its first step;
 *  - costs that favour plain decoding: no step of any answer drafts;
 *  - drafts that keep failing turn MTP off within a few steps;
 *  - with no cache entry the costs are measured on the fresh session, cached, and leave no trace in it;
 *  - the cache file keeps one line per key and ignores what it cannot read.
 * Greedy streams are those of plain decoding throughout. Speed itself is measured in bench/RESULTS.md. */
#include "td_alloc.h"
#include "td_engine.h"
#include "td_generate.h"
#include "td_mmap.h"
#include "td_mtp_cost.h"
#include "td_mtp_spec.h"
#include "td_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *FIX = "gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf";
static const int32_t PROMPT[8] = {0, 3, 911, 42, 1777, 5, 260, 4};

typedef struct fx {
    td_model *m;
    td_engine *e;
    td_tokenizer *tok;
} fx;

typedef struct answer {
    td_tokens ids;
    td_mtp_stats ms;
    bool ok;
} answer;

/* A drafter that is always wrong: it proposes the last token of the vocabulary. */
static td_status wrong_drafter(void *user, const td_session *s, const int32_t *toks, int n, float *logits)
{
    (void)s, (void)toks, (void)n;
    int64_t V = *(const int64_t *)user;
    for (int64_t i = 0; i < V; i++) logits[i] = i == V - 1 ? 10.0f : 0.0f;
    return TD_OK;
}

static const char *cache_file(const char *name)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s", td_test_tmpdir(), name);
    return p;
}

/* One greedy answer of n tokens on a fresh session; mode OFF is plain decoding. With `cost` set, the cache
 * is first given that cost for this session's key. */
static answer generate(fx *f, td_mtp_mode mode, int64_t n, const char *cache, const td_mtp_cost *cost,
                       bool wrong_drafts)
{
    answer a = {0};
    td_session *s = NULL;
    td_sampler *smp = NULL;
    td_generator *g = NULL;
    td_mtp_spec *sp = NULL;
    int64_t V = f->m->hp.vocab_size;
    td_session_params spp = {.n_ctx = 256};
    a.ok = TD_CHECK(td_session_create(f->e, &spp, &s) == TD_OK) && TD_CHECK(td_sampler_create(V, NULL, &smp) == TD_OK) &&
           TD_CHECK(td_generator_create(s, f->tok, smp, &g) == TD_OK);
    if (a.ok && cost) {
        char key[2048];
        td_mtp_cost_key(s, 1, key, sizeof key);
        td_mtp_cost_save(cache, key, cost);
    }
    if (a.ok && mode != TD_MTP_OFF) {
        td_mtp_params mp = {.mode = mode, .k = 1, .cost_cache = cache};
        if (wrong_drafts) mp.drafter = wrong_drafter, mp.drafter_user = &V;
        a.ok = TD_CHECKF(td_mtp_spec_create(g, &mp, &sp) == TD_OK, "%s", td_errmsg());
        if (a.ok) TD_CHECK(td_session_pos(s) == 0); /* a measurement leaves the session as it was */
    }
    td_gen_params p = {.max_tokens = n, .ignore_eos = true};
    td_gen_stats st;
    if (a.ok) a.ok = TD_CHECKF(td_generate(g, PROMPT, 8, &p, &a.ids, &st) == TD_OK, "%s", td_errmsg());
    if (sp) td_mtp_spec_stats(sp, &a.ms);
    td_mtp_spec_free(sp);
    td_generator_free(g);
    td_sampler_free(smp);
    td_session_free(s);
    return a;
}

static void same_stream(const answer *plain, const answer *a, const char *what)
{
    TD_CHECKF(a->ok && a->ids.n == plain->ids.n &&
                  memcmp(a->ids.ids, plain->ids.ids, (size_t)plain->ids.n * sizeof(int32_t)) == 0,
              "%s: another greedy stream than plain decoding", what);
}

static void test_decisions(fx *f)
{
    for (int64_t n = 5; n <= 40; n += 35) {
        answer plain = generate(f, TD_MTP_OFF, n, NULL, NULL, false);
        /* a speculative step that costs 1.1 plain ones pays at the prior acceptance: drafting from step 1 */
        td_mtp_cost cheap = {.plain_s = 1.0, .spec_s = 1.1};
        answer on = generate(f, TD_MTP_AUTO, n, cache_file("cheap.tsv"), &cheap, false);
        same_stream(&plain, &on, "auto, cheap verify");
        TD_CHECKF(on.ms.decided && on.ms.drafting && on.ms.spec_steps >= 1 && on.ms.drafted >= 1 && on.ms.plain_steps == 0,
                  "%lld tokens, cheap verify: %lld speculative and %lld plain steps", (long long)n,
                  (long long)on.ms.spec_steps, (long long)on.ms.plain_steps);
        TD_CHECK(on.ms.speedup > 1.0);
        /* one that costs 3 never pays (a step yields 2 tokens at most): not one draft */
        td_mtp_cost dear = {.plain_s = 1.0, .spec_s = 3.0};
        answer off = generate(f, TD_MTP_AUTO, n, cache_file("dear.tsv"), &dear, false);
        same_stream(&plain, &off, "auto, dear verify");
        TD_CHECKF(off.ms.decided && !off.ms.drafting && off.ms.drafted == 0 && off.ms.plain_steps == n,
                  "%lld tokens, dear verify: %lld drafts, %lld plain steps", (long long)n, (long long)off.ms.drafted,
                  (long long)off.ms.plain_steps);
        TD_CHECK(off.ms.speedup < 1.0);
        td_tokens_free(&plain.ids);
        td_tokens_free(&on.ids);
        td_tokens_free(&off.ids);
    }
}

/* Costs where MTP pays at the prior acceptance but not at zero: rejected drafts turn it off. */
static void test_acceptance(fx *f)
{
    answer plain = generate(f, TD_MTP_OFF, 40, NULL, NULL, false);
    td_mtp_cost mid = {.plain_s = 1.0, .spec_s = 1.5};
    answer a = generate(f, TD_MTP_AUTO, 40, cache_file("mid.tsv"), &mid, true);
    same_stream(&plain, &a, "auto, rejected drafts");
    TD_CHECKF(a.ms.drafted >= 1 && a.ms.drafted <= 10 && !a.ms.drafting && a.ms.plain_steps > 20,
              "rejected drafts: %lld drafted (%lld accepted), still drafting %d", (long long)a.ms.drafted,
              (long long)a.ms.accepted, a.ms.drafting);
    td_tokens_free(&plain.ids);
    td_tokens_free(&a.ids);
}

/* No cache entry: measured on the fresh session, written to the cache, then read back. */
static void test_measured(fx *f)
{
    answer plain = generate(f, TD_MTP_OFF, 12, NULL, NULL, false);
    const char *cache = cache_file("sub/dir/measured.tsv");
    answer a = generate(f, TD_MTP_AUTO, 12, cache, NULL, false);
    same_stream(&plain, &a, "auto, measured");
    TD_CHECKF(a.ms.decided && a.ms.plain_tok_s > 0 && a.ms.mtp_tok_s > 0 && isfinite(a.ms.speedup),
              "measured: plain %.1f tok/s, MTP %.1f tok/s", a.ms.plain_tok_s, a.ms.mtp_tok_s);
    char *text = NULL;
    TD_CHECKF(td_read_text_file(cache, 1 << 20, &text, NULL) == TD_OK, "the cache was not written: %s", td_errmsg());
    if (text) TD_CHECKF(strstr(text, "k=1\t") != NULL && strchr(text, '\n') == strrchr(text, '\n'), "cache: %s", text);
    td_free(text);
    answer b = generate(f, TD_MTP_AUTO, 12, cache, NULL, false); /* the same costs, read back */
    TD_CHECK(b.ok && fabs(b.ms.plain_tok_s - a.ms.plain_tok_s) < 1e-6 * a.ms.plain_tok_s);
    td_tokens_free(&plain.ids);
    td_tokens_free(&a.ids);
    td_tokens_free(&b.ids);
}

static void test_cache_file(void)
{
    const char *p = cache_file("lines.tsv");
    td_mtp_cost c;
    TD_CHECK(!td_mtp_cost_load(p, "a", &c) && !td_mtp_cost_load(NULL, "a", &c));
    td_mtp_cost_save(p, "a", &(td_mtp_cost){1, 2});
    td_mtp_cost_save(p, "ab", &(td_mtp_cost){3, 4});
    td_mtp_cost_save(p, "a", &(td_mtp_cost){5, 6}); /* replaces a, keeps ab */
    TD_CHECK(td_mtp_cost_load(p, "a", &c) && c.plain_s == 5 && c.spec_s == 6);
    TD_CHECK(td_mtp_cost_load(p, "ab", &c) && c.plain_s == 3 && c.spec_s == 4);
    TD_CHECK(!td_mtp_cost_load(p, "b", &c));
    const char *junk = "a\tnot numbers\nb\t-1 2\nc\t1\n";
    td_test_write_file(p, junk, strlen(junk));
    TD_CHECK(!td_mtp_cost_load(p, "a", &c) && !td_mtp_cost_load(p, "b", &c) && !td_mtp_cost_load(p, "c", &c));
    for (int i = 0; i < 100; i++) { /* the file keeps the newest lines only */
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        td_mtp_cost_save(p, key, &(td_mtp_cost){i + 1, 1});
    }
    TD_CHECK(td_mtp_cost_load(p, "k99", &c) && c.plain_s == 100 && !td_mtp_cost_load(p, "k0", &c));
}

int main(void)
{
    test_cache_file();
    fx f = {0};
    td_model_params mp = {.quiet = true};
    td_engine_params ep = {.n_threads = 2};
    if (TD_CHECKF(td_model_open(td_test_fixture(FIX), &mp, &f.m) == TD_OK, "%s", td_errmsg()) &&
        TD_CHECK(td_engine_open(f.m, &ep, &f.e) == TD_OK) && TD_CHECK(td_tokenizer_for_model(f.m, &f.tok) == TD_OK)) {
        test_decisions(&f);
        test_acceptance(&f);
        test_measured(&f);
    }
    td_tokenizer_free(f.tok);
    td_engine_close(f.e);
    td_model_close(f.m);
    return td_test_finish();
}
