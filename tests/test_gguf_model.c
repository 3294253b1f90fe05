/* The deepseek2 mapping: hyperparameters from llama.cpp's metadata keys (synthetic headers built here,
 * so each rule is checked on its own), the name mapping both ways on the fixtures' real names, and
 * the fixtures opened as models with the same tree shape as their metadata promises. */
#include "td_test.h"

#include "td_gguf_model.h"
#include "td_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ a header builder */

typedef struct kv {
    const char *key;
    int type; /* 4 u32, 6 f32, 7 bool, 8 string */
    double num;
    const char *str;
} kv;

typedef td_test_bytes buf;

static void put(buf *b, const void *d, size_t n) { td_test_bytes_put(b, d, n); }

static void put_str(buf *b, const char *s)
{
    uint64_t n = strlen(s);
    put(b, &n, 8);
    put(b, s, n);
}

/* DeepSeek-V3's real hyperparameters as llama.cpp writes them (MLA layout), minus `drop`, plus `extra`. */
static buf make_header(const kv *extra, size_t n_extra, const char *const *drop, size_t n_drop)
{
    static const kv base[] = {
        {"general.architecture", 8, 0, "deepseek2"},
        {"deepseek2.block_count", 4, 62, NULL},
        {"deepseek2.nextn_predict_layers", 4, 1, NULL},
        {"deepseek2.context_length", 4, 163840, NULL},
        {"deepseek2.embedding_length", 4, 7168, NULL},
        {"deepseek2.feed_forward_length", 4, 18432, NULL},
        {"deepseek2.attention.head_count", 4, 128, NULL},
        {"deepseek2.attention.head_count_kv", 4, 1, NULL},
        {"deepseek2.attention.key_length", 4, 576, NULL},
        {"deepseek2.attention.value_length", 4, 512, NULL},
        {"deepseek2.attention.key_length_mla", 4, 192, NULL},
        {"deepseek2.attention.value_length_mla", 4, 128, NULL},
        {"deepseek2.attention.layer_norm_rms_epsilon", 6, 1e-6, NULL},
        {"deepseek2.attention.q_lora_rank", 4, 1536, NULL},
        {"deepseek2.attention.kv_lora_rank", 4, 512, NULL},
        {"deepseek2.rope.dimension_count", 4, 64, NULL},
        {"deepseek2.rope.freq_base", 6, 10000, NULL},
        {"deepseek2.rope.scaling.type", 8, 0, "yarn"},
        {"deepseek2.rope.scaling.factor", 6, 40, NULL},
        {"deepseek2.rope.scaling.original_context_length", 4, 4096, NULL},
        {"deepseek2.rope.scaling.yarn_log_multiplier", 6, 0.1, NULL},
        {"deepseek2.leading_dense_block_count", 4, 3, NULL},
        {"deepseek2.expert_count", 4, 256, NULL},
        {"deepseek2.expert_used_count", 4, 8, NULL},
        {"deepseek2.expert_shared_count", 4, 1, NULL},
        {"deepseek2.expert_feed_forward_length", 4, 2048, NULL},
        {"deepseek2.expert_weights_scale", 6, 2.5, NULL},
        {"deepseek2.expert_weights_norm", 7, 1, NULL},
        {"deepseek2.expert_gating_func", 4, 2, NULL},
        {"deepseek2.vocab_size", 4, 129280, NULL},
    };
    kv all[64];
    size_t n = 0;
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) {
        bool dropped = false;
        for (size_t d = 0; d < n_drop; d++) dropped |= strcmp(base[i].key, drop[d]) == 0;
        bool replaced = false;
        for (size_t e = 0; e < n_extra; e++) replaced |= strcmp(base[i].key, extra[e].key) == 0;
        if (!dropped && !replaced) all[n++] = base[i];
    }
    for (size_t e = 0; e < n_extra; e++) all[n++] = extra[e];
    buf b = {0};
    uint32_t version = 3;
    uint64_t n_tensors = 0, n_kv = n;
    put(&b, "GGUF", 4);
    put(&b, &version, 4);
    put(&b, &n_tensors, 8);
    put(&b, &n_kv, 8);
    for (size_t i = 0; i < n; i++) {
        put_str(&b, all[i].key);
        uint32_t t = (uint32_t)all[i].type;
        put(&b, &t, 4);
        if (t == 4) {
            uint32_t v = (uint32_t)all[i].num;
            put(&b, &v, 4);
        } else if (t == 6) {
            float v = (float)all[i].num;
            put(&b, &v, 4);
        } else if (t == 7) {
            uint8_t v = (uint8_t)all[i].num;
            put(&b, &v, 1);
        } else {
            put_str(&b, all[i].str);
        }
    }
    return b;
}

static td_status hparams_of(const buf *b, const td_model_params *p, td_hparams *hp)
{
    td_gguf *g;
    td_status st = td_gguf_open_memory(b->p, b->n, "v3.gguf", &g);
    if (st != TD_OK) return st;
    st = td_gguf_model_hparams(g, p, hp);
    td_gguf_close(g);
    return st;
}

static void test_v3_hparams(void)
{
    buf b = make_header(NULL, 0, NULL, 0);
    td_hparams hp;
    td_model_params quiet = {.quiet = true};
    td_status st = hparams_of(&b, &quiet, &hp);
    TD_CHECKF(st == TD_OK, "%s", td_errmsg());
    /* block_count counts the MTP block */
    TD_CHECK(hp.n_layers == 61 && hp.n_nextn_layers == 1);
    TD_CHECK(hp.hidden_size == 7168 && hp.vocab_size == 129280 && hp.n_heads == 128);
    /* MLA layout: per-head sizes from the _mla keys */
    TD_CHECK(hp.qk_nope_head_dim == 192 - 64 && hp.qk_rope_head_dim == 64 && hp.v_head_dim == 128);
    TD_CHECK(hp.kv_lora_rank == 512 && hp.q_lora_rank == 1536);
    /* 0.1 * mscale_all_dim stored as f32 comes back as exactly 1 */
    TD_CHECK(hp.rope.yarn && hp.rope.factor == 40 && hp.rope.mscale_all_dim == 1.0 && hp.rope.mscale == 1.0);
    TD_CHECK(hp.rope.original_max_position_embeddings == 4096 && hp.rope.beta_fast == 32 && hp.rope.beta_slow == 1);
    TD_CHECK(hp.scoring == TD_SCORING_SIGMOID && hp.topk_method == TD_TOPK_NOAUX_TC && hp.norm_topk_prob);
    TD_CHECK(hp.routed_scaling_factor == 2.5 && hp.first_k_dense_replace == 3 && hp.n_shared_experts == 1);
    /* no group keys: DeepSeek-V3 recognised */
    TD_CHECK(hp.n_group == 8 && hp.topk_group == 4);
    td_model_params over = {.quiet = true, .expert_groups = 16, .expert_groups_used = 2};
    TD_CHECK(hparams_of(&b, &over, &hp) == TD_OK && hp.n_group == 16 && hp.topk_group == 2);
    free(b.p);

    /* group keys win over recognition */
    kv groups[] = {{"deepseek2.expert_group_count", 4, 4, NULL}, {"deepseek2.expert_group_used_count", 4, 1, NULL}};
    b = make_header(groups, 2, NULL, 0);
    TD_CHECK(hparams_of(&b, &quiet, &hp) == TD_OK && hp.n_group == 4 && hp.topk_group == 1);
    free(b.p);

    /* not V3-shaped: no groups assumed */
    kv e64[] = {{"deepseek2.expert_count", 4, 64, NULL}};
    b = make_header(e64, 1, NULL, 0);
    TD_CHECK(hparams_of(&b, &quiet, &hp) == TD_OK && hp.n_group == 1 && hp.topk_group == 1);
    free(b.p);

    /* softmax gating (V2-Lite shape: 64 experts, no groups) */
    kv v2[] = {{"deepseek2.expert_gating_func", 4, 1, NULL}, {"deepseek2.expert_count", 4, 64, NULL}};
    b = make_header(v2, 2, NULL, 0);
    TD_CHECK(hparams_of(&b, &quiet, &hp) == TD_OK && hp.scoring == TD_SCORING_SOFTMAX && hp.n_group == 1 &&
             hp.topk_method == TD_TOPK_GREEDY && strcmp(hp.model_type, "deepseek_v2") == 0);
    free(b.p);
    /* DeepSeek-V2's shape (160 experts, softmax) without group keys: its 8/3 group-limited routing */
    kv v2full[] = {{"deepseek2.expert_gating_func", 4, 1, NULL}, {"deepseek2.expert_count", 4, 160, NULL},
                   {"deepseek2.expert_used_count", 4, 6, NULL}};
    b = make_header(v2full, 3, NULL, 0);
    TD_CHECK(hparams_of(&b, &quiet, &hp) == TD_OK && hp.n_group == 8 && hp.topk_group == 3 &&
             hp.topk_method == TD_TOPK_GROUP_LIMITED_GREEDY);
    free(b.p);
}

static void test_legacy_and_errors(void)
{
    td_hparams hp;
    td_model_params quiet = {.quiet = true};
    /* legacy layout: per-head sizes in key_length/value_length, no MTP, no q_lora */
    const char *const drop[] = {"deepseek2.attention.key_length_mla", "deepseek2.attention.value_length_mla",
                                "deepseek2.nextn_predict_layers", "deepseek2.attention.q_lora_rank"};
    kv legacy[] = {{"deepseek2.attention.key_length", 4, 192, NULL},
                   {"deepseek2.attention.value_length", 4, 128, NULL},
                   {"deepseek2.attention.head_count_kv", 4, 128, NULL}};
    buf b = make_header(legacy, 3, drop, 4);
    TD_CHECK(hparams_of(&b, &quiet, &hp) == TD_OK && hp.n_layers == 62 && hp.n_nextn_layers == 0 &&
             hp.qk_nope_head_dim == 128 && hp.v_head_dim == 128 && hp.q_lora_rank == 0);
    free(b.p);

    kv arch[] = {{"general.architecture", 8, 0, "llama"}};
    b = make_header(arch, 1, NULL, 0);
    TD_CHECK(hparams_of(&b, &quiet, &hp) == TD_E_UNSUPPORTED && strstr(td_errmsg(), "'llama'"));
    free(b.p);

    const char *const no_lora[] = {"deepseek2.attention.kv_lora_rank"};
    b = make_header(NULL, 0, no_lora, 1);
    TD_CHECK(hparams_of(&b, &quiet, &hp) == TD_E_FORMAT && strstr(td_errmsg(), "deepseek2.attention.kv_lora_rank") &&
             strstr(td_errmsg(), "v3.gguf"));
    free(b.p);

    kv bad_nextn[] = {{"deepseek2.nextn_predict_layers", 4, 62, NULL}};
    b = make_header(bad_nextn, 1, NULL, 0);
    TD_CHECK(hparams_of(&b, &quiet, &hp) == TD_E_FORMAT && strstr(td_errmsg(), "nextn_predict_layers"));
    free(b.p);

    kv bad_type[] = {{"deepseek2.expert_count", 8, 0, "many"}};
    b = make_header(bad_type, 1, NULL, 0);
    TD_CHECK(hparams_of(&b, &quiet, &hp) == TD_E_FORMAT && strstr(td_errmsg(), "deepseek2.expert_count"));
    free(b.p);

    kv bad_groups[] = {{"deepseek2.expert_group_count", 4, 3, NULL}}; /* does not divide 256 */
    b = make_header(bad_groups, 1, NULL, 0);
    TD_CHECK(hparams_of(&b, &quiet, &hp) == TD_E_FORMAT && strstr(td_errmsg(), "n_group"));
    free(b.p);
}

/* Every tensor name of both fixtures maps to a canonical name and back. */
static void test_names(void)
{
    const char *files[] = {"gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf", "gguf/tiny-dsv3-q8_0-legacy.gguf"};
    for (int f = 0; f < 2; f++) {
        td_gguf *g;
        if (td_gguf_open(td_test_fixture(files[f]), &g) != TD_OK) {
            TD_CHECKF(false, "%s", td_errmsg());
            continue;
        }
        for (size_t i = 0; i < td_gguf_tensor_count(g); i++) {
            const char *name = td_gguf_tensor_at(g, i)->name;
            char hf[256], back[300];
            bool slab;
            int expert;
            bool ok = td_gguf_name_to_hf(name, hf, sizeof hf, &slab);
            TD_CHECKF(ok, "%s has no canonical name", name);
            if (!ok) continue;
            if (slab) {
                char one[256];
                snprintf(one, sizeof one, hf, 5);
                snprintf(hf, sizeof hf, "%s", one);
            }
            TD_CHECKF(strncmp(hf, "model.", 6) == 0 || strcmp(hf, "lm_head.weight") == 0, "%s -> %s", name, hf);
            ok = td_gguf_name_from_hf(hf, back, sizeof back, &expert);
            TD_CHECKF(ok && strcmp(back, name) == 0 && expert == (slab ? 5 : -1), "%.100s -> %.100s -> %.100s", name,
                      hf, ok ? back : "(none)");
        }
        td_gguf_close(g);
    }
    char out[256];
    bool slab;
    int e;
    TD_CHECK(!td_gguf_name_to_hf("blk.x.attn_norm.weight", out, sizeof out, &slab));
    TD_CHECK(!td_gguf_name_to_hf("blk.01.attn_norm.weight", out, sizeof out, &slab));
    TD_CHECK(!td_gguf_name_to_hf("rope_freqs.weight", out, sizeof out, &slab));
    TD_CHECK(!td_gguf_name_from_hf("model.layers.3.mlp.experts.1.gate_proj.weight_scale_inv", out, sizeof out, &e));
}

/* The fixtures open as models whose tree matches their metadata: layouts, experts as 2-D views into
 * the slabs (zero copy), MTP from the nextn block with the embedding and head shared. */
static void test_fixture_models(void)
{
    td_model *m;
    td_status st = td_model_open(td_test_fixture("gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf"), NULL, &m);
    TD_CHECKF(st == TD_OK, "%s", td_errmsg());
    if (st == TD_OK) {
        TD_CHECK(strcmp(m->format, "gguf") == 0 && m->gguf != NULL);
        TD_CHECK(m->layers[0].attn.split_kv_b && m->mtp != NULL && m->hp.n_nextn_layers == 1);
        TD_CHECK(m->mtp->embed.data == m->embed.data && m->mtp->head.data == m->head.data);
        const td_gguf_tensor *slab = td_gguf_find_tensor(m->gguf, "blk.1.ffn_down_exps.weight");
        const td_layer_weights *l = &m->layers[1];
        TD_CHECK(slab && l->is_moe && l->moe.experts[0].down.data == slab->data);
        TD_CHECK(slab && l->moe.experts[2].down.data == slab->data + 2 * slab->nbytes / (uint64_t)slab->ne[2]);
        const td_tensor *kb = td_tensor_dir_find(m->dir, "model.layers.0.self_attn.k_b_proj.weight");
        TD_CHECK(kb && kb->ndim == 3 && kb->shape[0] == m->hp.n_heads && kb->shape[1] == m->hp.kv_lora_rank &&
                 kb->shape[2] == m->hp.qk_nope_head_dim);
        const td_tensor *vb = td_tensor_dir_find(m->dir, "model.layers.0.self_attn.v_b_proj.weight");
        TD_CHECK(vb && vb->ndim == 3 && vb->shape[0] == m->hp.n_heads && vb->shape[1] == m->hp.v_head_dim &&
                 vb->shape[2] == m->hp.kv_lora_rank);
        /* the tokenizer's metadata stays reachable */
        td_gguf_value tokens;
        TD_CHECK(td_gguf_get_array(m->gguf, "tokenizer.ggml.tokens", &tokens) == TD_OK &&
                 (int64_t)tokens.len == m->hp.vocab_size);
        td_model_close(m);
    }
    st = td_model_open(td_test_fixture("gguf/tiny-dsv3-q8_0-legacy.gguf"), NULL, &m);
    TD_CHECKF(st == TD_OK, "%s", td_errmsg());
    if (st == TD_OK) {
        TD_CHECK(!m->layers[0].attn.split_kv_b && m->mtp == NULL && m->hp.n_nextn_layers == 0);
        TD_CHECK(m->hp.n_kv_heads == m->hp.n_heads);
        td_model_close(m);
    }
}

/* config.json -> deepseek2 metadata -> td_hparams gives the same model (floats at f32 precision: stored as
 * f32, and yarn_log_multiplier as 0.1 * mscale_all_dim, so within two f32 roundings). */
static void check_hparams_round_trip(const char *config_rel, bool mla)
{
    td_hparams a, b;
    if (td_hparams_load(td_test_fixture(config_rel), &a) != TD_OK) {
        TD_CHECKF(false, "%s", td_errmsg());
        return;
    }
    td_gguf_writer *w;
    TD_CHECK(td_gguf_writer_create(&w) == TD_OK);
    td_gguf_hparams_opts o = {.name = "rt", .mla = mla, .nextn_layers = a.n_nextn_layers, .groups = true};
    TD_CHECKF(td_gguf_put_hparams(w, &a, &o) == TD_OK, "%s", td_errmsg());
    char path[600];
    snprintf(path, sizeof path, "%s/hp.gguf", td_test_tmpdir());
    TD_CHECK(td_gguf_write(w, path, NULL) == TD_OK);
    td_gguf_writer_free(w);
    td_gguf *g;
    td_model_params quiet = {.quiet = true};
    if (td_gguf_open(path, &g) != TD_OK || td_gguf_model_hparams(g, &quiet, &b) != TD_OK) {
        TD_CHECKF(false, "%s: %s", config_rel, td_errmsg());
        return;
    }
    td_gguf_close(g);
    remove(path);
#define SAME(f) TD_CHECKF(a.f == b.f, "%s: " #f " differs", config_rel)
#define SAME_F32(f)                                                                                                    \
    TD_CHECKF(fabs(a.f - b.f) <= 0x1p-22 * fabs(a.f), "%s: " #f " %.9g vs %.9g", config_rel, (double)a.f, (double)b.f)
    SAME(vocab_size);
    SAME(hidden_size);
    SAME(intermediate_size);
    SAME(moe_intermediate_size);
    SAME(n_layers);
    SAME(first_k_dense_replace);
    SAME(n_heads);
    SAME(q_lora_rank);
    SAME(kv_lora_rank);
    SAME(qk_nope_head_dim);
    SAME(qk_rope_head_dim);
    SAME(v_head_dim);
    SAME(n_routed_experts);
    SAME(n_shared_experts);
    SAME(n_experts_per_tok);
    SAME(n_group);
    SAME(topk_group);
    SAME(norm_topk_prob);
    SAME(scoring);
    SAME(topk_method);
    SAME(max_position_embeddings);
    SAME(n_nextn_layers);
    SAME(rope.yarn);
    SAME(rope.original_max_position_embeddings);
    SAME_F32(routed_scaling_factor);
    SAME_F32(rms_norm_eps);
    SAME_F32(rope_theta);
    SAME_F32(rope.factor);
    SAME_F32(rope.beta_fast);
    SAME_F32(rope.beta_slow);
    SAME_F32(rope.mscale);
    SAME_F32(rope.mscale_all_dim);
    TD_CHECK(fabs(td_hparams_softmax_scale(&a) - td_hparams_softmax_scale(&b)) <= 1e-7 * td_hparams_softmax_scale(&a));
#undef SAME
#undef SAME_F32
}

/* A copy of the legacy fixture with one expert slab in IQ2_XS: the file reads, the model refuses to open,
 * naming the tensor and the type. */
static void test_unsupported_type_in_model(void)
{
    td_gguf *src;
    if (td_gguf_open(td_test_fixture("gguf/tiny-dsv3-q8_0-legacy.gguf"), &src) != TD_OK) return;
    td_gguf_writer *w;
    TD_CHECK(td_gguf_writer_create(&w) == TD_OK);
    for (size_t i = 0; i < td_gguf_kv_count(src); i++)
        TD_CHECK(td_gguf_set_value(w, td_gguf_kv_at(src, i)->key, &td_gguf_kv_at(src, i)->v) == TD_OK);
    static uint8_t zeros[1 << 20];
    for (size_t i = 0; i < td_gguf_tensor_count(src); i++) {
        const td_gguf_tensor *t = td_gguf_tensor_at(src, i);
        bool swap = strcmp(t->name, "blk.1.ffn_down_exps.weight") == 0;
        TD_CHECK(td_gguf_add_tensor(w, t->name, swap ? 17 : t->ggml_type, t->n_dims, t->ne, swap ? zeros : t->data) ==
                 TD_OK);
    }
    char path[600];
    snprintf(path, sizeof path, "%s/iq2xs.gguf", td_test_tmpdir());
    TD_CHECKF(td_gguf_write(w, path, NULL) == TD_OK, "%s", td_errmsg());
    td_gguf_writer_free(w);
    td_gguf_close(src);
    td_model *m = NULL;
    td_status st = td_model_open(path, NULL, &m);
    TD_CHECKF(st == TD_E_UNSUPPORTED && strstr(td_errmsg(), "IQ2_XS") && strstr(td_errmsg(), "blk.1.ffn_down_exps.weight"),
              "%s: %s", td_status_name(st), td_errmsg());
    td_model_close(m);
    remove(path);
}

int main(void)
{
    test_v3_hparams();
    test_legacy_and_errors();
    if (!td_path_exists(td_test_fixture("gguf/tiny-dsv3-q8_0-legacy.gguf"))) {
        if (td_test_failures) return td_test_finish();
        return td_test_skip("GGUF fixtures not found (TANDEM_SHARED?)");
    }
    test_names();
    test_fixture_models();
    test_unsupported_type_in_model();
    const char *configs[] = {"safetensors/tiny-dsv3-bf16/config.json", "safetensors/tiny-dsv3-qdirect-bf16/config.json",
                             "safetensors/tiny-dsv3-fp8/config.json", "real/deepseek-v3-config.json"};
    for (int i = 0; i < 4; i++) {
        check_hparams_round_trip(configs[i], true);
        check_hparams_round_trip(configs[i], false);
    }
    rmdir(td_test_tmpdir());
    return td_test_finish();
}
