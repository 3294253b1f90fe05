#include "td_hparams.h"

#include "td_alloc.h"
#include "td_mmap.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ field readers */

typedef struct td_cfg {
    const cJSON *root;
    const char *path;
} td_cfg;

static td_status td_cfg_int(const td_cfg *c, const char *key, bool required, int64_t dflt, int64_t lo, int64_t hi,
                            int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, key);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return td_fail(TD_E_FORMAT, "%s: field '%s' is missing; a DeepSeek-V3 config.json must give it", c->path,
                           key);
        *out = dflt;
        return TD_OK;
    }
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble)
        return td_fail(TD_E_FORMAT, "%s: field '%s' must be an integer", c->path, key);
    double d = v->valuedouble;
    if (d < (double)lo || d > (double)hi)
        return td_fail(TD_E_FORMAT, "%s: field '%s' = %.0f is out of range (expected %lld..%lld)", c->path, key, d,
                       (long long)lo, (long long)hi);
    *out = (int64_t)d;
    return TD_OK;
}

static td_status td_cfg_i32(const td_cfg *c, const char *key, bool required, int dflt, int lo, int hi, int *out)
{
    int64_t v;
    TD_TRY(td_cfg_int(c, key, required, dflt, lo, hi, &v));
    *out = (int)v;
    return TD_OK;
}

static td_status td_cfg_num(const td_cfg *c, const cJSON *obj, const char *key, bool required, double dflt, double lo,
                            double hi, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return td_fail(TD_E_FORMAT, "%s: field '%s' is missing", c->path, key);
        *out = dflt;
        return TD_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return td_fail(TD_E_FORMAT, "%s: field '%s' must be a number", c->path, key);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return td_fail(TD_E_FORMAT, "%s: field '%s' = %g is out of range (expected %g..%g)", c->path, key,
                       v->valuedouble, lo, hi);
    *out = v->valuedouble;
    return TD_OK;
}

static td_status td_cfg_bool(const td_cfg *c, const char *key, bool dflt, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return TD_OK;
    }
    if (!cJSON_IsBool(v)) return td_fail(TD_E_FORMAT, "%s: field '%s' must be true or false", c->path, key);
    *out = cJSON_IsTrue(v);
    return TD_OK;
}

static td_status td_cfg_str(const td_cfg *c, const cJSON *obj, const char *key, const char *dflt, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        snprintf(out, cap, "%s", dflt);
        return TD_OK;
    }
    if (!cJSON_IsString(v)) return td_fail(TD_E_FORMAT, "%s: field '%s' must be a string", c->path, key);
    if (strlen(v->valuestring) >= cap)
        return td_fail(TD_E_FORMAT, "%s: field '%s' is too long ('%.40s...')", c->path, key, v->valuestring);
    snprintf(out, cap, "%s", v->valuestring);
    return TD_OK;
}

/* ------------------------------------------------------------------ sections */

static td_status td_cfg_arch(const td_cfg *c, td_hparams *hp)
{
    TD_TRY(td_cfg_str(c, c->root, "model_type", "", hp->model_type, sizeof hp->model_type));
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(c->root, "architectures");
    bool arch_ok = false;
    if (cJSON_IsArray(archs)) {
        const cJSON *a;
        cJSON_ArrayForEach(a, archs)
        {
            if (cJSON_IsString(a) && (strcmp(a->valuestring, "DeepseekV3ForCausalLM") == 0 ||
                                      strcmp(a->valuestring, "DeepseekV2ForCausalLM") == 0))
                arch_ok = true;
        }
    }
    static const char *const known[] = {"deepseek_v3", "deepseek_v2", "kimi_k2"};
    bool type_ok = false;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) type_ok |= strcmp(hp->model_type, known[i]) == 0;
    if (!arch_ok && !type_ok)
        return td_fail(TD_E_UNSUPPORTED,
                       "%s: model_type '%s' is not a DeepSeek-V3-family model (expected deepseek_v3, deepseek_v2 or "
                       "kimi_k2, or architectures [\"DeepseekV3ForCausalLM\"])",
                       c->path, hp->model_type);
    if (!type_ok) snprintf(hp->model_type, sizeof hp->model_type, "deepseek_v3");
    return TD_OK;
}

static td_status td_cfg_shapes(const td_cfg *c, td_hparams *hp)
{
    const int64_t big = 1ll << 31;
    TD_TRY(td_cfg_int(c, "vocab_size", true, 0, 1, big, &hp->vocab_size));
    TD_TRY(td_cfg_int(c, "hidden_size", true, 0, 1, 1 << 20, &hp->hidden_size));
    TD_TRY(td_cfg_int(c, "intermediate_size", true, 0, 1, 1 << 24, &hp->intermediate_size));
    TD_TRY(td_cfg_i32(c, "num_hidden_layers", true, 0, 1, 4096, &hp->n_layers));
    TD_TRY(td_cfg_i32(c, "num_attention_heads", true, 0, 1, 4096, &hp->n_heads));
    TD_TRY(td_cfg_i32(c, "num_key_value_heads", false, hp->n_heads, 1, 4096, &hp->n_kv_heads));
    TD_TRY(td_cfg_int(c, "q_lora_rank", false, 0, 1, 1 << 20, &hp->q_lora_rank));
    TD_TRY(td_cfg_int(c, "kv_lora_rank", true, 0, 1, 1 << 20, &hp->kv_lora_rank));
    TD_TRY(td_cfg_int(c, "qk_nope_head_dim", true, 0, 1, 1 << 16, &hp->qk_nope_head_dim));
    TD_TRY(td_cfg_int(c, "qk_rope_head_dim", true, 0, 2, 1 << 16, &hp->qk_rope_head_dim));
    TD_TRY(td_cfg_int(c, "v_head_dim", true, 0, 1, 1 << 16, &hp->v_head_dim));
    TD_TRY(td_cfg_int(c, "max_position_embeddings", false, 4096, 1, big, &hp->max_position_embeddings));
    TD_TRY(td_cfg_i32(c, "num_nextn_predict_layers", false, 0, 0, 16, &hp->n_nextn_layers));
    TD_TRY(td_cfg_num(c, c->root, "rms_norm_eps", false, 1e-6, 0.0, 1.0, &hp->rms_norm_eps));
    TD_TRY(td_cfg_num(c, c->root, "rope_theta", false, 10000.0, 1.0, 1e12, &hp->rope_theta));
    TD_TRY(td_cfg_int(c, "bos_token_id", false, -1, -1, big, &hp->bos_token_id));
    TD_TRY(td_cfg_int(c, "eos_token_id", false, -1, -1, big, &hp->eos_token_id));
    TD_TRY(td_cfg_bool(c, "tie_word_embeddings", false, &hp->tie_word_embeddings));
    return TD_OK;
}

static td_status td_cfg_moe(const td_cfg *c, td_hparams *hp)
{
    bool v2 = strcmp(hp->model_type, "deepseek_v2") == 0;
    TD_TRY(td_cfg_i32(c, "n_routed_experts", false, 0, 0, 1 << 16, &hp->n_routed_experts));
    bool moe = hp->n_routed_experts > 0;
    TD_TRY(td_cfg_int(c, "moe_intermediate_size", moe, 0, 1, 1 << 24, &hp->moe_intermediate_size));
    TD_TRY(td_cfg_i32(c, "num_experts_per_tok", moe, 0, 1, 1 << 16, &hp->n_experts_per_tok));
    TD_TRY(td_cfg_i32(c, "n_shared_experts", false, 0, 0, 1 << 10, &hp->n_shared_experts));
    TD_TRY(td_cfg_i32(c, "first_k_dense_replace", false, 0, 0, 4096, &hp->first_k_dense_replace));
    TD_TRY(td_cfg_i32(c, "moe_layer_freq", false, 1, 1, 4096, &hp->moe_layer_freq));
    TD_TRY(td_cfg_i32(c, "n_group", false, 1, 1, 1 << 16, &hp->n_group));
    TD_TRY(td_cfg_i32(c, "topk_group", false, 1, 1, 1 << 16, &hp->topk_group));
    TD_TRY(td_cfg_num(c, c->root, "routed_scaling_factor", false, 1.0, 1e-6, 1e6, &hp->routed_scaling_factor));
    TD_TRY(td_cfg_bool(c, "norm_topk_prob", false, &hp->norm_topk_prob));

    char s[32];
    TD_TRY(td_cfg_str(c, c->root, "scoring_func", v2 ? "softmax" : "sigmoid", s, sizeof s));
    if (strcmp(s, "sigmoid") == 0) hp->scoring = TD_SCORING_SIGMOID;
    else if (strcmp(s, "softmax") == 0) hp->scoring = TD_SCORING_SOFTMAX;
    else
        return td_fail(TD_E_UNSUPPORTED, "%s: scoring_func '%s' is not supported (expected sigmoid or softmax)",
                       c->path, s);
    TD_TRY(td_cfg_str(c, c->root, "topk_method", v2 ? "greedy" : "noaux_tc", s, sizeof s));
    if (strcmp(s, "noaux_tc") == 0) hp->topk_method = TD_TOPK_NOAUX_TC;
    else if (strcmp(s, "group_limited_greedy") == 0) hp->topk_method = TD_TOPK_GROUP_LIMITED_GREEDY;
    else if (strcmp(s, "greedy") == 0) hp->topk_method = TD_TOPK_GREEDY;
    else
        return td_fail(TD_E_UNSUPPORTED,
                       "%s: topk_method '%s' is not supported (expected noaux_tc, group_limited_greedy or greedy)",
                       c->path, s);
    return TD_OK;
}

static td_status td_cfg_rope(const td_cfg *c, td_hparams *hp)
{
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(c->root, "rope_scaling");
    memset(&hp->rope, 0, sizeof hp->rope);
    hp->rope.factor = 1.0;
    if (!rs || cJSON_IsNull(rs)) return TD_OK;
    if (!cJSON_IsObject(rs)) return td_fail(TD_E_FORMAT, "%s: 'rope_scaling' must be an object or null", c->path);
    char type[32];
    TD_TRY(td_cfg_str(c, rs, "type", "", type, sizeof type));
    if (!type[0]) TD_TRY(td_cfg_str(c, rs, "rope_type", "", type, sizeof type));
    if (strcmp(type, "yarn") != 0 && strcmp(type, "deepseek_yarn") != 0)
        return td_fail(TD_E_UNSUPPORTED, "%s: rope_scaling type '%s' is not supported (DeepSeek models use yarn)",
                       c->path, type);
    hp->rope.yarn = true;
    TD_TRY(td_cfg_num(c, rs, "factor", true, 1.0, 1.0, 1e6, &hp->rope.factor));
    double orig;
    TD_TRY(td_cfg_num(c, rs, "original_max_position_embeddings", true, 0, 1, 1e12, &orig));
    hp->rope.original_max_position_embeddings = (int64_t)orig;
    TD_TRY(td_cfg_num(c, rs, "beta_fast", false, 32.0, 1e-6, 1e6, &hp->rope.beta_fast));
    TD_TRY(td_cfg_num(c, rs, "beta_slow", false, 1.0, 1e-6, 1e6, &hp->rope.beta_slow));
    TD_TRY(td_cfg_num(c, rs, "mscale", false, 1.0, 0.0, 1e3, &hp->rope.mscale));
    TD_TRY(td_cfg_num(c, rs, "mscale_all_dim", false, 0.0, 0.0, 1e3, &hp->rope.mscale_all_dim));
    return TD_OK;
}

static td_status td_cfg_quant(const td_cfg *c, td_hparams *hp)
{
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(c->root, "quantization_config");
    memset(&hp->quant, 0, sizeof hp->quant);
    if (!q || cJSON_IsNull(q)) return TD_OK;
    if (!cJSON_IsObject(q)) return td_fail(TD_E_FORMAT, "%s: 'quantization_config' must be an object", c->path);
    td_quant_config *qc = &hp->quant;
    qc->present = true;
    TD_TRY(td_cfg_str(c, q, "quant_method", "", qc->quant_method, sizeof qc->quant_method));
    TD_TRY(td_cfg_str(c, q, "fmt", "e4m3", qc->fmt, sizeof qc->fmt));
    TD_TRY(td_cfg_str(c, q, "activation_scheme", "dynamic", qc->activation_scheme, sizeof qc->activation_scheme));
    if (strcmp(qc->quant_method, "fp8") != 0)
        return td_fail(TD_E_UNSUPPORTED,
                       "%s: quantization_config.quant_method '%s' is not supported (only the official fp8 block "
                       "format; convert other checkpoints to GGUF or BF16)",
                       c->path, qc->quant_method);
    if (strcmp(qc->fmt, "e4m3") != 0)
        return td_fail(TD_E_UNSUPPORTED, "%s: quantization_config.fmt '%s' is not supported (expected e4m3)", c->path,
                       qc->fmt);
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(q, "weight_block_size");
    qc->weight_block_size[0] = qc->weight_block_size[1] = 128;
    if (bs && !cJSON_IsNull(bs)) {
        if (!cJSON_IsArray(bs) || cJSON_GetArraySize(bs) != 2)
            return td_fail(TD_E_FORMAT, "%s: quantization_config.weight_block_size must be [rows, cols]", c->path);
        for (int i = 0; i < 2; i++) {
            const cJSON *v = cJSON_GetArrayItem(bs, i);
            if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 65536 ||
                floor(v->valuedouble) != v->valuedouble)
                return td_fail(TD_E_FORMAT, "%s: quantization_config.weight_block_size[%d] must be a positive integer",
                               c->path, i);
            qc->weight_block_size[i] = (int)v->valuedouble;
        }
    }
    return TD_OK;
}

/* ------------------------------------------------------------------ public */

td_status td_hparams_from_json(const char *text, size_t len, const char *path, td_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *err = cJSON_GetErrorPtr();
        long at = (err && err >= text && err <= text + len) ? (long)(err - text) : -1;
        return td_fail(TD_E_FORMAT, "%s: not valid JSON (near byte %ld)", path, at);
    }
    td_status st = TD_OK;
    td_cfg c = {root, path};
    if (!cJSON_IsObject(root)) {
        st = td_fail(TD_E_FORMAT, "%s: config must be a JSON object", path);
        goto done;
    }
    if ((st = td_cfg_arch(&c, hp)) != TD_OK) goto done;
    if ((st = td_cfg_shapes(&c, hp)) != TD_OK) goto done;
    if ((st = td_cfg_moe(&c, hp)) != TD_OK) goto done;
    if ((st = td_cfg_rope(&c, hp)) != TD_OK) goto done;
    if ((st = td_cfg_quant(&c, hp)) != TD_OK) goto done;
    st = td_hparams_validate(hp, path);
done:
    cJSON_Delete(root);
    return st;
}

td_status td_hparams_load(const char *path, td_hparams *hp)
{
    char *text;
    uint64_t len;
    TD_TRY(td_read_text_file(path, 16u << 20, &text, &len));
    td_status st = td_hparams_from_json(text, (size_t)len, path, hp);
    td_free(text);
    return st;
}

td_status td_hparams_validate(const td_hparams *hp, const char *src)
{
    if (hp->vocab_size < 1 || hp->hidden_size < 1 || hp->n_layers < 1 || hp->n_heads < 1)
        return td_fail(TD_E_FORMAT, "%s: vocab, hidden size, layer and head counts must be positive", src);
    if (hp->kv_lora_rank < 1 || hp->qk_nope_head_dim < 1 || hp->v_head_dim < 1)
        return td_fail(TD_E_FORMAT, "%s: kv_lora_rank, qk_nope_head_dim and v_head_dim must be positive", src);
    if (hp->qk_rope_head_dim < 2 || hp->qk_rope_head_dim % 2)
        return td_fail(TD_E_FORMAT, "%s: qk_rope_head_dim = %lld must be even (RoPE rotates pairs)", src,
                       (long long)hp->qk_rope_head_dim);
    if (hp->first_k_dense_replace > hp->n_layers)
        return td_fail(TD_E_FORMAT, "%s: first_k_dense_replace = %d exceeds num_hidden_layers = %d", src,
                       hp->first_k_dense_replace, hp->n_layers);
    if (hp->n_routed_experts > 0) {
        int E = hp->n_routed_experts;
        if (hp->moe_intermediate_size < 1)
            return td_fail(TD_E_FORMAT, "%s: moe_intermediate_size must be positive", src);
        if (hp->n_group > 1024)
            return td_fail(TD_E_UNSUPPORTED, "%s: n_group = %d is more than the 1024 groups tandem supports", src,
                           hp->n_group);
        if (hp->n_group < 1 || E % hp->n_group)
            return td_fail(TD_E_FORMAT, "%s: n_group = %d must divide n_routed_experts = %d", src, hp->n_group, E);
        if (hp->topk_group < 1 || hp->topk_group > hp->n_group)
            return td_fail(TD_E_FORMAT, "%s: topk_group = %d must be between 1 and n_group = %d", src, hp->topk_group,
                           hp->n_group);
        int per_group = E / hp->n_group;
        int reachable = hp->topk_method == TD_TOPK_GREEDY ? E : hp->topk_group * per_group;
        if (hp->n_experts_per_tok < 1 || hp->n_experts_per_tok > reachable)
            return td_fail(TD_E_FORMAT,
                           "%s: num_experts_per_tok = %d cannot be chosen from %d experts (%d groups kept of %d "
                           "experts each)",
                           src, hp->n_experts_per_tok, reachable, hp->topk_group, per_group);
        if (hp->topk_method == TD_TOPK_NOAUX_TC && per_group < 2)
            return td_fail(TD_E_FORMAT, "%s: noaux_tc routing needs at least 2 experts per group (n_group = %d)", src,
                           hp->n_group);
    }
    if (hp->rope.yarn) {
        if (!(hp->rope.factor >= 1.0) || hp->rope.original_max_position_embeddings < 1)
            return td_fail(TD_E_FORMAT, "%s: rope_scaling needs factor >= 1 and original_max_position_embeddings >= 1",
                           src);
        if (!(hp->rope.beta_fast > 0) || !(hp->rope.beta_slow > 0))
            return td_fail(TD_E_FORMAT, "%s: rope_scaling beta_fast and beta_slow must be positive", src);
    }
    if (!(hp->rms_norm_eps > 0) || !(hp->rope_theta > 1))
        return td_fail(TD_E_FORMAT, "%s: rms_norm_eps must be > 0 and rope_theta > 1", src);
    if (hp->quant.present && (hp->quant.weight_block_size[0] < 1 || hp->quant.weight_block_size[1] < 1))
        return td_fail(TD_E_FORMAT, "%s: bad quantization block size", src);
    return TD_OK;
}

bool td_hparams_layer_is_moe(const td_hparams *hp, int layer)
{
    return hp->n_routed_experts > 0 && layer >= hp->first_k_dense_replace && layer % hp->moe_layer_freq == 0;
}

double td_yarn_mscale(double factor, double m)
{
    return factor <= 1.0 ? 1.0 : 0.1 * m * log(factor) + 1.0;
}

double td_hparams_softmax_scale(const td_hparams *hp)
{
    double s = 1.0 / sqrt((double)(hp->qk_nope_head_dim + hp->qk_rope_head_dim));
    if (hp->rope.yarn && hp->rope.mscale_all_dim != 0.0) {
        double m = td_yarn_mscale(hp->rope.factor, hp->rope.mscale_all_dim);
        s *= m * m;
    }
    return s;
}

int64_t td_hparams_kv_elems_per_token(const td_hparams *hp)
{
    return (int64_t)hp->n_layers * (hp->kv_lora_rank + hp->qk_rope_head_dim);
}

void td_hparams_layer_params(const td_hparams *hp, int layer, td_layer_params *o)
{
    memset(o, 0, sizeof *o);
    int64_t H = hp->hidden_size, nh = hp->n_heads;
    int64_t dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim, r = hp->kv_lora_rank;
    int64_t qr = hp->q_lora_rank;
    int64_t q = qr ? H * qr + qr + qr * nh * (dn + dr) : H * nh * (dn + dr);
    o->attn = q + H * (r + dr) + r + nh * (dn + dv) * r + nh * dv * H;
    o->norms = 2 * H;
    if (td_hparams_layer_is_moe(hp, layer)) {
        int64_t E = hp->n_routed_experts, I = hp->moe_intermediate_size;
        o->router = E * H + (hp->topk_method == TD_TOPK_NOAUX_TC ? E : 0);
        o->routed_experts = E * 3 * H * I;
        o->shared_experts = (int64_t)hp->n_shared_experts * 3 * H * I;
    } else {
        o->dense_mlp = 3 * H * hp->intermediate_size;
    }
    if (layer >= hp->n_layers) o->mtp_extra = 2 * H + 2 * H * H + H; /* enorm, hnorm, eh_proj, head norm */
    o->total = o->attn + o->norms + o->router + o->routed_experts + o->shared_experts + o->dense_mlp + o->mtp_extra;
}

int64_t td_hparams_total_params(const td_hparams *hp)
{
    int64_t total = hp->vocab_size * hp->hidden_size * (hp->tie_word_embeddings ? 1 : 2) + hp->hidden_size;
    for (int l = 0; l < hp->n_layers; l++) {
        td_layer_params p;
        td_hparams_layer_params(hp, l, &p);
        total += p.total;
    }
    return total;
}

void td_hparams_describe(const td_hparams *hp, char *buf, size_t cap)
{
    char q[32];
    if (hp->q_lora_rank) snprintf(q, sizeof q, "q_lora %lld", (long long)hp->q_lora_rank);
    else snprintf(q, sizeof q, "direct q");
    snprintf(buf, cap,
             "%s: hidden %lld, %d layers (%d dense), %d heads, %s, kv_lora %lld, rope %lld, nope %lld, v %lld, "
             "vocab %lld, %d experts (top-%d, %d groups keep %d, %d shared, width %lld), dense width %lld, MTP %d",
             hp->model_type, (long long)hp->hidden_size, hp->n_layers,
             hp->n_routed_experts ? hp->first_k_dense_replace : hp->n_layers, hp->n_heads, q,
             (long long)hp->kv_lora_rank, (long long)hp->qk_rope_head_dim, (long long)hp->qk_nope_head_dim,
             (long long)hp->v_head_dim, (long long)hp->vocab_size, hp->n_routed_experts, hp->n_experts_per_tok,
             hp->n_group, hp->topk_group, hp->n_shared_experts, (long long)hp->moe_intermediate_size,
             (long long)hp->intermediate_size, hp->n_nextn_layers);
}
