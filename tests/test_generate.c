/* The generation loop: greedy decoding reproduces the fixture's outside greedy continuation, results
 * are deterministic (also when the cached prefix is reused), and the stop rules, streaming, reasoning
 * tags and multi-token steps behave, the latter with a scripted step in place of the model. */
#include "td_alloc.h"
#include "td_engine.h"
#include "td_generate.h"
#include "td_safetensors.h"
#include "td_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { T_THINK = 256, T_UNTHINK = 257, T_EOS = 258 };

/* A vocabulary for the 512-token fixture: ids 0..255 are the bytes (GPT-2 alphabet), then <think>,
 * </think>, an EOS, and plain added tokens <tNNN>. */
static td_tokenizer *td_make_tokenizer(int n, int32_t eos)
{
    static char names[1024][16];
    const char *tokens[1024];
    uint8_t attrs[1024];
    for (int b = 0; b < 256; b++) {
        int cp = b, k = 0;
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
            for (int i = 0; i < b; i++) k += !((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174);
            cp = 256 + k;
        }
        memset(names[b], 0, 16);
        if (cp < 0x80)
            names[b][0] = (char)cp;
        else {
            names[b][0] = (char)(0xC0 | (cp >> 6));
            names[b][1] = (char)(0x80 | (cp & 0x3F));
        }
        tokens[b] = names[b];
        attrs[b] = TD_TOKEN_NORMAL;
    }
    for (int i = 256; i < n; i++) {
        snprintf(names[i], 16,
                 i == T_THINK     ? "<think>"
                 : i == T_UNTHINK ? "</think>"
                 : i == T_EOS     ? "<eos>"
                                  : "<t%d>",
                 i);
        tokens[i] = names[i];
        attrs[i] = i == T_EOS ? TD_TOKEN_SPECIAL : TD_TOKEN_ADDED;
    }
    td_tokenizer_vocab v = {.n_tokens = n,
                            .tokens = tokens,
                            .attrs = attrs,
                            .pretok = TD_PRETOK_DEEPSEEK_V3,
                            .unk_id = -1,
                            .bos_id = -1,
                            .eos_id = eos,
                            .pad_id = -1,
                            .source = "test vocabulary"};
    td_tokenizer *t = NULL;
    if (td_tokenizer_create(&v, &t) != TD_OK) fprintf(stderr, "tokenizer: %s\n", td_errmsg());
    return t;
}

typedef struct td_ref {
    td_tensor_dir *dir;
    const int32_t *prompt, *greedy;
    int64_t n_prompt, n_greedy;
} td_ref;

static bool td_ref_open(const char *path, td_ref *r)
{
    memset(r, 0, sizeof *r);
    if (td_tensor_dir_create(&r->dir) != TD_OK || td_st_load(path, r->dir, NULL) != TD_OK) return false;
    const td_tensor *a = td_tensor_dir_find(r->dir, "input_ids"), *b = td_tensor_dir_find(r->dir, "greedy_ids");
    if (!a || !b) return false;
    r->prompt = a->data;
    r->n_prompt = a->shape[0];
    r->greedy = b->data;
    r->n_greedy = b->shape[0];
    return true;
}

typedef struct td_collect {
    char text[8192];
    size_t n;
    int pieces[TD_PIECE_COUNT];
    char think[1024];
    size_t n_think;
} td_collect;

static void td_on_text(void *user, td_gen_piece kind, const char *s, size_t n)
{
    td_collect *c = user;
    c->pieces[kind]++;
    if (c->n + n < sizeof c->text) memcpy(c->text + c->n, s, n), c->n += n;
    if (kind == TD_PIECE_THINK && c->n_think + n < sizeof c->think)
        memcpy(c->think + c->n_think, s, n), c->n_think += n;
}

static void td_test_model(td_session *s, td_tokenizer *tok, const td_ref *ref)
{
    td_sampler *greedy;
    TD_CHECK(td_sampler_create(512, NULL, &greedy) == TD_OK);
    td_generator *g;
    TD_CHECK(td_generator_create(s, tok, greedy, &g) == TD_OK);
    td_gen_params p = {.max_tokens = ref->n_greedy};
    td_tokens out = {0};
    td_gen_stats st;
    td_collect col = {0};
    p.on_text = td_on_text;
    p.user = &col;
    TD_CHECKF(td_generate(g, ref->prompt, ref->n_prompt, &p, &out, &st) == TD_OK, "%s", td_errmsg());
    bool same = out.n == ref->n_greedy && memcmp(out.ids, ref->greedy, (size_t)out.n * 4) == 0;
    TD_CHECKF(same, "greedy generation differs from the reference continuation");
    TD_CHECK(st.prompt_tokens == ref->n_prompt && st.reused_tokens == 0 && st.gen_tokens == ref->n_greedy);
    TD_CHECK(st.steps == ref->n_greedy && st.tokens_per_step == 1.0 && isnan(st.mtp_acceptance));
    TD_CHECK(st.stop == TD_GEN_STOP_MAX_TOKENS && st.prompt_tok_s > 0 && st.decode_tok_s > 0);
    TD_CHECK(st.ctx_used == ref->n_prompt + ref->n_greedy && st.ctx_size == td_session_ctx(s));
    size_t len;
    const char *text = td_generator_text(g, &len);
    TD_CHECK(col.n == len && memcmp(col.text, text, len) == 0);
    char *full = td_strdup(text);

    /* again: the cache holds the prompt, so only its last token runs, and the answer is the same */
    td_tokens again = {0};
    TD_CHECK(td_generate(g, ref->prompt, ref->n_prompt, &p, &again, &st) == TD_OK);
    TD_CHECK(again.n == out.n && memcmp(again.ids, out.ids, (size_t)out.n * 4) == 0);
    TD_CHECK(st.reused_tokens == ref->n_prompt - 1 && st.prompt_tokens == 1);
    /* a prompt that shares only a prefix reuses just that */
    int32_t other[64];
    memcpy(other, ref->prompt, (size_t)ref->n_prompt * 4);
    other[20] = (other[20] + 1) % 512;
    td_tokens_free(&again);
    TD_CHECK(td_generate(g, other, ref->n_prompt, &p, &again, &st) == TD_OK && st.reused_tokens == 20);
    td_generator_reset(g);
    td_tokens_free(&again);
    TD_CHECK(td_generate(g, ref->prompt, ref->n_prompt, &p, &again, &st) == TD_OK && st.reused_tokens == 0);
    TD_CHECK(again.n == out.n && memcmp(again.ids, out.ids, (size_t)out.n * 4) == 0);
    td_tokens_free(&again);

    /* a stop string cuts the text where it first appears */
    if (len > 4) {
        char stop[8];
        size_t at = len / 2;
        while (at < len && ((unsigned char)full[at] & 0xC0) == 0x80) at++;
        snprintf(stop, sizeof stop, "%.*s", (int)(len - at < 3 ? len - at : 3), full + at);
        const char *stops[] = {stop};
        size_t first = (size_t)(strstr(full, stop) - full);
        td_gen_params ps = p;
        ps.stop = stops;
        ps.n_stop = 1;
        col = (td_collect){0};
        TD_CHECK(td_generate(g, ref->prompt, ref->n_prompt, &ps, NULL, &st) == TD_OK);
        text = td_generator_text(g, &len);
        TD_CHECKF(st.stop == TD_GEN_STOP_STRING && len == first && memcmp(text, full, first) == 0,
                  "stop '%s': stop %s, %zu bytes, want %zu", stop, td_gen_stop_name(st.stop), len, first);
        TD_CHECK(col.n == len);
    }
    td_free(full);

    /* cancelled before it starts */
    volatile sig_atomic_t cancel = 1;
    td_gen_params pc = p;
    pc.cancel = &cancel;
    TD_CHECK(td_generate(g, ref->prompt, ref->n_prompt, &pc, NULL, &st) == TD_OK && st.stop == TD_GEN_STOP_CANCELLED &&
             st.gen_tokens == 0);

    /* seeded sampling repeats itself */
    td_sampler_params sp = {.temperature = 1.0, .top_p = 0.95, .seed = 77};
    td_sampler *s1;
    TD_CHECK(td_sampler_create(512, &sp, &s1) == TD_OK);
    td_generator *g1;
    TD_CHECK(td_generator_create(s, tok, s1, &g1) == TD_OK);
    td_tokens a = {0}, b = {0};
    TD_CHECK(td_generate(g1, ref->prompt, ref->n_prompt, &p, &a, NULL) == TD_OK);
    td_sampler_reseed(s1, 77);
    TD_CHECK(td_generate(g1, ref->prompt, ref->n_prompt, &p, &b, NULL) == TD_OK);
    TD_CHECK(a.n == b.n && memcmp(a.ids, b.ids, (size_t)a.n * 4) == 0);
    td_tokens_free(&a);
    td_tokens_free(&b);
    td_generator_free(g1);
    td_sampler_free(s1);

    /* bad input */
    TD_CHECK(td_generate(g, ref->prompt, 0, &p, NULL, &st) == TD_E_ARG);
    td_gen_params pm = {.max_tokens = -1};
    TD_CHECK(td_generate(g, ref->prompt, 3, &pm, NULL, &st) == TD_E_ARG);
    int32_t bad_id[2] = {5, 4000};
    TD_CHECK(td_generate(g, bad_id, 2, &p, NULL, &st) == TD_E_ARG && strstr(td_errmsg(), "4000"));
    td_tokenizer *big = td_make_tokenizer(1000, -1);
    td_generator *gb = NULL;
    TD_CHECK(td_generator_create(s, big, greedy, &gb) == TD_E_FORMAT && !gb);
    td_tokenizer_free(big);

    td_tokens_free(&out);
    td_generator_free(g);
    td_sampler_free(greedy);
}

/* The context filling up ends generation cleanly. */
static void td_test_context_full(td_engine *e, td_tokenizer *tok, const td_ref *ref)
{
    td_session *s;
    td_session_params sp = {.n_ctx = ref->n_prompt + 3};
    TD_CHECK(td_session_create(e, &sp, &s) == TD_OK);
    td_sampler *greedy;
    td_sampler_create(512, NULL, &greedy);
    td_generator *g;
    TD_CHECK(td_generator_create(s, tok, greedy, &g) == TD_OK);
    td_gen_params p = {0};
    td_gen_stats st;
    TD_CHECK(td_generate(g, ref->prompt, ref->n_prompt, &p, NULL, &st) == TD_OK);
    /* positions T..T+2 take three generated tokens; a fourth is chosen from the last logits */
    TD_CHECK(st.stop == TD_GEN_STOP_CONTEXT && st.gen_tokens == 4 && st.ctx_used == ref->n_prompt + 4);
    int32_t longp[64] = {0};
    TD_CHECK(td_generate(g, longp, ref->n_prompt + 4, &p, NULL, &st) == TD_E_ARG);
    td_generator_free(g);
    td_sampler_free(greedy);
    td_session_free(s);
}

/* A scripted step: plays back fixed tokens, several per step, following the pending-token contract. */
typedef struct td_script {
    const int32_t *tokens;
    int n, at, per_step;
} td_script;

static td_status td_script_step(td_generator *g, void *ctx, int32_t *out, int *n, int max_out)
{
    td_script *sc = ctx;
    TD_TRY(td_generator_flush_pending(g));
    int k = 0;
    while (k < sc->per_step && k < max_out && sc->at < sc->n) out[k++] = sc->tokens[sc->at++];
    if (k == 0) out[k++] = 'x';
    *n = k;
    td_generator_count_drafts(g, k - 1, k - 1);
    td_generator_count_drafts(g, 1, 0);
    return td_generator_set_pending(g, out, k);
}

static void td_test_scripted(td_session *s, td_tokenizer *tok)
{
    td_sampler *greedy;
    td_sampler_create(512, NULL, &greedy);
    td_generator *g;
    TD_CHECK(td_generator_create(s, tok, greedy, &g) == TD_OK);
    /* "<think>hmm</think>Ok é🙂" then EOS; é and 🙂 arrive one byte at a time */
    int32_t script[] = {T_THINK, 'h',  'm',  'm',  T_UNTHINK, 'O',  'k',   ' ',
                        0xC3,    0xA9, 0xF0, 0x9F, 0x99,      0x82, T_EOS, 'z'};
    td_script sc = {script, (int)(sizeof script / sizeof script[0]), 0, 3};
    td_generator_set_step(g, td_script_step, &sc);
    td_collect col = {0};
    td_gen_params p = {.on_text = td_on_text, .user = &col};
    td_gen_stats st;
    int32_t prompt[3] = {1, 2, 3};
    td_tokens out = {0};
    TD_CHECK(td_generate(g, prompt, 3, &p, &out, &st) == TD_OK);
    size_t len;
    const char *text = td_generator_text(g, &len);
    TD_CHECKF(strcmp(text, "<think>hmm</think>Ok \xc3\xa9\xf0\x9f\x99\x82") == 0, "text '%s'", text);
    TD_CHECK(col.pieces[TD_PIECE_THINK_OPEN] == 1 && col.pieces[TD_PIECE_THINK_CLOSE] == 1);
    TD_CHECK(col.n_think == 3 && memcmp(col.think, "hmm", 3) == 0);
    TD_CHECK(st.stop == TD_GEN_STOP_EOS && st.gen_tokens == 15 && out.n == 15 && st.steps == 5);
    TD_CHECK(fabs(st.tokens_per_step - 3.0) < 1e-12);
    TD_CHECK(fabs(st.mtp_acceptance - 10.0 / 15.0) < 1e-12); /* 2 of 3 accepted per step, per the script */

    /* starting inside the reasoning (R1's prompt ends with <think>\n), with a stop string across tokens */
    sc.at = 1;
    sc.per_step = 1;
    col = (td_collect){0};
    const char *stops[] = {"k \xc3\xa9"};
    td_gen_params p2 = {.on_text = td_on_text, .user = &col, .starts_thinking = true, .stop = stops, .n_stop = 1};
    TD_CHECK(td_generate(g, prompt, 3, &p2, NULL, &st) == TD_OK);
    text = td_generator_text(g, &len);
    TD_CHECKF(strcmp(text, "hmm</think>O") == 0 && st.stop == TD_GEN_STOP_STRING, "text '%s'", text);
    TD_CHECK(col.n_think == 3 && col.pieces[TD_PIECE_THINK_OPEN] == 0);
    td_tokens_free(&out);
    td_generator_free(g);
    td_sampler_free(greedy);
}

/* Special tokens are hidden unless show_special asks for them. */
static void td_test_show_special(td_session *s, td_tokenizer *tok)
{
    td_sampler *greedy;
    td_sampler_create(512, NULL, &greedy);
    td_generator *g;
    TD_CHECK(td_generator_create(s, tok, greedy, &g) == TD_OK);
    int32_t script[] = {'a', T_EOS, 'b'}, prompt[2] = {1, 2};
    for (int show = 0; show < 2; show++) {
        td_script sc = {script, 3, 0, 1};
        td_generator_set_step(g, td_script_step, &sc);
        td_gen_params p = {.max_tokens = 3, .show_special = show};
        TD_CHECK(td_generate(g, prompt, 2, &p, NULL, NULL) == TD_OK);
        const char *text = td_generator_text(g, NULL);
        TD_CHECKF(strcmp(text, show ? "a<eos>b" : "ab") == 0, "show_special %d: '%s'", show, text);
    }
    td_generator_free(g);
    td_sampler_free(greedy);
}

int main(void)
{
    const char *dir = td_test_fixture("safetensors/tiny-dsv3-bf16");
    char model_path[4096], ref_path[4200];
    snprintf(model_path, sizeof model_path, "%s", dir);
    snprintf(ref_path, sizeof ref_path, "%s/reference.safetensors", model_path);
    td_model *m = NULL;
    td_model_params mp = {.quiet = true};
    if (td_model_open(model_path, &mp, &m) != TD_OK) return td_test_skip("the bf16 fixture is missing (TANDEM_SHARED)");
    td_ref ref;
    TD_CHECK(td_ref_open(ref_path, &ref));
    td_engine *e;
    td_engine_params ep = {.kernels = TD_KERNELS_REF, .n_threads = 1};
    TD_CHECK(td_engine_open(m, &ep, &e) == TD_OK);
    td_session *s;
    td_session_params sp = {.n_ctx = 256};
    TD_CHECK(td_session_create(e, &sp, &s) == TD_OK);
    td_tokenizer *tok = td_make_tokenizer(512, -1);
    td_tokenizer *tok_eos = td_make_tokenizer(512, T_EOS);
    TD_CHECK(tok && tok_eos && ref.n_prompt <= 64);
    if (tok && tok_eos && ref.n_prompt <= 64) {
        td_test_model(s, tok, &ref);
        td_test_context_full(e, tok, &ref);
        td_test_scripted(s, tok_eos);
        td_test_show_special(s, tok);
    }
    td_tokenizer_free(tok);
    td_tokenizer_free(tok_eos);
    td_session_free(s);
    td_engine_close(e);
    td_tensor_dir_free(ref.dir);
    td_model_close(m);
    return td_test_finish();
}
