/* tandem convert, checked through the two loaders: a converted fixture opens with the same module tree
 * (names, kinds, layers) and hyperparameters as its source, and every weight of it equals the source's
 * (BF16 from BF16) or lies within the bound of the type it was stored in (td_quantize.h), the MLA split of
 * kv_b into k_b/v_b included. Also: the tokenizer written from tokenizer.json equals the one the fixture
 * generator embedded, GGUF -> GGUF, split output, --keep-mtp and --mtp-from, the chat template and file
 * type every file carries, and refusals (a source without a tokenizer among them). */
#include "td_test.h"

#include "td_chat_template.h"
#include "td_dequant.h"
#include "td_gguf_convert.h"
#include "td_gguf_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *tmp(const char *name)
{
    static char buf[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", td_test_tmpdir(), name);
    return buf[k];
}

/* The HF fixtures have no tokenizer: they are converted without one, on purpose. */
static td_status convert(const char *from, const char *to, td_convert_mode mode, bool keep_mtp, int parts)
{
    td_convert_params p = {.mode = mode,
                           .keep_mtp = keep_mtp,
                           .parts = parts,
                           .no_tokenizer = td_path_is_dir(from),
                           .model = {.quiet = true}};
    td_status st = td_gguf_convert(from, to, &p);
    TD_CHECKF(st == TD_OK, "convert %s -> %s: %s", from, to, td_errmsg());
    return st;
}

static td_model *open_model(const char *path, const char *mtp_from)
{
    td_model_params p = {.quiet = true, .mtp_from = mtp_from};
    td_model *m = NULL;
    td_status st = td_model_open(path, &p, &m);
    TD_CHECKF(st == TD_OK, "open %s: %s", path, td_errmsg());
    return m;
}

/* ------------------------------------------------------------------ comparisons */

static void same_tree(const td_model *a, const td_model *b)
{
    TD_CHECKF(a->n_modules == b->n_modules, "%d vs %d modules", a->n_modules, b->n_modules);
    for (int i = 0; i < a->n_modules && i < b->n_modules; i++)
        TD_CHECKF(strcmp(a->modules[i].name, b->modules[i].name) == 0 && a->modules[i].kind == b->modules[i].kind &&
                      a->modules[i].layer == b->modules[i].layer,
                  "module %d: %s (%s, layer %d) vs %s (%s, layer %d)", i, a->modules[i].name,
                  td_module_kind_name(a->modules[i].kind), a->modules[i].layer, b->modules[i].name,
                  td_module_kind_name(b->modules[i].kind), b->modules[i].layer);
    const td_hparams *x = &a->hp, *y = &b->hp;
    TD_CHECK(x->n_layers == y->n_layers && x->hidden_size == y->hidden_size && x->vocab_size == y->vocab_size);
    TD_CHECK(x->n_routed_experts == y->n_routed_experts && x->n_group == y->n_group && x->topk_group == y->topk_group);
    TD_CHECK(x->kv_lora_rank == y->kv_lora_rank && x->q_lora_rank == y->q_lora_rank && x->v_head_dim == y->v_head_dim);
    TD_CHECK(x->n_nextn_layers == y->n_nextn_layers && (a->mtp != NULL) == (b->mtp != NULL));
}

/* The bound on |stored - source| per element, as a fraction of the largest |source| in the row: half a
 * step of a scale that is at most one stored unit above what the row's range needs (td_quantize.h). */
static double bound_factor(td_type t)
{
    switch (t) {
    case TD_TYPE_F32: return 0;
    case TD_TYPE_BF16: return 0x1p-8;
    case TD_TYPE_Q8_0: return (1.0 / 254) * (1 + 0x1p-9);
    case TD_TYPE_Q5_0: return (1.0 / 30) * (1 + 0x1p-9);
    case TD_TYPE_Q6_K: return 1.0 / 62 + 1.0 / (31 * 127); /* group step <= amax_g/31 + one unit of d */
    case TD_TYPE_Q4_K: return (2 + 1.0 / 63) * (1.0 / 30 + 1.0 / 945); /* range <= 2 amax + a min step */
    default: return INFINITY;
    }
}

typedef struct cmp {
    const char *what;
    bool exact;  /* BF16 from BF16: equal */
    int bad;
    double worst; /* largest error as a fraction of its bound */
} cmp;

static void cmp_row(cmp *c, const float *ref, const float *got, int64_t n, td_type t)
{
    double amax = 0;
    for (int64_t i = 0; i < n; i++) amax = fmax(amax, fabs(ref[i]));
    double bound = c->exact ? 0 : bound_factor(t) * amax + 1e-30;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)ref[i] - got[i]);
        if (e > bound && c->bad++ < 2)
            TD_CHECKF(false, "%s (%s): %.9g stored as %.9g, bound %.3g", c->what, td_type_name(t), ref[i], got[i],
                      bound);
        if (bound > 0) c->worst = fmax(c->worst, e / bound);
    }
}

static void cmp_matrix(const td_matrix *ref, const td_matrix *got, bool exact, const char *what)
{
    TD_CHECKF(ref->rows == got->rows && ref->cols == got->cols, "%s: shapes differ", what);
    if (ref->rows != got->rows || ref->cols != got->cols) return;
    cmp c = {.what = what, .exact = exact};
    float *a = malloc((size_t)ref->cols * 4), *b = malloc((size_t)ref->cols * 4);
    for (int64_t r = 0; r < ref->rows; r++) {
        td_matrix_dequant_row(ref, r, a);
        td_matrix_dequant_row(got, r, b);
        cmp_row(&c, a, b, ref->cols, got->type);
    }
    free(a);
    free(b);
}

static void cmp_vector(const float *a, const float *b, int64_t n, const char *what)
{
    TD_CHECKF(memcmp(a, b, (size_t)n * 4) == 0, "%s differs", what);
}

/* kv_b [nh*(dn+dv), R] against k_b [nh*R, dn] (W_UK transposed per head) and v_b [nh*dv, R]. */
static void cmp_kv_b(const td_hparams *hp, const td_attn_weights *ref, const td_attn_weights *got, bool exact)
{
    int64_t nh = hp->n_heads, R = hp->kv_lora_rank, dn = hp->qk_nope_head_dim, dv = hp->v_head_dim;
    if (!ref->split_kv_b && !got->split_kv_b) {
        cmp_matrix(&ref->kv_b, &got->kv_b, exact, "kv_b");
        return;
    }
    if (ref->split_kv_b) {
        cmp_matrix(&ref->k_b, &got->k_b, exact, "k_b");
        cmp_matrix(&ref->v_b, &got->v_b, exact, "v_b");
        return;
    }
    TD_CHECK(got->split_kv_b);
    float *blk = malloc((size_t)((dn + dv) * R) * 4), *col = malloc((size_t)R * 4), *row = malloc((size_t)R * 4);
    cmp kc = {.what = "k_b from kv_b", .exact = exact}, vc = {.what = "v_b from kv_b", .exact = exact};
    for (int64_t h = 0; h < nh; h++) {
        for (int64_t k = 0; k < dn + dv; k++) td_matrix_dequant_row(&ref->kv_b, h * (dn + dv) + k, blk + k * R);
        for (int64_t i = 0; i < R; i++) {
            td_matrix_dequant_row(&got->k_b, h * R + i, row);
            for (int64_t j = 0; j < dn; j++) col[j] = blk[j * R + i];
            cmp_row(&kc, col, row, dn, got->k_b.type);
        }
        for (int64_t j = 0; j < dv; j++) {
            td_matrix_dequant_row(&got->v_b, h * dv + j, row);
            cmp_row(&vc, blk + (dn + j) * R, row, R, got->v_b.type);
        }
    }
    free(blk);
    free(col);
    free(row);
}

static void cmp_ffn(const td_ffn_weights *a, const td_ffn_weights *b, bool exact, const char *what)
{
    char w[96];
    snprintf(w, sizeof w, "%s gate", what);
    cmp_matrix(&a->gate, &b->gate, exact, w);
    snprintf(w, sizeof w, "%s up", what);
    cmp_matrix(&a->up, &b->up, exact, w);
    snprintf(w, sizeof w, "%s down", what);
    cmp_matrix(&a->down, &b->down, exact, w);
}

static void cmp_layer(const td_hparams *hp, const td_layer_weights *a, const td_layer_weights *b, bool exact)
{
    int64_t H = hp->hidden_size;
    char w[96];
    snprintf(w, sizeof w, "layer %d", a->index);
    cmp_vector(a->attn.norm, b->attn.norm, H, w);
    cmp_vector(a->ffn_norm, b->ffn_norm, H, w);
    cmp_vector(a->attn.kv_a_norm, b->attn.kv_a_norm, hp->kv_lora_rank, w);
    if (hp->q_lora_rank) {
        cmp_matrix(&a->attn.q_a, &b->attn.q_a, exact, "q_a");
        cmp_matrix(&a->attn.q_b, &b->attn.q_b, exact, "q_b");
        cmp_vector(a->attn.q_a_norm, b->attn.q_a_norm, hp->q_lora_rank, w);
    } else {
        cmp_matrix(&a->attn.q, &b->attn.q, exact, "q");
    }
    cmp_matrix(&a->attn.kv_a, &b->attn.kv_a, exact, "kv_a");
    cmp_kv_b(hp, &a->attn, &b->attn, exact);
    cmp_matrix(&a->attn.o, &b->attn.o, exact, "o");
    if (!a->is_moe) {
        cmp_ffn(&a->dense, &b->dense, exact, "dense");
        return;
    }
    cmp_matrix(&a->moe.router, &b->moe.router, true, "router"); /* stays F32 */
    if (a->moe.bias) cmp_vector(a->moe.bias, b->moe.bias, hp->n_routed_experts, "bias");
    for (int e = 0; e < hp->n_routed_experts; e++) cmp_ffn(&a->moe.experts[e], &b->moe.experts[e], exact, "expert");
    if (a->moe.has_shared) cmp_ffn(&a->moe.shared, &b->moe.shared, exact, "shared");
}

static void cmp_models(const td_model *a, const td_model *b, bool exact)
{
    const td_hparams *hp = &a->hp;
    same_tree(a, b);
    if (a->n_modules != b->n_modules) return;
    cmp_matrix(&a->embed, &b->embed, exact, "embed");
    cmp_matrix(&a->head, &b->head, exact, "head");
    cmp_vector(a->norm, b->norm, hp->hidden_size, "norm");
    for (int l = 0; l < hp->n_layers; l++) cmp_layer(hp, &a->layers[l], &b->layers[l], exact);
    if (a->mtp && b->mtp) {
        cmp_layer(hp, &a->mtp->layer, &b->mtp->layer, exact);
        cmp_matrix(&a->mtp->eh_proj, &b->mtp->eh_proj, exact, "eh_proj");
        cmp_vector(a->mtp->enorm, b->mtp->enorm, hp->hidden_size, "enorm");
        cmp_vector(a->mtp->hnorm, b->mtp->hnorm, hp->hidden_size, "hnorm");
        cmp_vector(a->mtp->head_norm, b->mtp->head_norm, hp->hidden_size, "head_norm");
    }
}

/* ------------------------------------------------------------------ cases */

static void test_hf_to_gguf(const char *fixture, td_convert_mode mode, bool exact)
{
    char from[600];
    snprintf(from, sizeof from, "%s", td_test_fixture(fixture));
    const char *to = tmp("out.gguf");
    if (convert(from, to, mode, true, 0) != TD_OK) return;
    td_model *a = open_model(from, NULL), *b = open_model(to, NULL);
    if (a && b) {
        TD_CHECK(b->layers[0].attn.split_kv_b && strcmp(b->format, "gguf") == 0);
        cmp_models(a, b, exact);
        /* the recipe: norms and router F32, every matrix a type whose block divides its rows */
        for (size_t i = 0; i < td_gguf_tensor_count(b->gguf); i++) {
            const td_gguf_tensor *t = td_gguf_tensor_at(b->gguf, i);
            td_type ty;
            TD_CHECK(td_gguf_tensor_type(b->gguf, t, &ty) == TD_OK);
            TD_CHECK(ty == td_convert_tensor_type(mode, t->name, t->n_dims, t->ne[0]));
            if (t->n_dims == 1 || strstr(t->name, "ffn_gate_inp")) TD_CHECK(ty == TD_TYPE_F32);
        }
    }
    td_model_close(a);
    td_model_close(b);
    unlink(to);
}

static void test_recipe(void)
{
    TD_CHECK(td_convert_tensor_type(TD_CONVERT_Q4_K_M, "output.weight", 2, 7168) == TD_TYPE_Q6_K);
    TD_CHECK(td_convert_tensor_type(TD_CONVERT_Q4_K_M, "blk.9.ffn_down_exps.weight", 3, 2048) == TD_TYPE_Q6_K);
    TD_CHECK(td_convert_tensor_type(TD_CONVERT_Q4_K_M, "blk.9.attn_v_b.weight", 3, 512) == TD_TYPE_Q6_K);
    TD_CHECK(td_convert_tensor_type(TD_CONVERT_Q4_K_M, "blk.9.ffn_up_exps.weight", 3, 7168) == TD_TYPE_Q4_K);
    /* DeepSeek-V3's attn_k_b rows are 128 long: no Q4_K block fits */
    TD_CHECK(td_convert_tensor_type(TD_CONVERT_Q4_K_M, "blk.9.attn_k_b.weight", 3, 128) == TD_TYPE_Q5_0);
    TD_CHECK(td_convert_tensor_type(TD_CONVERT_Q6_K, "blk.9.attn_k_b.weight", 3, 128) == TD_TYPE_Q8_0);
    TD_CHECK(td_convert_tensor_type(TD_CONVERT_Q8_0, "blk.0.attn_q_a.weight", 2, 100) == TD_TYPE_BF16);
    TD_CHECK(td_convert_tensor_type(TD_CONVERT_Q8_0, "blk.3.ffn_gate_inp.weight", 2, 7168) == TD_TYPE_F32);
    TD_CHECK(td_convert_tensor_type(TD_CONVERT_BF16, "blk.3.attn_norm.weight", 1, 7168) == TD_TYPE_F32);
}

/* GGUF -> GGUF: the legacy layout becomes MLA; same model within Q8_0; tokenizer keys carried over. */
static void test_gguf_to_gguf(void)
{
    char from[600];
    snprintf(from, sizeof from, "%s", td_test_fixture("gguf/tiny-dsv3-q8_0-legacy.gguf"));
    const char *to = tmp("legacy-mla.gguf");
    if (convert(from, to, TD_CONVERT_Q8_0, false, 0) != TD_OK) return;
    td_model *a = open_model(from, NULL), *b = open_model(to, NULL);
    if (a && b) {
        TD_CHECK(!a->layers[0].attn.split_kv_b && b->layers[0].attn.split_kv_b);
        cmp_models(a, b, false);
        /* Q8_0 rows that stay in their layout are copied, not requantized */
        TD_CHECK(memcmp(a->layers[0].attn.q_b.data, b->layers[0].attn.q_b.data,
                        (size_t)a->layers[0].attn.q_b.rows * a->layers[0].attn.q_b.row_bytes) == 0);
        for (size_t i = 0; i < td_gguf_kv_count(a->gguf); i++) {
            const td_gguf_kv *kv = td_gguf_kv_at(a->gguf, i), *kb;
            if (strncmp(kv->key, "tokenizer.", 10) != 0) continue;
            kb = td_gguf_find_kv(b->gguf, kv->key);
            TD_CHECKF(kb && kb->v.type == kv->v.type && kb->v.size == kv->v.size &&
                          memcmp(kb->v.data, kv->v.data, (size_t)kv->v.size) == 0,
                      "%s not carried over", kv->key);
        }
    }
    td_model_close(a);
    td_model_close(b);
    unlink(to);
}

/* The tokenizer written from tokenizer.json equals what the fixture generator embedded from it. */
static void test_tokenizer(void)
{
    char from[600], tok[600];
    snprintf(from, sizeof from, "%s", td_test_fixture("gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf"));
    snprintf(tok, sizeof tok, "%s", td_test_fixture("tokenizer/tokenizer.json"));
    const char *to = tmp("tok.gguf");
    td_convert_params p = {.mode = TD_CONVERT_Q4_K_M, .keep_mtp = true, .tokenizer = tok, .model = {.quiet = true}};
    td_status st = td_gguf_convert(from, to, &p);
    TD_CHECKF(st == TD_OK, "%s", td_errmsg());
    td_gguf *a, *b;
    if (st != TD_OK || td_gguf_open(from, &a) != TD_OK) return;
    if (td_gguf_open(to, &b) == TD_OK) {
        const char *keys[] = {"tokenizer.ggml.model",        "tokenizer.ggml.pre",          "tokenizer.ggml.tokens",
                              "tokenizer.ggml.token_type",   "tokenizer.ggml.merges",       "tokenizer.ggml.bos_token_id",
                              "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            const td_gguf_kv *x = td_gguf_find_kv(a, keys[k]), *y = td_gguf_find_kv(b, keys[k]);
            bool same = x && y && x->v.size == y->v.size && x->v.len == y->v.len &&
                        memcmp(x->v.data, y->v.data, (size_t)x->v.size) == 0;
            int64_t xi, yi; /* ids may be written with another integer width */
            if (x && y && !same && td_gguf_value_int(&x->v, &xi) && td_gguf_value_int(&y->v, &yi)) same = xi == yi;
            TD_CHECKF(same, "%s differs from the fixture's", keys[k]);
        }
        td_gguf_close(b);
    }
    td_gguf_close(a);
    unlink(to);
    /* a tokenizer with more tokens than the model's vocabulary is refused */
    snprintf(from, sizeof from, "%s", td_test_fixture("safetensors/tiny-dsv3-bf16"));
    st = td_gguf_convert(from, to, &p);
    TD_CHECKF(st == TD_E_FORMAT && strstr(td_errmsg(), "vocab_size"), "%s", td_errmsg());
    TD_CHECK(access(to, F_OK) != 0);
}

/* Broken tokenizer.json files are refused with a message that names the file and the problem. */
static void test_bad_tokenizers(void)
{
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"model\": ", "not valid JSON"},
        {"{}", "no model.vocab"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": {}}}", "Unigram"},
        {"{\"model\": {\"vocab\": {\"a\": 5000}, \"merges\": []}}", "vocab_size"},
        {"{\"model\": {\"vocab\": {\"a\": -1}, \"merges\": []}}", "token id"},
        {"{\"model\": {\"vocab\": {\"a\": 0}}}", "merges"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [[1, 2]]}}", "merge #0"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": 1}]}", "without content"},
    };
    char from[600];
    snprintf(from, sizeof from, "%s", td_test_fixture("gguf/tiny-dsv3-q8_0-legacy.gguf"));
    const char *tok = tmp("tokenizer.json"), *to = tmp("badtok.gguf");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        td_test_write_file(tok, cases[k].json, strlen(cases[k].json));
        td_convert_params p = {.mode = TD_CONVERT_Q8_0, .tokenizer = tok, .model = {.quiet = true}};
        td_status st = td_gguf_convert(from, to, &p);
        TD_CHECKF(st != TD_OK && strstr(td_errmsg(), cases[k].needle) && strstr(td_errmsg(), "tokenizer.json"),
                  "case %zu: %s", k, td_errmsg());
        TD_CHECK(access(to, F_OK) != 0);
    }
    unlink(tok);
}

/* Without --keep-mtp the block is dropped; --mtp-from attaches it again from the checkpoint. Split
 * output opens from any part with the same tree. */
static void test_mtp_and_split(void)
{
    char from[600];
    snprintf(from, sizeof from, "%s", td_test_fixture("safetensors/tiny-dsv3-bf16"));
    const char *stem = tmp("nomtp.gguf");
    if (convert(from, stem, TD_CONVERT_BF16, false, 3) != TD_OK) return;
    char part[700];
    td_gguf_split_path(stem, 3, 3, part, sizeof part);
    td_model *a = open_model(from, NULL), *b = open_model(part, NULL), *c = open_model(part, from);
    if (a && b && c) {
        TD_CHECK(b->mtp == NULL && b->hp.n_nextn_layers == 0 && td_tensor_dir_file_count(b->dir) == 3);
        TD_CHECK(c->mtp != NULL);
        cmp_models(a, c, true);
    }
    td_model_close(a);
    td_model_close(b);
    td_model_close(c);
    for (int i = 1; i <= 3; i++) {
        td_gguf_split_path(stem, i, 3, part, sizeof part);
        unlink(part);
    }
    td_convert_params p = {.mode = TD_CONVERT_Q8_0, .keep_mtp = true, .model = {.quiet = true}};
    snprintf(from, sizeof from, "%s", td_test_fixture("gguf/tiny-dsv3-q8_0-legacy.gguf"));
    TD_CHECK(td_gguf_convert(from, tmp("x.gguf"), &p) == TD_E_NOT_FOUND && strstr(td_errmsg(), "--mtp-from"));
    TD_CHECK(td_gguf_convert(from, from, &p) == TD_E_ARG);
}

/* An HF source without tokenizer.json is refused unless --no-tokenizer says so (llama.cpp cannot load
 * the file); every file gets general.file_type and a chat template. */
static void test_tokenizer_required(void)
{
    char from[600];
    snprintf(from, sizeof from, "%s", td_test_fixture("safetensors/tiny-dsv3-bf16"));
    const char *to = tmp("notok.gguf");
    td_convert_params p = {.mode = TD_CONVERT_Q4_K_M, .model = {.quiet = true}};
    td_status st = td_gguf_convert(from, to, &p);
    TD_CHECKF(st == TD_E_NOT_FOUND && strstr(td_errmsg(), "--tokenizer") && strstr(td_errmsg(), "--no-tokenizer") &&
                  strstr(td_errmsg(), "tokenizer.ggml.model"),
              "%s", td_errmsg());
    TD_CHECK(access(to, F_OK) != 0);
    p.no_tokenizer = true;
    p.tokenizer = "x.json";
    TD_CHECK(td_gguf_convert(from, to, &p) == TD_E_ARG && strstr(td_errmsg(), "contradict"));
    p.tokenizer = NULL;
    st = td_gguf_convert(from, to, &p);
    TD_CHECKF(st == TD_OK, "%s", td_errmsg());
    td_gguf *g;
    if (st != TD_OK || td_gguf_open(to, &g) != TD_OK) return;
    int64_t ft;
    const char *tmpl;
    size_t len;
    TD_CHECK(!td_gguf_find_kv(g, "tokenizer.ggml.model") && !td_gguf_find_kv(g, "tokenizer.ggml.tokens"));
    TD_CHECK(td_gguf_get_int(g, "general.file_type", &ft) == TD_OK && ft == 15);
    TD_CHECK(td_gguf_get_str(g, "tokenizer.chat_template", &tmpl, &len) == TD_OK && len > 0);
    td_gguf_close(g);
    unlink(to);
    /* a GGUF without tokenizer keys as the source: the same refusal */
    char from2[600];
    snprintf(from2, sizeof from2, "%s", tmp("notok-src.gguf"));
    if (convert(from, from2, TD_CONVERT_Q8_0, false, 0) != TD_OK) return;
    p.no_tokenizer = false;
    TD_CHECK(td_gguf_convert(from2, to, &p) == TD_E_NOT_FOUND && strstr(td_errmsg(), "--no-tokenizer"));
    TD_CHECK(access(to, F_OK) != 0);
    unlink(from2);
}

/* The chat template written: the source's when it has one, tandem's Jinja for --template, else for the
 * format the model's name suggests; td_template_detect() reads back the same format. */
static void test_chat_template(void)
{
    char from[600];
    snprintf(from, sizeof from, "%s", td_test_fixture("gguf/tiny-dsv3-q8_0-legacy.gguf"));
    const char *out = tmp("tmpl.gguf"), *again = tmp("tmpl2.gguf");
    static const struct {
        const char *name;
        td_template want;
    } cases[] = {{NULL, TD_TEMPLATE_DEEPSEEK_V3},
                 {"r1", TD_TEMPLATE_DEEPSEEK_R1},
                 {"v3.1", TD_TEMPLATE_DEEPSEEK_V31},
                 {"v3", TD_TEMPLATE_DEEPSEEK_V3}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        td_convert_params p = {.mode = TD_CONVERT_Q8_0, .chat_template = cases[k].name, .model = {.quiet = true}};
        td_status st = td_gguf_convert(from, out, &p);
        TD_CHECKF(st == TD_OK, "%s", td_errmsg());
        /* converting the result again keeps its template */
        p.chat_template = NULL;
        if (st == TD_OK) st = td_gguf_convert(out, again, &p);
        td_gguf *g;
        if (st != TD_OK || td_gguf_open(again, &g) != TD_OK) continue;
        char *tmpl = NULL;
        const char *s, *why;
        size_t len;
        if (td_gguf_get_str(g, "tokenizer.chat_template", &s, &len) == TD_OK && (tmpl = malloc(len + 1))) {
            memcpy(tmpl, s, len);
            tmpl[len] = '\0';
        }
        TD_CHECKF(tmpl && strcmp(tmpl, td_template_jinja(cases[k].want)) == 0, "case %zu: not tandem's %s template",
                  k, td_template_name(cases[k].want));
        TD_CHECK(tmpl && td_template_detect(tmpl, NULL, &why) == cases[k].want);
        free(tmpl);
        td_gguf_close(g);
    }
    td_convert_params p = {.mode = TD_CONVERT_Q8_0, .chat_template = "raw", .model = {.quiet = true}};
    TD_CHECK(td_gguf_convert(from, out, &p) == TD_E_ARG && strstr(td_errmsg(), "v3.1"));
    unlink(out);
    unlink(again);
}

int main(void)
{
    if (!td_path_exists(td_test_fixture("safetensors/tiny-dsv3-bf16"))) return td_test_skip("fixtures not found");
    test_recipe();
    test_hf_to_gguf("safetensors/tiny-dsv3-bf16", TD_CONVERT_BF16, true);
    test_hf_to_gguf("safetensors/tiny-dsv3-bf16", TD_CONVERT_Q8_0, false);
    test_hf_to_gguf("safetensors/tiny-dsv3-bf16", TD_CONVERT_Q4_K_M, false);
    test_hf_to_gguf("safetensors/tiny-dsv3-qdirect-bf16", TD_CONVERT_Q4_K, false);
    test_hf_to_gguf("safetensors/tiny-dsv3-qdirect-bf16", TD_CONVERT_Q6_K, false);
    test_hf_to_gguf("safetensors/tiny-dsv3-fp8", TD_CONVERT_BF16, false);
    test_gguf_to_gguf();
    test_tokenizer();
    test_bad_tokenizers();
    test_mtp_and_split();
    test_tokenizer_required();
    test_chat_template();
    rmdir(td_test_tmpdir());
    return td_test_finish();
}
