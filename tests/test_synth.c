/* td_synth: the hyperparameters of the configs (V3, V2-Lite, Kimi-K2) trimmed to N layers; the values drawn
 * (embedding unit rms, projections at initializer_range, norms near 1, every block finite); the in-memory
 * build holding the same bytes as the file and the file the same bytes for any thread count; and the
 * generated tokenizer (exactly vocab_size tokens, BOS/EOS where the config puts them, text round trips). */
#include "td_test.h"

#include "td_alloc.h"
#include "td_dequant.h"
#include "td_synth.h"
#include "td_tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *data_path(const char *name)
{
    static char buf[4096];
    const char *src = getenv("TANDEM_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/tests/data/%s", src ? src : ".", name);
    return buf;
}

static const char *tmp_file(const char *name)
{
    static char buf[2][4096];
    static int k;
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s/%s", td_test_tmpdir(), name);
    return buf[k];
}

static void test_hparams(void)
{
    td_hparams hp;
    double std;
    td_synth_params p = {.config = td_test_fixture("real/deepseek-v3-config.json"), .layers = 5};
    TD_CHECKF(td_synth_hparams(&p, &hp, &std) == TD_OK, "%s", td_errmsg());
    TD_CHECK(hp.n_layers == 5 && hp.first_k_dense_replace == 3 && hp.n_nextn_layers == 0 && !hp.quant.present);
    TD_CHECK(std == 0.02);
    p.keep_mtp = true;
    p.layers = 2;
    p.init_std = 0.006;
    TD_CHECK(td_synth_hparams(&p, &hp, &std) == TD_OK && hp.n_layers == 2 && hp.first_k_dense_replace == 2 &&
             hp.n_nextn_layers == 1 && std == 0.006);
    p.layers = 62;
    TD_CHECK(td_synth_hparams(&p, &hp, &std) == TD_E_ARG && strstr(td_errmsg(), "1..61"));

    /* the published V2-Lite and Kimi-K2 configs, as transcribed into tests/data */
    td_synth_params v2 = {.config = data_path("deepseek-v2-lite-config.json")};
    TD_CHECKF(td_synth_hparams(&v2, &hp, &std) == TD_OK, "%s", td_errmsg());
    TD_CHECK(hp.n_layers == 27 && hp.first_k_dense_replace == 1 && hp.n_routed_experts == 64 &&
             hp.n_experts_per_tok == 6 && hp.n_shared_experts == 2 && hp.q_lora_rank == 0 &&
             hp.scoring == TD_SCORING_SOFTMAX && hp.topk_method == TD_TOPK_GREEDY && !hp.norm_topk_prob &&
             hp.rope.yarn && hp.rope.factor == 40 && hp.vocab_size == 102400);
    v2.keep_mtp = true;
    TD_CHECK(td_synth_hparams(&v2, &hp, &std) == TD_E_NOT_FOUND && strstr(td_errmsg(), "no MTP block"));
    td_synth_params kimi = {.config = data_path("kimi-k2-config.json"), .layers = 4};
    TD_CHECKF(td_synth_hparams(&kimi, &hp, &std) == TD_OK, "%s", td_errmsg());
    TD_CHECK(hp.n_layers == 4 && hp.first_k_dense_replace == 1 && hp.n_routed_experts == 384 && hp.n_group == 1 &&
             hp.topk_method == TD_TOPK_NOAUX_TC && hp.scoring == TD_SCORING_SIGMOID && hp.n_heads == 64 &&
             hp.routed_scaling_factor == 2.827 && hp.rope_theta == 50000 && hp.vocab_size == 163840);

    /* sizes: every MoE layer of V3 adds the same bytes */
    uint64_t s3, s4, s5;
    p = (td_synth_params){.config = td_test_fixture("real/deepseek-v3-config.json"), .type = TD_CONVERT_Q4_K_M};
    p.layers = 3;
    TD_CHECK(td_synth_size(&p, &s3) == TD_OK);
    p.layers = 4;
    TD_CHECK(td_synth_size(&p, &s4) == TD_OK);
    p.layers = 5;
    TD_CHECK(td_synth_size(&p, &s5) == TD_OK);
    TD_CHECKF(s5 - s4 == s4 - s3 && s4 - s3 > (6ull << 30), "%llu %llu %llu", (unsigned long long)s3,
              (unsigned long long)s4, (unsigned long long)s5);
}

/* Mean and rms of a matrix's values, from every row. */
static void matrix_stats(const td_matrix *m, double *mean, double *rms, bool *finite)
{
    float *row = td_malloc((size_t)m->cols * sizeof *row);
    double s = 0, s2 = 0;
    for (int64_t r = 0; row && r < m->rows; r++) {
        td_matrix_dequant_row(m, r, row);
        for (int64_t c = 0; c < m->cols; c++) {
            *finite &= isfinite(row[c]) != 0;
            s += row[c];
            s2 += (double)row[c] * row[c];
        }
    }
    double n = (double)(m->rows * m->cols);
    *mean = s / n;
    *rms = sqrt(s2 / n);
    td_free(row);
}

static void test_values(const td_model *m)
{
    bool finite = true;
    double mean, rms;
    matrix_stats(&m->embed, &mean, &rms, &finite);
    TD_CHECKF(fabs(mean) < 0.01 && fabs(rms - 1) < 0.05, "embedding mean %g rms %g", mean, rms);
    matrix_stats(&m->layers[0].attn.o, &mean, &rms, &finite);
    TD_CHECKF(fabs(mean) < 0.001 && fabs(rms - 0.02) < 0.002, "o_proj mean %g rms %g", mean, rms);
    const td_moe_weights *moe = &m->layers[1].moe;
    matrix_stats(&moe->experts[7].down, &mean, &rms, &finite);
    TD_CHECKF(fabs(rms - 0.02) < 0.002, "expert 7 down rms %g", rms);
    matrix_stats(&moe->router, &mean, &rms, &finite);
    TD_CHECKF(fabs(rms - 0.02) < 0.002, "router rms %g", rms);
    TD_CHECK(finite);
    double ns = 0, ns2 = 0;
    int64_t H = m->hp.hidden_size;
    for (int64_t i = 0; i < H; i++) {
        ns += m->layers[1].ffn_norm[i];
        ns2 += (m->layers[1].ffn_norm[i] - 1.0) * (m->layers[1].ffn_norm[i] - 1.0);
    }
    TD_CHECKF(fabs(ns / H - 1) < 0.01 && sqrt(ns2 / H) < 0.03, "norm mean %g", ns / H);
    TD_CHECK(moe->bias != NULL);
    for (int e = 0; moe->bias && e < m->hp.n_routed_experts; e++) TD_CHECK(isfinite(moe->bias[e]) && fabsf(moe->bias[e]) < 0.1f);
    /* the types convert's q4_k_m recipe gives (rows of 64 or 128 fall back from the K-quants) */
    TD_CHECK(m->layers[0].attn.kv_a.type == TD_TYPE_Q4_K && moe->experts[0].gate.type == TD_TYPE_Q4_K &&
             moe->experts[0].down.type == TD_TYPE_Q8_0 && m->layers[0].attn.o.type == TD_TYPE_Q5_0 &&
             m->head.type == TD_TYPE_Q6_K && moe->router.type == TD_TYPE_F32);
}

static void test_tokenizer(const td_model *m)
{
    td_tokenizer *tok;
    TD_CHECKF(td_tokenizer_for_model(m, &tok) == TD_OK, "%s", td_errmsg());
    if (!tok) return;
    TD_CHECK(td_tokenizer_n_tokens(tok) == m->hp.vocab_size);
    TD_CHECK(td_tokenizer_bos(tok) == 0 && td_tokenizer_eos(tok) == 1); /* the config's ids */
    const char *text = "hello world, the quick brown fox: 3.14 \xc3\xa9t\xc3\xa9";
    td_tokens ids = {0};
    TD_CHECK(td_tokenizer_encode(tok, text, strlen(text), false, &ids) == TD_OK);
    TD_CHECKF(ids.n > 0 && ids.n < (int64_t)strlen(text), "%lld tokens: merges should join letters", (long long)ids.n);
    char *back = NULL;
    size_t back_len = 0;
    TD_CHECK(td_tokenizer_decode(tok, ids.ids, ids.n, false, &back, &back_len) == TD_OK && back && strcmp(back, text) == 0);
    td_free(back);
    td_tokens_free(&ids);
    td_tokenizer_free(tok);
}

/* Same bytes: the memfd build against the file, tensor by tensor; the file for 1 and 3 threads. */
static void test_same_bytes(const td_synth_params *p, const td_model *mem)
{
    td_synth_params q = *p;
    q.threads = 1;
    const char *one = tmp_file("t1.gguf"), *three = tmp_file("t3.gguf");
    TD_CHECKF(td_synth_write(&q, one) == TD_OK, "%s", td_errmsg());
    q.threads = 3;
    TD_CHECKF(td_synth_write(&q, three) == TD_OK, "%s", td_errmsg());
    char *a = NULL, *b = NULL;
    uint64_t na = 0, nb = 0;
    TD_CHECK(td_read_text_file(one, 1ull << 30, &a, &na) == TD_OK && td_read_text_file(three, 1ull << 30, &b, &nb) == TD_OK);
    TD_CHECK(a && b && na == nb && memcmp(a, b, (size_t)na) == 0);
    td_free(a);
    td_free(b);
    td_model *file;
    td_model_params mp = {.quiet = true};
    TD_CHECKF(td_model_open(one, &mp, &file) == TD_OK, "%s", td_errmsg());
    if (file) {
        size_t n = td_tensor_dir_count(file->dir), same = 0;
        TD_CHECK(n == td_tensor_dir_count(mem->dir));
        for (size_t i = 0; i < n; i++) {
            const td_tensor *t = td_tensor_dir_at(file->dir, i), *u = td_tensor_dir_find(mem->dir, t->name);
            same += u && u->nbytes == t->nbytes && memcmp(u->data, t->data, (size_t)t->nbytes) == 0;
        }
        TD_CHECKF(same == n, "%zu of %zu tensors hold the same bytes in memory and in the file", same, n);
        td_model_close(file);
    }
    unlink(one);
    unlink(three);
}

/* BOS/EOS where the config puts them, the rest of the vocabulary around them. */
static void test_special_ids(void)
{
    char *cfg;
    uint64_t len;
    if (td_read_text_file(td_test_fixture("safetensors/tiny-dsv3-bf16/config.json"), 1 << 20, &cfg, &len) != TD_OK)
        return;
    char *bos = strstr(cfg, "\"bos_token_id\": 0"), *eos = strstr(cfg, "\"eos_token_id\": 1");
    TD_CHECK(bos && eos);
    if (bos && eos) {
        memcpy(bos, "\"bos_token_id\":30", 17); /* same length, so the rest stays put */
        memcpy(eos, "\"eos_token_id\":31", 17);
    }
    const char *path = tmp_file("ids.json");
    TD_CHECK(td_test_write_file(path, cfg, (size_t)len));
    td_free(cfg);
    td_synth_params p = {.config = path, .type = TD_CONVERT_Q8_0};
    td_model *m;
    td_model_params mp = {.quiet = true};
    TD_CHECKF(td_synth_open(&p, &mp, &m) == TD_OK, "%s", td_errmsg());
    td_tokenizer *tok = NULL;
    if (m && td_tokenizer_for_model(m, &tok) == TD_OK) {
        TD_CHECK(td_tokenizer_bos(tok) == 30 && td_tokenizer_eos(tok) == 31 && td_tokenizer_n_tokens(tok) == 512);
        size_t n;
        const char *t0 = td_tokenizer_token_bytes(tok, 0, &n), *t32 = td_tokenizer_token_bytes(tok, 32, &n);
        TD_CHECK(t0 && t0[0] == 0 && t32 && t32[0] == 30); /* the bytes take the free ids around BOS and EOS */
        td_tokenizer_free(tok);
    }
    td_model_close(m);
    unlink(path);
}

int main(void)
{
    if (access(td_test_fixture("real/deepseek-v3-config.json"), R_OK) != 0) return td_test_skip("no fixtures");
    test_hparams();
    td_synth_params p = {.config = td_test_fixture("safetensors/tiny-dsv3-bf16/config.json"),
                         .type = TD_CONVERT_Q4_K_M, .seed = 7, .keep_mtp = true};
    td_model *m = NULL;
    td_model_params mp = {.quiet = true};
    TD_CHECKF(td_synth_open(&p, &mp, &m) == TD_OK, "%s", td_errmsg());
    if (m) {
        TD_CHECK(m->hp.n_layers == 3 && m->mtp != NULL && strcmp(m->format, "gguf") == 0);
        test_values(m);
        test_tokenizer(m);
        test_same_bytes(&p, m);
        td_model_close(m);
    }
    test_special_ids();
    rmdir(td_test_tmpdir());
    return td_test_finish();
}
