/* The model side of the whole-model benchmarks: options, opening (file or --synth in memory), the plan's
 * memory prediction against the resident set, bytes per step, and the extrapolation to more layers. */
#include "td_bench_model.h"

#include "td_clock.h"
#include "td_mmap.h"
#include "td_roofline.h"

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char td_bm_options_help[] =
    "model (one of):\n"
    "  --model M              a .gguf or HF directory\n"
    "  --synth CONFIG         a synthetic model with CONFIG's shapes, built in memory (tandem synth --help)\n"
    "    --layers N           its leading dense layers (at most N), then MoE (default 5, or all it has)\n"
    "    --type T             q4_k_m (default) | q4_k | q5_k | q6_k | q8_0 | bf16\n"
    "    --seed S             default 1\n"
    "    --keep-mtp           with its MTP block\n"
    "engine:\n"
    "  --threads N            CPU threads (default: all cores)\n"
    "  --kernels K            auto (default) | ref | avx2 | avx512 | amx\n"
    "  --rules R              placement rules or preset (default cpu-only): also the memory prediction\n"
    "  --ctx N                positions of the session's KV cache (default 4096)\n"
    "  --kv-type T            bf16 (default) | f32\n"
    "  --moe-async A          auto (default) | on | off: routed experts on a driver thread (on: measure the\n"
    "                         moe_submit handoff)\n"
    "  --extrapolate-layers N the whole model's speed from the measured dense and MoE layer times\n"
    "  --membw-size B         buffer of the bandwidth probe (default max(8 x last-level cache, 1 GiB), at most\n"
    "                         2 GiB: the model needs the memory)\n"
    "  --json                 print only the JSON line\n";

void td_bm_opts_init(td_bm_opts *o)
{
    *o = (td_bm_opts){.synth = {.type = TD_CONVERT_Q4_K_M, .seed = 1}, .ctx = 4096};
}

int td_bm_parse(td_args *a, td_bm_opts *o)
{
    const char *v;
    int64_t x;
    if (td_args_is(a, "--model")) {
        if (!(o->model_path = td_args_value(a))) return -1;
    } else if (td_args_is(a, "--synth")) {
        if (!(o->synth.config = td_args_value(a))) return -1;
    } else if (td_args_is(a, "--layers")) {
        if (!(v = td_args_value(a)) || !td_parse_int(a, v, 1, 4096, &o->synth.layers)) return -1;
    } else if (td_args_is(a, "--type")) {
        if (!(v = td_args_value(a))) return -1;
        if (!td_convert_mode_from_name(v, &o->synth.type)) {
            td_cli_usage_error(a->cmd, "--type: '%s' is not one of q4_k_m, q4_k, q5_k, q6_k, q8_0, bf16", v);
            return -1;
        }
    } else if (td_args_is(a, "--seed")) {
        if (!(v = td_args_value(a)) || !td_parse_i64(a, v, 0, INT64_MAX, &x)) return -1;
        o->synth.seed = (uint64_t)x;
    } else if (td_args_is(a, "--keep-mtp")) {
        o->synth.keep_mtp = true;
    } else if (td_args_is(a, "--threads")) {
        if (!(v = td_args_value(a)) || !td_parse_int(a, v, 0, 4096, &o->threads)) return -1;
    } else if (td_args_is(a, "--kernels")) {
        if (!(v = td_args_value(a))) return -1;
        if (!td_kernels_from_name(v, &o->kernels)) {
            td_cli_usage_error(a->cmd, "--kernels: '%s' is not one of ref, auto, avx2, avx512, amx", v);
            return -1;
        }
    } else if (td_args_is(a, "--rules")) {
        if (!(o->rules = td_args_value(a))) return -1;
    } else if (td_args_is(a, "--ctx")) {
        if (!(v = td_args_value(a)) || !td_parse_i64(a, v, 16, 1 << 24, &o->ctx)) return -1;
    } else if (td_args_is(a, "--kv-type")) {
        if (!(v = td_args_value(a))) return -1;
        if (!td_kv_type_from_name(v, &o->kv_type) || o->kv_type == TD_KV_AUTO) {
            td_cli_usage_error(a->cmd, "--kv-type: '%s' is not one of bf16, f32", v);
            return -1;
        }
    } else if (td_args_is(a, "--moe-async")) {
        if (!(v = td_args_value(a))) return -1;
        if (strcmp(v, "auto") == 0) o->moe_async = TD_MOE_ASYNC_AUTO;
        else if (strcmp(v, "on") == 0) o->moe_async = TD_MOE_ASYNC_ON;
        else if (strcmp(v, "off") == 0) o->moe_async = TD_MOE_ASYNC_OFF;
        else {
            td_cli_usage_error(a->cmd, "--moe-async: '%s' is not one of auto, on, off", v);
            return -1;
        }
    } else if (td_args_is(a, "--extrapolate-layers")) {
        if (!(v = td_args_value(a)) || !td_parse_int(a, v, 1, 4096, &o->extrapolate_layers)) return -1;
    } else if (td_args_is(a, "--membw-size")) {
        if (!(v = td_args_value(a)) || !td_parse_bytes(a, v, &o->membw_size)) return -1;
        if (o->membw_size < (1u << 20)) {
            td_cli_usage_error(a->cmd, "--membw-size: at least 1 MiB");
            return -1;
        }
    } else if (td_args_is(a, "--json")) {
        o->json = true;
    } else {
        return 0;
    }
    return 1;
}

bool td_bm_check(const td_bm_opts *o, const char *cmd)
{
    if (!o->model_path == !o->synth.config) {
        td_cli_usage_error(cmd, "give one model: --model M or --synth CONFIG");
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ opening */

static td_status td_bm_plan(td_bm *b)
{
    char path[4096];
    td_devices_params dp = {.gpu_reserve = -1};
    td_devices devices;
    TD_TRY(td_rules_create(&b->rules));
    TD_TRY(td_rules_load_file(b->rules, td_rules_resolve_path(b->o.rules ? b->o.rules : "cpu-only",
                                                              TANDEM_SOURCE_DIR "/placement_rules", path, sizeof path)));
    TD_TRY(td_devices_detect(&dp, &devices));
    td_kv_type kv = b->o.kv_type != TD_KV_AUTO ? b->o.kv_type : b->o.kernels == TD_KERNELS_REF ? TD_KV_F32 : TD_KV_BF16;
    TD_TRY(td_plan_for_model(b->model, b->rules, &devices, b->o.ctx, td_kv_type_bytes(kv), &b->plan));
    return td_plan_require_fit(b->plan);
}

td_status td_bm_open(const td_bm_opts *o, td_bm *b)
{
    *b = (td_bm){.o = *o};
    td_model_params mp = {.quiet = o->json};
    double t0 = td_now();
    if (o->synth.config) {
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", o->synth.config);
        td_synth_params sp = o->synth;
        td_hparams full;
        TD_TRY(td_hparams_load(sp.config, &full));
        if (!sp.layers) sp.layers = full.n_layers < 5 ? full.n_layers : 5;
        b->o.synth.layers = sp.layers;
        sp.threads = o->threads;
        sp.progress = !o->json && isatty(STDERR_FILENO);
        snprintf(b->name, sizeof b->name, "synth:%s (%d layers, %s, seed %llu, in memory)", basename(copy), sp.layers,
                 td_convert_mode_name(sp.type), (unsigned long long)sp.seed);
        TD_TRY(td_synth_open(&sp, &mp, &b->model));
    } else {
        snprintf(b->name, sizeof b->name, "%s", o->model_path);
        TD_TRY(td_model_open(o->model_path, &mp, &b->model));
    }
    b->build_s = td_now() - t0;
    TD_TRY(td_bm_plan(b));
    return td_bm_reopen(b, o->moe_async);
}

td_status td_bm_reopen(td_bm *b, td_moe_async mode)
{
    td_prof_detach(&b->prof);
    td_session_free(b->s);
    td_engine_close(b->engine);
    b->s = NULL;
    b->engine = NULL;
    td_engine_params ep = {.kernels = b->o.kernels, .n_threads = b->o.threads, .plan = b->plan, .moe_async = mode};
    TD_TRY(td_engine_open(b->model, &ep, &b->engine));
    td_session_params sp = {.n_ctx = b->o.ctx, .kv_type = b->o.kv_type};
    TD_TRY(td_session_create(b->engine, &sp, &b->s));
    return td_prof_attach(&b->prof, b->engine);
}

void td_bm_close(td_bm *b)
{
    td_prof_detach(&b->prof);
    td_session_free(b->s);
    td_engine_close(b->engine);
    td_plan_free(b->plan);
    td_rules_free(b->rules);
    td_model_close(b->model);
    *b = (td_bm){0};
}

td_status td_bm_membw(const td_bm *b, td_membw_result *out)
{
    uint64_t bytes = b->o.membw_size;
    if (!bytes) {
        uint64_t llc8 = 8 * td_cpu_llc_bytes(td_engine_cpu(b->engine)), lo = 1ull << 30, hi = 2ull << 30;
        bytes = llc8 < lo ? lo : llc8 > hi ? hi : llc8;
    }
    /* ten passes at most; the time allows them on a slow VM too (filling 2 GiB takes about a second there) */
    td_membw_params mp = {.bytes = bytes, .passes = 10, .seconds = 4.0};
    return td_membw_measure(td_engine_cpu(b->engine), &mp, out);
}

double td_bm_prefault(const td_bm *b)
{
    double t0 = td_now();
    long page = sysconf(_SC_PAGESIZE);
    volatile uint8_t sink = 0;
    for (int i = 0; i < td_tensor_dir_file_count(b->model->dir); i++) {
        const td_mapped_file *f = td_tensor_dir_file(b->model->dir, i);
        td_mapped_file_advise_willneed(f, 0, f->size);
        for (uint64_t off = 0; off < f->size; off += (uint64_t)page) sink ^= f->data[off];
    }
    (void)sink;
    return td_now() - t0;
}

/* ------------------------------------------------------------------ memory */

void td_bm_rss_read(td_bm_rss *r)
{
    *r = (td_bm_rss){0};
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb;
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1) r->rss = kb << 10;
        else if (sscanf(line, "RssAnon: %llu kB", &kb) == 1) r->anon = kb << 10;
        else if (sscanf(line, "RssFile: %llu kB", &kb) == 1) r->file = kb << 10;
        else if (sscanf(line, "RssShmem: %llu kB", &kb) == 1) r->shmem = kb << 10;
    }
    if (f) fclose(f);
}

uint64_t td_bm_predicted_bytes(const td_bm *b) { return b->plan->devices[0].bytes; }

void td_bm_rss_report(const td_bm *b, const char *when, const td_bm_rss *r, cJSON *j, const char *key)
{
    uint64_t pred = td_bm_predicted_bytes(b);
    double diff = (double)r->rss - (double)pred, tol = fmax(0.05 * (double)pred, 256.0 * (1 << 20));
    bool ok = fabs(diff) <= tol;
    if (!b->o.json) {
        char a[32], p[32];
        printf("memory      %s: resident %s (anon %.0f MiB, file %.0f MiB, shmem %.0f MiB) vs plan %s: %+.0f MiB, "
               "%s (limit +-%.0f MiB)\n",
               when, td_cli_fmt_bytes(r->rss, a, sizeof a), (double)r->anon / (1 << 20), (double)r->file / (1 << 20),
               (double)r->shmem / (1 << 20), td_cli_fmt_bytes(pred, p, sizeof p), diff / (1 << 20),
               ok ? "within" : "OUTSIDE", tol / (1 << 20));
    }
    cJSON *o = cJSON_AddObjectToObject(j, key);
    cJSON_AddNumberToObject(o, "rss_bytes", (double)r->rss);
    cJSON_AddNumberToObject(o, "predicted_bytes", (double)pred);
    cJSON_AddBoolToObject(o, "within", ok);
}

/* ------------------------------------------------------------------ bytes */

static uint64_t td_ffn_bytes(const td_ffn_weights *f)
{
    return td_matrix_bytes(&f->gate) + td_matrix_bytes(&f->up) + td_matrix_bytes(&f->down);
}

uint64_t td_bm_expert_bytes(const td_layer_weights *l) { return l->is_moe ? td_ffn_bytes(&l->moe.experts[0]) : 0; }

uint64_t td_bm_layer_weight_bytes(const td_model *m, const td_layer_weights *l, double experts)
{
    const td_hparams *hp = &m->hp;
    const td_attn_weights *a = &l->attn;
    uint64_t f = sizeof(float), H = (uint64_t)hp->hidden_size;
    uint64_t bytes = 2 * H * f + (uint64_t)(hp->q_lora_rank + hp->kv_lora_rank) * f; /* the norms */
    bytes += hp->q_lora_rank ? td_matrix_bytes(&a->q_a) + td_matrix_bytes(&a->q_b) : td_matrix_bytes(&a->q);
    bytes += td_matrix_bytes(&a->kv_a) + td_matrix_bytes(&a->o);
    bytes += a->split_kv_b ? td_matrix_bytes(&a->k_b) + td_matrix_bytes(&a->v_b) : td_matrix_bytes(&a->kv_b);
    if (!l->is_moe) return bytes + td_ffn_bytes(&l->dense);
    bytes += td_matrix_bytes(&l->moe.router) + (l->moe.bias ? (uint64_t)hp->n_routed_experts * f : 0);
    if (l->moe.has_shared) bytes += td_ffn_bytes(&l->moe.shared);
    return bytes + (uint64_t)llround(experts * (double)td_bm_expert_bytes(l));
}

uint64_t td_bm_kv_bytes_per_pos(const td_bm *b)
{
    return (uint64_t)td_session_kv_bytes_per_token(b->s) / (uint64_t)b->model->hp.n_layers;
}

/* The first main layer of a kind, or NULL. */
static const td_layer_weights *td_bm_first(const td_model *m, bool moe)
{
    for (int l = 0; l < m->hp.n_layers; l++)
        if (m->layers[l].is_moe == moe) return &m->layers[l];
    return NULL;
}

double td_bm_distinct_per_call(const td_bm *b, const td_prof *p)
{
    int64_t calls = 0, distinct = 0;
    for (int l = 0; l < b->model->hp.n_layers; l++) {
        calls += p->moe_calls[l];
        distinct += p->moe_distinct[l];
    }
    return calls ? (double)distinct / (double)calls : b->model->hp.n_experts_per_tok;
}

static int td_bm_dense_count(const td_bm *b, int n_layers)
{
    int k = b->model->hp.first_k_dense_replace;
    return k < n_layers ? k : n_layers;
}

uint64_t td_bm_extrapolate_bytes(const td_bm *b, const td_prof *p, int n_layers, double mean_pos)
{
    const td_model *m = b->model;
    if (!n_layers) n_layers = m->hp.n_layers;
    int K = td_bm_dense_count(b, n_layers);
    const td_layer_weights *dense = td_bm_first(m, false), *moe = td_bm_first(m, true);
    uint64_t bytes = m->embed.row_bytes + (uint64_t)m->hp.hidden_size * sizeof(float) + td_matrix_bytes(&m->head);
    if (dense) bytes += (uint64_t)K * td_bm_layer_weight_bytes(m, dense, 0);
    if (moe) bytes += (uint64_t)(n_layers - K) * td_bm_layer_weight_bytes(m, moe, td_bm_distinct_per_call(b, p));
    return bytes + (uint64_t)llround((double)n_layers * mean_pos * (double)td_bm_kv_bytes_per_pos(b));
}

/* ------------------------------------------------------------------ time */

/* Seconds per call of all main layers together (a profiler's books). */
static double td_bm_layers_total(const td_bm *b, const td_prof *p, double calls)
{
    double s = 0;
    for (int l = 0; l < b->model->hp.n_layers; l++) s += td_prof_slot_total(p, l);
    return s / calls;
}

bool td_bm_extrapolate(const td_bm *b, const td_prof *p, int n_layers, double calls, double wall_per_call,
                       double *seconds)
{
    double kinds[TD_PROF_KIND_COUNT], dense = 0, moe = 0;
    int K = td_bm_dense_count(b, n_layers);
    bool have_dense = td_prof_layer_mean(p, false, kinds, &dense);
    bool have_moe = td_prof_layer_mean(p, true, kinds, &moe);
    if ((K > 0 && !have_dense) || (n_layers > K && !have_moe)) return false;
    /* everything outside the layers (embedding, head, the forward pass's own work) as measured */
    double outside = wall_per_call - td_bm_layers_total(b, p, calls);
    *seconds = outside + (K * dense + (n_layers - K) * moe) / calls;
    return true;
}

void td_bm_split_report(const td_bm *b, const td_prof *p, double calls, cJSON *j)
{
    static const td_prof_kind dense_kinds[] = {TD_PROF_ATTN, TD_PROF_DENSE, TD_PROF_OTHER};
    static const td_prof_kind moe_kinds[] = {TD_PROF_ATTN, TD_PROF_ROUTER, TD_PROF_EXPERTS, TD_PROF_SHARED, TD_PROF_OTHER};
    static const td_prof_kind out_kinds[] = {TD_PROF_EMBED, TD_PROF_HEAD, TD_PROF_MTP, TD_PROF_OTHER};
    cJSON *split = cJSON_AddObjectToObject(j, "layer_ms");
    for (int g = 0; g < 3; g++) {
        double kinds[TD_PROF_KIND_COUNT], total = 0;
        const td_prof_kind *ks = g == 0 ? dense_kinds : g == 1 ? moe_kinds : out_kinds;
        int nk = g == 0 ? 3 : g == 1 ? 5 : 4;
        const char *what = g == 0 ? "dense" : g == 1 ? "moe" : "outside";
        if (g < 2 && !td_prof_layer_mean(p, g == 1, kinds, &total)) continue;
        if (g == 2) {
            for (int k = 0; k < TD_PROF_KIND_COUNT; k++) kinds[k] = td_prof_at(p, td_prof_outside(p), (td_prof_kind)k);
            total = td_prof_slot_total(p, td_prof_outside(p));
        }
        cJSON *o = cJSON_AddObjectToObject(split, what);
        if (!b->o.json) printf("  %-8s %8.3f ms:", what, 1e3 * total / calls);
        for (int i = 0; i < nk; i++) {
            double ms = 1e3 * kinds[ks[i]] / calls;
            cJSON_AddNumberToObject(o, td_prof_kind_name(ks[i]), ms);
            if (!b->o.json) printf(" %s %.3f (%.0f%%)", td_prof_kind_name(ks[i]), ms, total > 0 ? 100 * kinds[ks[i]] / total : 0.0);
        }
        cJSON_AddNumberToObject(o, "total", 1e3 * total / calls);
        if (!b->o.json) printf("\n");
    }
}

void td_bm_json_common(const td_bm *b, cJSON *j, const char *bench)
{
    td_cpu *cpu = td_engine_cpu(b->engine);
    cJSON_AddStringToObject(j, "bench", bench);
    cJSON_AddStringToObject(j, "model", b->name);
    cJSON_AddNumberToObject(j, "layers", b->model->hp.n_layers);
    cJSON_AddNumberToObject(j, "dense_layers", b->model->hp.first_k_dense_replace);
    cJSON_AddStringToObject(j, "kernels", td_kernels_name(td_cpu_kernels(cpu)));
    cJSON_AddNumberToObject(j, "threads", td_cpu_threads(cpu));
    cJSON_AddStringToObject(j, "kv_type", td_kv_type_name(td_session_kv_type(b->s)));
    cJSON_AddNumberToObject(j, "ctx", (double)td_session_ctx(b->s));
}
