/* The planner. Every expected byte count is computed here from the config (read with cJSON, not through
 * td_hparams) or taken from td_model, never typed in; the published DeepSeek-V3 figures (671B parameters,
 * 70,272 KV bytes per token in bf16) are checked as well. */
#include "td_alloc.h"
#include "td_engine.h"
#include "td_gguf_model.h"
#include "td_hf.h"
#include "td_plan.h"
#include "td_backend_cuda.h"
#include "td_cuda.h"
#include "td_test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GIB (1ull << 30)

static const char *td_src_path(const char *rel)
{
    static char buf[4096];
    const char *s = getenv("TANDEM_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/%s", s && *s ? s : ".", rel);
    return buf;
}

/* ------------------------------------------------------------------ the config, read independently */

typedef struct td_cfg {
    int64_t H, V, I, Im, nh, qr, r, dn, dr, dv;
    int64_t E, ns, k, L, dense;
    bool ok;
} td_cfg;

static int64_t td_jint(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

static td_cfg td_read_cfg(const char *path)
{
    td_cfg c = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return c;
    char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *j = cJSON_Parse(buf);
    if (!j) return c;
    c.H = td_jint(j, "hidden_size");
    c.V = td_jint(j, "vocab_size");
    c.I = td_jint(j, "intermediate_size");
    c.Im = td_jint(j, "moe_intermediate_size");
    c.nh = td_jint(j, "num_attention_heads");
    c.qr = td_jint(j, "q_lora_rank");
    c.r = td_jint(j, "kv_lora_rank");
    c.dn = td_jint(j, "qk_nope_head_dim");
    c.dr = td_jint(j, "qk_rope_head_dim");
    c.dv = td_jint(j, "v_head_dim");
    c.E = td_jint(j, "n_routed_experts");
    c.ns = td_jint(j, "n_shared_experts");
    c.k = td_jint(j, "num_experts_per_tok");
    c.L = td_jint(j, "num_hidden_layers");
    c.dense = td_jint(j, "first_k_dense_replace");
    c.ok = c.H > 0 && c.E > 0 && c.L > 0;
    cJSON_Delete(j);
    return c;
}

/* q4_K: 256 weights in 144 bytes (2 f16 scales + 12 bytes of 6-bit scales + 128 bytes of nibbles) */
static uint64_t q4k(int64_t n) { return (uint64_t)(n / 256 * (2 + 2 + 12 + 128)); }
static uint64_t f32(int64_t n) { return (uint64_t)n * 4; }

/* ------------------------------------------------------------------ shared setup */

static const char *const DUAL_SOCKET = "synthetic:pack:2 [numa(memory=412316860416)] core:16 pu:2"; /* 2 x 384 GiB */

/* "path:line:col" of the value after `needle` in a file. */
static void td_file_loc(const char *path, const char *needle, char *out, size_t cap)
{
    snprintf(out, cap, "(not found)");
    FILE *f = fopen(path, "rb");
    if (!f) return;
    static char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *at = strstr(text, needle);
    if (!at) return;
    at = strchr(at, ':') + 2; /* the value */
    int line = 1, col = 1;
    for (const char *q = text; q < at; q++) {
        if (*q == '\n') line++, col = 1;
        else col++;
    }
    snprintf(out, cap, "%s:%d:%d", path, line, col);
}

static td_devices td_dev(const char *topology, int n_gpus, uint64_t gpu_bytes)
{
    td_devices_params p = {.topology = topology, .gpu_reserve = -1, .n_virtual_gpus = n_gpus,
                           .gpu_reserve_fn = td_backend_cuda_reserve_bytes};
    for (int i = 0; i < n_gpus; i++) p.virtual_gpu_bytes[i] = gpu_bytes;
    td_devices d;
    td_status st = td_devices_detect(&p, &d);
    TD_CHECKF(st == TD_OK, "%.160s", td_errmsg());
    return d;
}

static td_rules *td_rules_from(const char *file, const char *text)
{
    td_rules *r;
    if (td_rules_create(&r) != TD_OK) return NULL;
    td_status st = file ? td_rules_load_file(r, file) : td_rules_load_text(r, text, strlen(text), "t.yaml");
    TD_CHECKF(st == TD_OK, "%.160s", td_errmsg());
    return r;
}

static td_plan *td_plan_v3(const td_hparams *hp, const td_rules *r, const td_devices *d, td_assume_type t, int64_t ctx)
{
    td_plan_params p = {.hp = hp, .assume_type = t, .rules = r, .devices = d, .ctx = ctx};
    td_plan *plan = NULL;
    td_status st = td_plan_build(&p, &plan);
    TD_CHECKF(st == TD_OK, "%.160s", td_errmsg());
    return plan;
}

static const td_plan_module *td_mod(const td_plan *plan, const char *name)
{
    int i = td_plan_find(plan, name);
    TD_CHECKF(i >= 0, "no module %.160s", name);
    return i >= 0 ? &plan->modules[i] : &plan->modules[0];
}

/* ------------------------------------------------------------------ DeepSeek-V3 671B on one 24 GB GPU */

static void test_v3_one_gpu(const td_hparams *hp, const td_cfg *c)
{
    td_devices d = td_dev(DUAL_SOCKET, 1, 24 * GIB);
    td_rules *r = td_rules_from(td_src_path("placement_rules/deepseek-v3-1gpu-24gb.yaml"), NULL);
    td_plan *plan = td_plan_v3(hp, r, &d, TD_ASSUME_Q4_K, 32768);
    if (!plan) return;
    TD_CHECK(plan->fits);

    /* published: 671B parameters in the main model, 70,272 KV bytes per token in bf16 */
    int64_t params = 0;
    for (int i = 0; i < plan->n_modules; i++)
        if (plan->modules[i].m.layer < c->L) params += plan->modules[i].m.params;
    TD_CHECKF(fabs((double)params / 671e9 - 1) < 0.005, "%lld parameters", (long long)params);
    TD_CHECK(params == td_hparams_total_params(hp));
    TD_CHECK(plan->kv_bytes_per_token == 70272);
    TD_CHECK(plan->kv_bytes_per_token == c->L * (c->r + c->dr) * 2);

    /* bytes per module, from the config */
    uint64_t attn = q4k(c->H * c->qr) + q4k(c->qr * c->nh * (c->dn + c->dr)) + q4k(c->H * (c->r + c->dr)) +
                    q4k(c->r * c->nh * (c->dn + c->dv)) + q4k(c->nh * c->dv * c->H) + f32(c->H + c->qr + c->r + c->H);
    uint64_t dense = 3 * q4k(c->H * c->I);
    uint64_t router = f32(c->E * c->H) + f32(c->E);
    uint64_t routed = (uint64_t)c->E * 3 * q4k(c->H * c->Im);
    uint64_t shared = 3 * q4k(c->H * c->Im * c->ns);
    uint64_t embed = q4k(c->V * c->H), head = q4k(c->V * c->H);
    uint64_t mtp_extra = f32(3 * c->H) + q4k(2 * c->H * c->H) + embed + head; /* own embedding and head */
    char name[64];
    bool all = true;
    for (int l = 0; l <= c->L; l++) {
        snprintf(name, sizeof name, "model.layers.%d.self_attn", l);
        all &= td_mod(plan, name)->bytes == attn;
        if (l < c->dense) {
            snprintf(name, sizeof name, "model.layers.%d.mlp", l);
            all &= td_mod(plan, name)->bytes == dense;
            continue;
        }
        snprintf(name, sizeof name, "model.layers.%d.mlp.gate", l);
        all &= td_mod(plan, name)->bytes == router;
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts", l);
        all &= td_mod(plan, name)->bytes == routed;
        snprintf(name, sizeof name, "model.layers.%d.mlp.shared_experts", l);
        all &= td_mod(plan, name)->bytes == shared;
    }
    TD_CHECK(all);
    TD_CHECK(td_mod(plan, "model.embed_tokens")->bytes == embed);
    TD_CHECK(td_mod(plan, "lm_head")->bytes == head);
    TD_CHECK(td_mod(plan, "model.norm")->bytes == f32(c->H));
    snprintf(name, sizeof name, "model.layers.%lld", (long long)c->L);
    TD_CHECK(td_mod(plan, name)->bytes == mtp_extra);

    /* the preset's devices, and what lands on the GPU */
    int64_t moe_layers = c->L - c->dense + 1; /* with the MTP block's */
    uint64_t gpu = (uint64_t)(c->L + 1) * attn + (uint64_t)c->dense * dense +
                   (uint64_t)moe_layers * (router + shared) + f32(c->H) + head + mtp_extra;
    uint64_t kv = (uint64_t)((c->L + 1) * (c->r + c->dr) * 2 * 32768);
    const td_plan_device *g = &plan->devices[1], *cpu = &plan->devices[0];
    TD_CHECKF(g->weight_bytes == gpu, "%llu vs %llu", (unsigned long long)g->weight_bytes, (unsigned long long)gpu);
    TD_CHECK(g->kv_bytes == kv && g->bytes == gpu + kv + td_backend_cuda_reserve_bytes(&plan->hp, 512, 32768) &&
             g->bytes <= 24 * GIB);
    TD_CHECK(cpu->weight_bytes == (uint64_t)moe_layers * routed + embed);
    TD_CHECK(td_mod(plan, "model.layers.30.mlp.experts")->place.device.kind == TD_DEVICE_CPU);
    TD_CHECK(td_mod(plan, "model.layers.30.self_attn")->place.device.kind == TD_DEVICE_CUDA);

    /* the dual-socket host: routed experts split between the nodes, half each, nothing duplicated */
    uint64_t split[2] = {0, 0};
    bool halves = true;
    for (int i = 0; i < plan->n_modules; i++) {
        const td_plan_module *pm = &plan->modules[i];
        if (pm->m.kind != TD_MODULE_EXPERTS) continue;
        halves &= pm->place.numa == TD_NUMA_SPLIT && pm->node_bytes[0] + pm->node_bytes[1] == pm->bytes;
        halves &= pm->node_bytes[0] == pm->bytes / 2 && pm->node_bytes[1] == pm->bytes / 2;
        split[0] += pm->node_bytes[0];
        split[1] += pm->node_bytes[1];
    }
    TD_CHECK(halves && split[0] == split[1] && split[0] + split[1] == (uint64_t)moe_layers * routed);
    TD_CHECK(cpu->n_numa == 2 && cpu->numa_bytes[0] + cpu->numa_bytes[1] == cpu->bytes);
    TD_CHECK(cpu->numa_bytes[0] == split[0] + embed / 2 && cpu->numa_bytes[1] == split[1] + embed - embed / 2);

    /* the JSON a script reads */
    char *json = td_plan_json(plan, r);
    cJSON *j = json ? cJSON_Parse(json) : NULL;
    TD_CHECK(j != NULL);
    if (j) {
        TD_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "fits")));
        TD_CHECK(cJSON_GetObjectItem(j, "kv_bytes_per_token")->valuedouble == 70272);
        TD_CHECK(cJSON_GetObjectItem(j, "decode_tok_s_estimate")->valuedouble == plan->decode_tok_s);
        const cJSON *devs = cJSON_GetObjectItem(j, "devices");
        const cJSON *jc = cJSON_GetObjectItem(devs, "cpu"), *jg = cJSON_GetObjectItem(devs, "cuda:0");
        TD_CHECK(jc && jg && cJSON_GetObjectItem(jg, "budget")->valuedouble == (double)(24 * GIB));
        TD_CHECK(jg && cJSON_GetObjectItem(jg, "bytes")->valuedouble == (double)g->bytes);
        const cJSON *numa = cJSON_GetObjectItem(jc, "numa");
        TD_CHECK(cJSON_GetArraySize(numa) == 2);
        TD_CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(numa, 1), "node")->valuedouble == 1);
        TD_CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(numa, 1), "bytes")->valuedouble == (double)cpu->numa_bytes[1]);
        const cJSON *mods = cJSON_GetObjectItem(j, "modules");
        TD_CHECK(cJSON_GetArraySize(mods) == plan->n_modules);
        const cJSON *m0 = cJSON_GetArrayItem(mods, 0);
        TD_CHECK(strcmp(cJSON_GetObjectItem(m0, "name")->valuestring, "model.embed_tokens") == 0);
        TD_CHECK(strcmp(cJSON_GetObjectItem(m0, "device")->valuestring, "cpu") == 0);
        TD_CHECK(cJSON_GetObjectItem(m0, "bytes")->valuedouble == (double)embed);
        cJSON_Delete(j);
    }
    td_free(json);
    td_plan_free(plan);
    td_rules_free(r);
}

/* ------------------------------------------------------------------ the roofline, recomputed */

static void test_roofline(const td_hparams *hp, const td_cfg *c)
{
    td_devices_params dp = {.topology = "synthetic:pack:1 [numa(memory=824633720832)] core:8 pu:1",
                            .gpu_reserve = -1, .n_virtual_gpus = 1, .cpu_bw_gbps = 150, .gpu_bw_gbps = 900};
    dp.virtual_gpu_bytes[0] = 24 * GIB;
    td_devices d;
    TD_CHECK(td_devices_detect(&dp, &d) == TD_OK);
    td_rules *r = td_rules_from(td_src_path("placement_rules/deepseek-v3-1gpu-24gb.yaml"), NULL);
    td_plan *plan = td_plan_v3(hp, r, &d, TD_ASSUME_Q4_K, 8192);
    if (!plan) return;
    double gpu = 0, cpu = 0;
    for (int i = 0; i < plan->n_modules; i++) {
        const td_plan_module *pm = &plan->modules[i];
        if (pm->m.layer >= c->L) continue; /* plain decoding: the MTP block is not run */
        double b = (double)pm->bytes;
        if (pm->m.kind == TD_MODULE_EXPERTS) b = b * (double)c->k / (double)c->E;
        if (pm->m.kind == TD_MODULE_EMBED) b /= (double)c->V;
        *(pm->place.device.kind == TD_DEVICE_CPU ? &cpu : &gpu) += b;
    }
    gpu += (double)(c->L * (c->r + c->dr) * 2) * 8192; /* the KV cache, read whole */
    double want = 1.0 / (gpu / 900e9 + cpu / 150e9);
    TD_CHECKF(fabs(plan->decode_tok_s / want - 1) < 1e-6, "%g vs %g tok/s", plan->decode_tok_s, want);
    td_plan_free(plan);
    td_rules_free(r);
}

/* ------------------------------------------------------------------ KTransformers' file plans like ours */

static void test_kt_same_devices(const td_hparams *hp)
{
    td_devices d = td_dev(DUAL_SOCKET, 1, 24 * GIB);
    td_rules *ours = td_rules_from(td_src_path("placement_rules/deepseek-v3-1gpu-24gb.yaml"), NULL);
    td_rules *kt = td_rules_from(td_src_path("tests/data/rules/kt-deepseek-v3-1gpu.yaml"), NULL);
    td_plan *a = td_plan_v3(hp, ours, &d, TD_ASSUME_Q4_K, 32768);
    td_plan *b = td_plan_v3(hp, kt, &d, TD_ASSUME_Q4_K, 32768);
    if (a && b) {
        TD_CHECK(a->n_modules == b->n_modules);
        int same = 0;
        for (int i = 0; i < a->n_modules && i < b->n_modules; i++) {
            bool eq = td_device_id_eq(a->modules[i].place.device, b->modules[i].place.device);
            TD_CHECKF(eq, "%.160s: %.160s vs %.160s", a->modules[i].m.name, a->modules[i].origin, b->modules[i].origin);
            same += eq;
        }
        TD_CHECK(same == a->n_modules);
        for (int i = 0; i < a->n_devices; i++) TD_CHECK(a->devices[i].bytes == b->devices[i].bytes);
        TD_CHECK(b->fits);
    }
    td_plan_free(a);
    td_plan_free(b);
    td_rules_free(ours);
    td_rules_free(kt);
}

/* ------------------------------------------------------------------ the planner's modules are td_model's */

static void test_fixture_bytes(void)
{
    static const char *const fixtures[] = {"safetensors/tiny-dsv3-bf16", "safetensors/tiny-dsv3-fp8",
                                           "safetensors/tiny-dsv3-qdirect-bf16", "gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf",
                                           "gguf/tiny-dsv3-q8_0-legacy.gguf"};
    td_devices d = td_dev(NULL, 0, 0);
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        char path[4096];
        snprintf(path, sizeof path, "%s", td_test_fixture(fixtures[f]));
        td_model *m = NULL;
        td_status st = td_model_open(path, NULL, &m);
        TD_CHECKF(st == TD_OK, "%.160s: %.160s", path, td_errmsg());
        if (st != TD_OK) continue;
        /* headers only: a directory of its own, no td_model */
        td_hparams hp;
        td_tensor_dir *dir;
        td_gguf *gguf = NULL;
        TD_CHECK(td_tensor_dir_create(&dir) == TD_OK);
        if (strstr(path, ".gguf")) TD_CHECK(td_gguf_model_open(path, NULL, &hp, dir, &gguf) == TD_OK);
        else TD_CHECK(td_hf_load(path, &hp, dir) == TD_OK);
        td_plan_params p = {.hp = &hp, .dir = dir, .devices = &d};
        td_plan *plan = NULL;
        st = td_plan_build(&p, &plan);
        TD_CHECKF(st == TD_OK, "%.160s", td_errmsg());
        if (plan) {
            TD_CHECKF(plan->n_modules == m->n_modules, "%.160s: %d vs %d modules", path, plan->n_modules, m->n_modules);
            for (int i = 0; i < plan->n_modules && i < m->n_modules; i++) {
                const td_module *a = &plan->modules[i].m, *b = &m->modules[i];
                TD_CHECKF(strcmp(a->name, b->name) == 0 && a->kind == b->kind && a->layer == b->layer &&
                              a->bytes == b->bytes && a->params == b->params,
                          "%.160s: %.160s %llu vs %.160s %llu", path, a->name, (unsigned long long)a->bytes, b->name,
                          (unsigned long long)b->bytes);
            }
            TD_CHECK(plan->has_mtp == (m->mtp != NULL));
            TD_CHECK(plan->kv_bytes_per_token == td_model_kv_bytes_per_token(m, 2));
        }
        td_plan_free(plan);
        /* planning from the config with the types the file has gives the same bytes */
        if (strstr(path, "bf16")) {
            td_plan_params q = {.hp = &hp, .assume_type = TD_ASSUME_BF16, .devices = &d};
            st = td_plan_build(&q, &plan);
            TD_CHECK(st == TD_OK && plan->n_modules == m->n_modules);
            for (int i = 0; st == TD_OK && i < plan->n_modules; i++)
                TD_CHECKF(plan->modules[i].m.bytes == m->modules[i].bytes, "%.160s", m->modules[i].name);
            td_plan_free(plan);
        }
        /* the engine's helper agrees */
        TD_CHECK(td_plan_for_model(m, NULL, &d, 64, 4, &plan) == TD_OK);
        TD_CHECK(plan && plan->n_modules == m->n_modules && plan->kv_bytes == (uint64_t)td_model_kv_bytes_per_token(m, 4) *
                 64 + (plan->has_mtp ? (uint64_t)(hp.kv_lora_rank + hp.qk_rope_head_dim) * 4 * 64 : 0));
        td_plan_free(plan);
        td_gguf_close(gguf);
        td_tensor_dir_free(dir);
        td_model_close(m);
    }
}

/* ------------------------------------------------------------------ refusals and their advice */

static void test_overflow_advice(const td_hparams *hp)
{
    td_devices d = td_dev(DUAL_SOCKET, 1, 24 * GIB);
    /* too many layers' experts on the GPU: the advice names the rule and a layer range that fits */
    const char *text = "- match: {name: '\\.mlp\\.experts$', layers: 3-30}\n  place: {device: cuda:0}\n"
                       "- place: {device: cpu}\n";
    td_rules *r = td_rules_from(NULL, text);
    td_plan *plan = td_plan_v3(hp, r, &d, TD_ASSUME_Q4_K, 4096);
    if (!plan) return;
    TD_CHECK(!plan->fits && plan->n_overflows == 1 && plan->overflows[0].device == 1);
    const char *adv = plan->overflows[0].advice;
    TD_CHECKF(strstr(adv, "over by") && strstr(adv, "t.yaml:2:19"), "%.160s", adv); /* the rule's device: cuda:0 */
    const char *to = strstr(adv, "layers: 3-30 to 3-");
    int keep = -1;
    TD_CHECKF(to && sscanf(to, "layers: 3-30 to 3-%d", &keep) == 1, "%.160s", adv);
    TD_CHECK(td_plan_require_fit(plan) == TD_E_NOMEM && strstr(td_errmsg(), "over by"));
    td_plan_free(plan);
    td_rules_free(r);
    /* following the advice fits, one layer more does not */
    for (int extra = 0; keep >= 3 && extra < 2; extra++) {
        char fixed[256];
        snprintf(fixed, sizeof fixed,
                 "- match: {name: '\\.mlp\\.experts$', layers: 3-%d}\n  place: {device: cuda:0}\n"
                 "- place: {device: cpu}\n",
                 keep + extra);
        r = td_rules_from(NULL, fixed);
        plan = td_plan_v3(hp, r, &d, TD_ASSUME_Q4_K, 4096);
        TD_CHECKF(plan && plan->fits == (extra == 0), "layers 3-%d", keep + extra);
        td_plan_free(plan);
        td_rules_free(r);
    }
    /* the 1-GPU preset on an 8 GiB card: over, and the rule that fills the GPU is named */
    td_devices small = td_dev(DUAL_SOCKET, 1, 8 * GIB);
    r = td_rules_from(td_src_path("placement_rules/deepseek-v3-1gpu-24gb.yaml"), NULL);
    plan = td_plan_v3(hp, r, &small, TD_ASSUME_Q4_K, 32768);
    TD_CHECK(plan && !plan->fits);
    if (plan) {
        char loc[4200];
        td_file_loc(td_src_path("placement_rules/deepseek-v3-1gpu-24gb.yaml"), "device: cuda:0", loc, sizeof loc);
        TD_CHECKF(strstr(plan->overflows[0].advice, loc), "%.250s should name %.200s", plan->overflows[0].advice, loc);
    }
    td_plan_free(plan);
    /* a host too small: over, and nowhere to put the rest */
    td_devices tiny = td_dev("synthetic:pack:2 [numa(memory=68719476736)] core:2 pu:1", 1, 24 * GIB);
    plan = td_plan_v3(hp, r, &tiny, TD_ASSUME_Q4_K, 32768);
    TD_CHECK(plan && !plan->fits && plan->overflows[0].device == 0);
    if (plan) TD_CHECKF(strstr(plan->overflows[0].advice, "No device has"), "%.160s", plan->overflows[0].advice);
    td_plan_free(plan);
    td_rules_free(r);
    /* a NUMA node over its share while the host as a whole has room */
    td_devices two = td_dev("synthetic:pack:2 [numa(memory=274877906944)] core:2 pu:1", 1, 24 * GIB);
    r = td_rules_from(NULL, "- match: {name: experts}\n  place: {numa: node:1}\n");
    plan = td_plan_v3(hp, r, &two, TD_ASSUME_Q4_K, 4096);
    TD_CHECK(plan && !plan->fits && plan->overflows[0].numa_node == 1);
    if (plan) TD_CHECKF(strstr(plan->overflows[0].advice, "NUMA node 1") && strstr(plan->overflows[0].advice, "interleave"),
                        "%.160s", plan->overflows[0].advice);
    td_plan_free(plan);
    td_rules_free(r);
}

static void td_expect_plan_error(const td_hparams *hp, const td_devices *d, const char *text, const char *needle,
                                 const char *want, td_assume_type t)
{
    td_rules *r = td_rules_from(NULL, text);
    td_plan_params p = {.hp = hp, .assume_type = t, .rules = r, .devices = d};
    td_plan *plan = NULL;
    td_status st = td_plan_build(&p, &plan);
    /* where needle sits in the text */
    const char *at = strstr(text, needle);
    int line = 1, col = 1;
    for (const char *q = text; at && q < at; q++) {
        if (*q == '\n') line++, col = 1;
        else col++;
    }
    char loc[64];
    snprintf(loc, sizeof loc, "t.yaml:%d:%d: ", line, col);
    TD_CHECKF(st != TD_OK && plan == NULL, "expected an error for %.160s", text);
    TD_CHECKF(strncmp(td_errmsg(), loc, strlen(loc)) == 0 && strstr(td_errmsg(), want), "'%.160s' should start with '%.160s' "
              "and say '%.160s'", td_errmsg(), loc, want);
    td_rules_free(r);
}

static void test_plan_errors(const td_hparams *hp)
{
    td_devices d = td_dev(DUAL_SOCKET, 1, 24 * GIB);
    td_expect_plan_error(hp, &d, "- match: {name: 'layers\\.1\\.'}\n  place: {device: cuda:1}\n", "cuda:1",
                         "cuda:1 does not exist", TD_ASSUME_Q4_K);
    td_expect_plan_error(hp, &d, "- place: {device: cuda:3}\n", "cuda:3", "--gpus 4x24GiB", TD_ASSUME_Q4_K);
    td_expect_plan_error(hp, &d, "- match: {name: x}\n  place: {device: cpu}\n- place: {numa: node:2}\n", "node:2",
                         "the host (synthetic:", TD_ASSUME_Q4_K);
    td_expect_plan_error(hp, &d, "- place: {numa: split}\n", "split", "which has none", TD_ASSUME_Q4_K);
    td_devices none = td_dev(DUAL_SOCKET, 0, 0);
    td_expect_plan_error(hp, &none, "- place: {device: cuda:0}\n", "cuda:0", "there is no GPU", TD_ASSUME_Q4_K);
    /* a conversion the rows allow changes the bytes; one they don't is refused */
    td_rules *r = td_rules_from(NULL, "- match: {name: self_attn}\n  place: {weights: q8_0}\n");
    td_plan *bf = td_plan_v3(hp, NULL, &d, TD_ASSUME_BF16, 4096), *q8 = td_plan_v3(hp, r, &d, TD_ASSUME_BF16, 4096);
    if (bf && q8) {
        const td_plan_module *a = td_mod(bf, "model.layers.5.self_attn"), *b = td_mod(q8, "model.layers.5.self_attn");
        int64_t norms = 2 * hp->hidden_size + hp->q_lora_rank + hp->kv_lora_rank;
        uint64_t want = (uint64_t)(a->m.params - norms) / 32 * 34 + (uint64_t)norms * 2;
        TD_CHECKF(b->bytes == want && b->m.bytes == a->m.bytes, "%llu vs %llu", (unsigned long long)b->bytes,
                  (unsigned long long)want);
        TD_CHECK(b->place.weights == TD_WEIGHTS_CONVERT);
    }
    td_plan_free(bf);
    td_plan_free(q8);
    td_rules_free(r);
    td_hparams tiny;
    TD_CHECK(td_hparams_load(td_test_fixture("safetensors/tiny-dsv3-bf16/config.json"), &tiny) == TD_OK);
    td_expect_plan_error(&tiny, &d, "- match: {name: self_attn}\n  place: {weights: q4_k}\n", "q4_k",
                         "256-element blocks", TD_ASSUME_BF16);
    /* planning from a config needs types */
    td_plan_params p = {.hp = hp, .devices = &d};
    td_plan *plan;
    TD_CHECK(td_plan_build(&p, &plan) == TD_E_ARG && strstr(td_errmsg(), "--assume-type"));
}

/* ------------------------------------------------------------------ --auto */

static void test_auto(const td_hparams *hp)
{
    td_devices d = td_dev(DUAL_SOCKET, 1, 24 * GIB);
    td_rules *r = td_rules_from(td_src_path("placement_rules/deepseek-v3-1gpu-24gb.yaml"), NULL);
    td_plan_params p = {.hp = hp, .assume_type = TD_ASSUME_Q4_K, .rules = r, .devices = &d, .ctx = 32768};
    td_plan *base = NULL, *plan = NULL;
    TD_CHECK(td_plan_build(&p, &base) == TD_OK);
    td_status st = td_plan_auto(&p, r, &plan);
    TD_CHECKF(st == TD_OK, "%.160s", td_errmsg());
    if (!plan || !base) return;
    int n_auto = 0;
    for (int i = 0; i < td_rules_count(r); i++) n_auto += td_rules_at(r, i)->origin == TD_RULE_AUTO;
    TD_CHECK(n_auto >= 1 && plan->fits);
    uint64_t layer_bytes = td_mod(plan, "model.layers.3.mlp.experts")->bytes;
    const td_plan_device *g = &plan->devices[1];
    TD_CHECK(g->bytes > base->devices[1].bytes && g->budget - g->bytes < layer_bytes); /* no room for one more */
    int moved = 0, lowest = 1 << 30;
    for (int i = 0; i < plan->n_modules; i++) {
        const td_plan_module *pm = &plan->modules[i];
        if (pm->m.kind != TD_MODULE_EXPERTS || pm->place.device.kind != TD_DEVICE_CUDA) continue;
        TD_CHECK(strcmp(pm->origin, "--auto") == 0 && pm->m.layer < hp->n_layers);
        moved++;
        if (pm->m.layer < lowest) lowest = pm->m.layer;
    }
    TD_CHECK(moved >= 1 && lowest == hp->first_k_dense_replace); /* ties go to the lower layers */
    TD_CHECK(plan->decode_tok_s > base->decode_tok_s);
    td_plan_free(plan);
    td_plan_free(base);
    td_rules_free(r);

    /* two GPUs: each takes the layers whose attention it runs */
    td_devices d2 = td_dev(DUAL_SOCKET, 2, 24 * GIB);
    r = td_rules_from(td_src_path("placement_rules/deepseek-v3-2gpu.yaml"), NULL);
    p.rules = r;
    p.devices = &d2;
    TD_CHECK(td_plan_auto(&p, r, &plan) == TD_OK);
    int per_gpu[2] = {0, 0};
    for (int i = 0; plan && i < plan->n_modules; i++) {
        const td_plan_module *pm = &plan->modules[i];
        if (pm->m.kind != TD_MODULE_EXPERTS || pm->place.device.kind != TD_DEVICE_CUDA) continue;
        char name[64];
        snprintf(name, sizeof name, "model.layers.%d.self_attn", pm->m.layer);
        TD_CHECK(td_device_id_eq(td_mod(plan, name)->place.device, pm->place.device));
        per_gpu[pm->place.device.index]++;
    }
    TD_CHECK(plan && plan->fits && per_gpu[0] > 0 && per_gpu[1] > 0);
    td_plan_free(plan);
    td_rules_free(r);
}

/* ------------------------------------------------------------------ what the engine accepts */

static td_status td_engine_with(const td_model *m, const td_devices *d, const char *text, td_kernels *k)
{
    td_rules *r = td_rules_from(NULL, text);
    td_plan *plan = NULL;
    td_status st = td_plan_for_model(m, r, d, 256, 4, &plan);
    TD_CHECKF(st == TD_OK, "%.200s", td_errmsg());
    if (st == TD_OK) st = td_plan_engine_check(plan, m, k);
    td_plan_free(plan);
    td_rules_free(r);
    return st;
}

static void test_engine_check(void)
{
    td_model *m = NULL, *other = NULL;
    if (td_model_open(td_test_fixture("safetensors/tiny-dsv3-bf16"), NULL, &m) != TD_OK ||
        td_model_open(td_test_fixture("safetensors/tiny-dsv3-qdirect-bf16"), NULL, &other) != TD_OK) {
        TD_CHECKF(false, "%.200s", td_errmsg());
        td_model_close(m);
        return;
    }
    td_devices d = td_dev(NULL, 1, 24 * GIB);
    td_kernels k = TD_KERNELS_AUTO;
    td_rules *cpu = td_rules_from(td_src_path("placement_rules/cpu-only.yaml"), NULL);
    td_plan *plan = NULL;
    TD_CHECK(td_plan_for_model(m, cpu, &d, 256, 4, &plan) == TD_OK);
    k = TD_KERNELS_AUTO;
    TD_CHECK(plan && td_plan_engine_check(plan, m, &k) == TD_OK && k == TD_KERNELS_AUTO);
    /* the plan is for this model only */
    k = TD_KERNELS_AUTO;
    TD_CHECK(plan && td_plan_engine_check(plan, other, &k) == TD_E_ARG && strstr(td_errmsg(), "another model"));
    /* and the engine takes it */
    td_engine_params ep = {.kernels = TD_KERNELS_REF, .plan = plan};
    td_engine *e = NULL;
    TD_CHECKF(td_engine_open(m, &ep, &e) == TD_OK, "%.200s", td_errmsg());
    td_engine_close(e);
    td_plan_free(plan);
    td_rules_free(cpu);

    k = TD_KERNELS_AUTO;
    TD_CHECK(td_engine_with(m, &d, "- place: {kernel: ref}\n", &k) == TD_OK && k == TD_KERNELS_REF);
    k = TD_KERNELS_AVX2;
    TD_CHECK(td_engine_with(m, &d, "- place: {kernel: ref}\n", &k) == TD_E_ARG && strstr(td_errmsg(), "conflicts"));
    k = TD_KERNELS_AUTO;
    TD_CHECK(td_engine_with(m, &d, "- match: {name: experts}\n  place: {kernel: ref}\n- place: {kernel: avx2}\n",
                            &k) == TD_E_UNSUPPORTED);
    TD_CHECK(strstr(td_errmsg(), "one kernel family"));
    TD_CHECK(td_engine_with(m, &d, "- match: {name: 'mlp\\.gate$'}\n  place: {weights: f16}\n", &k) ==
             TD_E_UNSUPPORTED);
    TD_CHECK(strstr(td_errmsg(), "converting weights at load is not written yet"));
    /* devices are the engine's to check: without a GPU, a GPU placement is refused when it opens, naming
     * the module, its rule and how to run on the CPU; with one, the plan runs */
    td_rules *r = td_rules_from(NULL, "- match: {name: self_attn}\n  place: {device: cuda:0}\n");
    plan = NULL;
    TD_CHECK(td_plan_for_model(m, r, &d, 256, 4, &plan) == TD_OK);
    ep.plan = plan;
    e = NULL;
    if (td_cuda_device_count() == 0) {
        TD_CHECK(plan && td_engine_open(m, &ep, &e) == TD_E_DEVICE && !e);
        TD_CHECKF(strstr(td_errmsg(), "model.layers.0.self_attn is placed on cuda:0 (by t.yaml:1)") &&
                      strstr(td_errmsg(), "--rules cpu-only"),
                  "%.300s", td_errmsg());
    } else {
        TD_CHECKF(plan && td_engine_open(m, &ep, &e) == TD_OK, "%s", td_errmsg());
        td_engine_close(e);
    }
    td_plan_free(plan);
    td_rules_free(r);
    td_model_close(m);
    td_model_close(other);
}

/* ------------------------------------------------------------------ out of memory */

static void test_out_of_memory(const td_hparams *hp)
{
    td_devices d = td_dev(DUAL_SOCKET, 1, 24 * GIB);
    td_rules *r = td_rules_from(td_src_path("placement_rules/deepseek-v3-1gpu-24gb.yaml"), NULL);
    int ok = 0, nomem = 0, other = 0;
    for (long k = 0; k < 4000000 && !ok; k = k < 64 ? k + 1 : k + k / 3) {
        td_plan_params p = {.hp = hp, .assume_type = TD_ASSUME_Q4_K, .rules = r, .devices = &d, .ctx = 32768};
        td_plan *plan = NULL;
        td_alloc_fail_after(k);
        td_status st = td_plan_build(&p, &plan);
        td_alloc_fail_after(-1);
        if (st == TD_OK) ok++;
        else if (st == TD_E_NOMEM) nomem++;
        else other++, fprintf(stderr, "after %ld allocations: %s\n", k, td_errmsg());
        TD_CHECK((st == TD_OK) == (plan != NULL));
        td_plan_free(plan);
    }
    TD_CHECK(ok > 0 && nomem > 0 && other == 0);
    td_rules_free(r);
}

int main(void)
{
    const char *cfg_path = td_test_fixture("real/deepseek-v3-config.json");
    td_cfg c = td_read_cfg(cfg_path);
    td_hparams hp;
    if (!c.ok || td_hparams_load(cfg_path, &hp) != TD_OK) return td_test_skip("no DeepSeek-V3 config fixture");
    test_v3_one_gpu(&hp, &c);
    test_roofline(&hp, &c);
    test_kt_same_devices(&hp);
    test_fixture_bytes();
    test_overflow_advice(&hp);
    test_plan_errors(&hp);
    test_auto(&hp);
    test_engine_check();
    test_out_of_memory(&hp);
    return td_test_finish();
}
