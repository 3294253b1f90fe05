/* config.json parsing: the fixtures and DeepSeek-V3's official config, derived sizes computed here from the
 * config's own numbers, and broken configs that must be refused with the field named. */
#include "td_alloc.h"
#include "td_hparams.h"
#include "td_mmap.h"
#include "td_test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static cJSON *load_json(const char *path)
{
    char *text;
    uint64_t len;
    if (td_read_text_file(path, 1 << 20, &text, &len) != TD_OK) return NULL;
    cJSON *j = cJSON_Parse(text);
    td_free(text);
    return j;
}

static double num(const cJSON *j, const char *key) { return cJSON_GetObjectItem(j, key)->valuedouble; }

/* Every field tandem reads equals what the JSON says (read here with cJSON directly). */
static void check_against_json(const char *dirname)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", td_test_fixture(dirname));
    cJSON *j = load_json(path);
    TD_CHECK(j != NULL);
    td_hparams hp;
    TD_CHECKF(td_hparams_load(path, &hp) == TD_OK, "%s", td_errmsg());
    TD_CHECK(hp.hidden_size == num(j, "hidden_size") && hp.vocab_size == num(j, "vocab_size"));
    TD_CHECK(hp.n_layers == num(j, "num_hidden_layers") && hp.n_heads == num(j, "num_attention_heads"));
    const cJSON *q = cJSON_GetObjectItem(j, "q_lora_rank");
    TD_CHECK(cJSON_IsNull(q) ? hp.q_lora_rank == 0 : hp.q_lora_rank == q->valuedouble);
    TD_CHECK(hp.kv_lora_rank == num(j, "kv_lora_rank") && hp.qk_rope_head_dim == num(j, "qk_rope_head_dim"));
    TD_CHECK(hp.qk_nope_head_dim == num(j, "qk_nope_head_dim") && hp.v_head_dim == num(j, "v_head_dim"));
    TD_CHECK(hp.n_routed_experts == num(j, "n_routed_experts") && hp.n_group == num(j, "n_group"));
    TD_CHECK(hp.topk_group == num(j, "topk_group") && hp.n_experts_per_tok == num(j, "num_experts_per_tok"));
    TD_CHECK(hp.n_shared_experts == num(j, "n_shared_experts"));
    TD_CHECK(hp.first_k_dense_replace == num(j, "first_k_dense_replace"));
    TD_CHECK(hp.routed_scaling_factor == num(j, "routed_scaling_factor"));
    TD_CHECK(hp.norm_topk_prob == cJSON_IsTrue(cJSON_GetObjectItem(j, "norm_topk_prob")));
    TD_CHECK(hp.scoring == TD_SCORING_SIGMOID && hp.topk_method == TD_TOPK_NOAUX_TC);
    TD_CHECK(hp.n_nextn_layers == num(j, "num_nextn_predict_layers"));
    const cJSON *rs = cJSON_GetObjectItem(j, "rope_scaling");
    TD_CHECK(hp.rope.yarn && hp.rope.factor == num(rs, "factor"));
    TD_CHECK(hp.rope.original_max_position_embeddings == num(rs, "original_max_position_embeddings"));
    TD_CHECK(hp.rope.mscale == num(rs, "mscale") && hp.rope.mscale_all_dim == num(rs, "mscale_all_dim"));
    const cJSON *qc = cJSON_GetObjectItem(j, "quantization_config");
    TD_CHECK(hp.quant.present == (qc != NULL));
    if (qc) TD_CHECK(strcmp(hp.quant.quant_method, "fp8") == 0 && hp.quant.weight_block_size[0] == 128);
    cJSON_Delete(j);
}

/* DeepSeek-V3 671B: per-layer parameter counts, KV bytes, softmax scale, all computed here from the config. */
static void test_real_config(void)
{
    const char *path = td_test_fixture("real/deepseek-v3-config.json");
    cJSON *j = load_json(path);
    td_hparams hp;
    TD_CHECKF(td_hparams_load(path, &hp) == TD_OK, "%s", td_errmsg());
    int64_t H = (int64_t)num(j, "hidden_size"), nh = (int64_t)num(j, "num_attention_heads");
    int64_t qr = (int64_t)num(j, "q_lora_rank"), r = (int64_t)num(j, "kv_lora_rank");
    int64_t dn = (int64_t)num(j, "qk_nope_head_dim"), dr = (int64_t)num(j, "qk_rope_head_dim");
    int64_t dv = (int64_t)num(j, "v_head_dim"), I = (int64_t)num(j, "intermediate_size");
    int64_t Im = (int64_t)num(j, "moe_intermediate_size"), E = (int64_t)num(j, "n_routed_experts");
    int64_t L = (int64_t)num(j, "num_hidden_layers"), V = (int64_t)num(j, "vocab_size");
    int dense = (int)num(j, "first_k_dense_replace");
    /* the real shapes are in use */
    TD_CHECK(H == 7168 && nh == 128 && r == 512 && dr == 64 && E == 256 && hp.n_group == 8 && L == 61);

    int64_t attn = H * qr + qr + qr * nh * (dn + dr) + H * (r + dr) + r + r * nh * (dn + dv) + nh * dv * H;
    int64_t total = 2 * V * H + H;
    for (int l = 0; l < L; l++) {
        td_layer_params p;
        td_hparams_layer_params(&hp, l, &p);
        TD_CHECKF(p.attn == attn, "layer %d attention %lld vs %lld", l, (long long)p.attn, (long long)attn);
        TD_CHECK(p.norms == 2 * H);
        if (l < dense) {
            TD_CHECK(p.dense_mlp == 3 * H * I && p.routed_experts == 0 && p.shared_experts == 0);
        } else {
            TD_CHECK(p.routed_experts == E * 3 * H * Im);
            TD_CHECK(p.shared_experts == 3 * H * Im * (int64_t)num(j, "n_shared_experts"));
            TD_CHECK(p.router == E * H + E && p.dense_mlp == 0);
        }
        total += p.total;
    }
    TD_CHECK(td_hparams_total_params(&hp) == total);
    /* DeepSeek-V3 is published as 671B parameters without the MTP module */
    TD_CHECKF(fabs((double)total / 1e9 - 671.0) < 1.0, "total %.3fB", (double)total / 1e9);
    td_layer_params mtp;
    td_hparams_layer_params(&hp, (int)L, &mtp);
    TD_CHECK(mtp.mtp_extra == 2 * H * H + 3 * H && mtp.routed_experts == E * 3 * H * Im);
    /* the latent cache: (kv_lora + rope) values per layer per token, 2 bytes each in bf16 */
    TD_CHECK(td_hparams_kv_elems_per_token(&hp) * 2 == L * (r + dr) * 2);
    const cJSON *rs = cJSON_GetObjectItem(j, "rope_scaling");
    double m = 0.1 * num(rs, "mscale_all_dim") * log(num(rs, "factor")) + 1.0;
    TD_CHECK(fabs(td_hparams_softmax_scale(&hp) - m * m / sqrt((double)(dn + dr))) < 1e-12);
    cJSON_Delete(j);
}

/* A mutation of the official config and the words its error must contain. */
static void expect_refused(const char *what, void (*mutate)(cJSON *), td_status status, const char *needle)
{
    cJSON *j = load_json(td_test_fixture("real/deepseek-v3-config.json"));
    mutate(j);
    char *text = cJSON_PrintUnformatted(j);
    td_hparams hp;
    td_status st = td_hparams_from_json(text, strlen(text), "config.json", &hp);
    TD_CHECKF(st == status, "%s: status %d, message '%s'", what, st, td_errmsg());
    TD_CHECKF(strstr(td_errmsg(), needle) && strstr(td_errmsg(), "config.json"), "%s: message '%s' lacks '%s'", what,
              td_errmsg(), needle);
    free(text);
    cJSON_Delete(j);
}

static void no_hidden(cJSON *j) { cJSON_DeleteItemFromObject(j, "hidden_size"); }
static void neg_hidden(cJSON *j) { cJSON_ReplaceItemInObject(j, "hidden_size", cJSON_CreateNumber(-5)); }
static void str_hidden(cJSON *j) { cJSON_ReplaceItemInObject(j, "hidden_size", cJSON_CreateString("big")); }
static void bad_groups(cJSON *j) { cJSON_ReplaceItemInObject(j, "n_group", cJSON_CreateNumber(7)); }
static void bad_topk(cJSON *j) { cJSON_ReplaceItemInObject(j, "num_experts_per_tok", cJSON_CreateNumber(200)); }
static void odd_rope(cJSON *j) { cJSON_ReplaceItemInObject(j, "qk_rope_head_dim", cJSON_CreateNumber(63)); }
static void bad_arch(cJSON *j)
{
    cJSON_ReplaceItemInObject(j, "model_type", cJSON_CreateString("llama"));
    cJSON_ReplaceItemInObject(j, "architectures", cJSON_CreateArray());
}
static void linear_rope(cJSON *j)
{
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "rope_scaling"), "type", cJSON_CreateString("linear"));
}
static void awq(cJSON *j)
{
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "quantization_config"), "quant_method", cJSON_CreateString("awq"));
}
static void bad_scoring(cJSON *j) { cJSON_ReplaceItemInObject(j, "scoring_func", cJSON_CreateString("relu")); }
static void dense_too_many(cJSON *j) { cJSON_ReplaceItemInObject(j, "first_k_dense_replace", cJSON_CreateNumber(99)); }
static void null_q_lora(cJSON *j) { cJSON_ReplaceItemInObject(j, "q_lora_rank", cJSON_CreateNull()); }

static void test_bad_configs(void)
{
    expect_refused("missing hidden_size", no_hidden, TD_E_FORMAT, "'hidden_size' is missing");
    expect_refused("negative hidden_size", neg_hidden, TD_E_FORMAT, "hidden_size");
    expect_refused("string hidden_size", str_hidden, TD_E_FORMAT, "must be an integer");
    expect_refused("7 groups", bad_groups, TD_E_FORMAT, "n_group");
    expect_refused("top-200", bad_topk, TD_E_FORMAT, "num_experts_per_tok");
    expect_refused("odd rope dims", odd_rope, TD_E_FORMAT, "even");
    expect_refused("llama", bad_arch, TD_E_UNSUPPORTED, "llama");
    expect_refused("linear rope", linear_rope, TD_E_UNSUPPORTED, "linear");
    expect_refused("awq", awq, TD_E_UNSUPPORTED, "awq");
    expect_refused("relu scoring", bad_scoring, TD_E_UNSUPPORTED, "relu");
    expect_refused("dense layers", dense_too_many, TD_E_FORMAT, "first_k_dense_replace");
    td_hparams hp;
    TD_CHECK(td_hparams_from_json("{\"hidden", 8, "x.json", &hp) == TD_E_FORMAT && strstr(td_errmsg(), "JSON"));
    TD_CHECK(td_hparams_from_json("[]", 2, "x.json", &hp) == TD_E_FORMAT);
    /* q_lora_rank: null selects the direct q_proj */
    cJSON *j = load_json(td_test_fixture("real/deepseek-v3-config.json"));
    null_q_lora(j);
    char *text = cJSON_PrintUnformatted(j);
    TD_CHECK(td_hparams_from_json(text, strlen(text), "c", &hp) == TD_OK && hp.q_lora_rank == 0);
    free(text);
    cJSON_Delete(j);
}

static void test_out_of_memory(void)
{
    const char *path = td_test_fixture("real/deepseek-v3-config.json");
    bool ok = false;
    for (long n = 0; n < 2000 && !ok; n++) {
        td_hparams hp;
        td_alloc_fail_after(n);
        td_status st = td_hparams_load(path, &hp);
        td_alloc_fail_after(-1);
        ok = st == TD_OK;
        if (!ok) TD_CHECKF(st == TD_E_NOMEM || st == TD_E_FORMAT, "status %d at %ld: %s", st, n, td_errmsg());
    }
    TD_CHECK(ok);
}

int main(void)
{
    check_against_json("safetensors/tiny-dsv3-bf16");
    check_against_json("safetensors/tiny-dsv3-fp8");
    check_against_json("safetensors/tiny-dsv3-qdirect-bf16");
    test_real_config();
    test_bad_configs();
    test_out_of_memory();
    return td_test_finish();
}
