/* tandem bench experts: one MoE layer of routed experts at DeepSeek-V3's shapes on synthetic weights,
 * measured as effective weight bandwidth (against membw from the same process) and TFLOP/s. */
#include "td_alloc.h"
#include "td_bench.h"
#include "td_cli.h"
#include "td_clock.h"
#include "td_cpu.h"
#include "td_onednn.h"
#include "td_pool.h"
#include "td_randw.h"
#include "td_roofline.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TD_BX_HIDDEN 7168
#define TD_BX_WIDTH 2048
#define TD_BX_EXPERTS 256
#define TD_BX_TOPK 8

typedef struct td_bx_opts {
    td_type type;
    int64_t tokens;
    int threads, experts, iters;
    double seconds;
    td_kernels kernels;
    uint64_t seed;
    bool json;
    bool onednn;
    uint64_t membw_size;
} td_bx_opts;

static void td_bx_help(void)
{
    printf("usage: tandem bench experts [--type T] [--tokens N] [--threads N] [--kernels K] [--experts N]\n"
           "                            [--onednn] [--time S] [--iters N] [--seed N] [--json]\n\n"
           "Runs the routed experts of one MoE layer (hidden 7168, expert width 2048, 256 experts, top-8 drawn at\n"
           "random for every token of every iteration: gate and up, SiLU, down, weighted sum) on random weights\n"
           "of type T. Prints the effective weight bandwidth (bytes of the experts used / time), its ratio to the\n"
           "read bandwidth measured in the same process, TFLOP/s, and the roofline min(peak, membw x FLOP/byte).\n"
           "Last line: JSON with gbps, membw_gbps, ratio, tflops.\n\n"
           "  --type T      q4_k (default), q5_k, q6_k, q8_0, q2_k, q3_k, iq4_xs, bf16, f16, f32\n"
           "  --tokens N    tokens in the batch (1 = decode; 512, 2048 = prefill); default 1\n"
           "  --threads N   worker threads (default: %s)\n"
           "  --kernels K   auto (default) | avx2 | avx512 | amx | ref\n"
           "  --experts N   distinct expert weights in memory, 8..256 (default: enough for max(8 x last-level\n"
           "                cache, 1 GiB), within a quarter of the available memory and as many as are made in\n"
           "                --time); the 256 routed experts map onto them round-robin, so that nothing is\n"
           "                served from cache\n"
           "  --onednn      also time oneDNN's matmul (bf16 and int8) on one expert's shape, M = tokens per expert,\n"
           "                cycling over weights that come from memory: the library anchor\n"
           "  --membw-size B  buffer of the bandwidth probe (default: max(8 x last-level cache, 1 GiB), within a\n"
           "                quarter of the available memory and what is filled in 40%% of --time)\n"
           "  --time S      seconds per measurement: each bandwidth probe (before and after), making the\n"
           "                weights, and the timed iterations (default 3)\n"
           "  --iters N     at most N timed iterations (default 1000)\n",
           td_cli_threads_default());
}

static int td_bx_parse(int argc, char **argv, td_bx_opts *o)
{
    *o = (td_bx_opts){.type = TD_TYPE_Q4_K, .tokens = 1, .iters = 1000, .seconds = 3, .kernels = TD_KERNELS_AUTO,
                      .seed = 1};
    td_args a;
    td_args_init(&a, "bench experts", argc, argv);
    while (td_args_next(&a)) {
        const char *v;
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_bx_help();
            return 0;
        } else if (td_args_is(&a, "--json")) {
            o->json = true;
        } else if (td_args_is(&a, "--onednn")) {
            o->onednn = true;
        } else if (td_args_is(&a, "--membw-size")) {
            if (!(v = td_args_value(&a)) || !td_parse_bytes(&a, v, &o->membw_size)) return 2;
            if (o->membw_size < (1u << 20)) return td_cli_usage_error("bench experts", "--membw-size: at least 1 MiB");
        } else if (td_args_is(&a, "--type")) {
            if (!(v = td_args_value(&a))) return 2;
            bool ok = td_type_from_name(v, &o->type);
            ok = ok && (td_type_info(o->type)->is_quant || td_type_info(o->type)->is_float);
            ok = ok && o->type != TD_TYPE_Q8_K && o->type != TD_TYPE_F64 && td_type_row_ok(o->type, TD_BX_WIDTH);
            if (!ok)
                return td_cli_usage_error("bench experts", "--type: '%s' is not a weight type (q4_k, q8_0, bf16, ...)", v);
        } else if (td_args_is(&a, "--tokens")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 1, 65536, &o->tokens)) return 2;
        } else if (td_args_is(&a, "--threads")) {
            if (!(v = td_args_value(&a)) || !td_parse_threads(&a, v, &o->threads)) return 2;
        } else if (td_args_is(&a, "--experts")) {
            if (!(v = td_args_value(&a)) || !td_parse_int(&a, v, TD_BX_TOPK, TD_BX_EXPERTS, &o->experts)) return 2;
        } else if (td_args_is(&a, "--iters")) {
            if (!(v = td_args_value(&a)) || !td_parse_int(&a, v, 1, 1000000, &o->iters)) return 2;
        } else if (td_args_is(&a, "--time")) {
            if (!(v = td_args_value(&a)) || !td_parse_double(&a, v, 0.01, 3600, &o->seconds)) return 2;
        } else if (td_args_is(&a, "--seed")) {
            int64_t s;
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 0, INT64_MAX, &s)) return 2;
            o->seed = (uint64_t)s;
        } else if (td_args_is(&a, "--kernels")) {
            if (!(v = td_args_value(&a))) return 2;
            if (!td_kernels_from_name(v, &o->kernels))
                return td_cli_usage_error("bench experts", "--kernels: '%s' is not one of auto, ref, avx2, avx512, amx", v);
        } else {
            return td_args_unknown(&a);
        }
    }
    return -1;
}

/* The distinct expert weights: one buffer each (gate, up, down back to back), filled in parallel. */
typedef struct td_bx_weights {
    int n;
    td_type type;
    uint8_t **buf;
    td_ffn_weights *phys;  /* [n] */
    uint64_t expert_bytes;
    uint64_t seed;
    int fill_lo, fill_hi;  /* the experts being filled */
} td_bx_weights;

static void td_bx_fill_task(const td_pool_task *t, void *arg)
{
    td_bx_weights *w = arg;
    const td_type_traits *tt = td_type_info(w->type);
    size_t chunk = ((size_t)1 << 20) / (size_t)tt->block_bytes * (size_t)tt->block_bytes; /* whole blocks */
    size_t per = (size_t)w->expert_bytes, chunks = (per + chunk - 1) / chunk;
    size_t n = (size_t)(w->fill_hi - w->fill_lo);
    for (size_t i = (size_t)t->ith; i < n * chunks; i += (size_t)t->nth) {
        size_t e = (size_t)w->fill_lo + i / chunks, c0 = (i % chunks) * chunk;
        size_t len = per - c0 < chunk ? per - c0 : chunk;
        td_randw_fill(w->type, w->buf[e] + c0, len, w->seed + e, c0 / (size_t)tt->block_bytes);
    }
}

static td_status td_bx_weights_alloc(td_bx_weights *w, int e)
{
    size_t up_row = td_type_row_bytes(w->type, TD_BX_HIDDEN), down_row = td_type_row_bytes(w->type, TD_BX_WIDTH);
    uint8_t *b = w->buf[e] = td_malloc_aligned((size_t)w->expert_bytes, 4096);
    if (!b) return td_fail(TD_E_NOMEM, "out of memory for expert %d of %.1f MiB (lower --experts)", e,
                           (double)w->expert_bytes / (1 << 20));
    size_t mat = (size_t)TD_BX_WIDTH * up_row;
    td_type type = w->type;
    w->phys[e].gate = (td_matrix){type, TD_BX_WIDTH, TD_BX_HIDDEN, b, up_row, NULL, 0, 0, 0, {0, 0}, "gate"};
    w->phys[e].up = (td_matrix){type, TD_BX_WIDTH, TD_BX_HIDDEN, b + mat, up_row, NULL, 0, 0, 0, {0, 0}, "up"};
    w->phys[e].down =
        (td_matrix){type, TD_BX_HIDDEN, TD_BX_WIDTH, b + 2 * mat, down_row, NULL, 0, 0, 0, {0, 0}, "down"};
    return TD_OK;
}

/* Up to n experts; with seconds > 0, as many as the machine fills in about that time (top-k at least):
 * random quantized weights are slow to make, and a short run should stay short. */
static td_status td_bx_weights_make(td_bx_weights *w, int n, td_type type, int threads, uint64_t seed, double seconds)
{
    *w = (td_bx_weights){.type = type, .seed = seed};
    size_t up_row = td_type_row_bytes(type, TD_BX_HIDDEN), down_row = td_type_row_bytes(type, TD_BX_WIDTH);
    w->expert_bytes = 2ull * TD_BX_WIDTH * up_row + (uint64_t)TD_BX_HIDDEN * down_row;
    w->buf = td_calloc((size_t)n, sizeof *w->buf);
    w->phys = td_calloc((size_t)n, sizeof *w->phys);
    if (!w->buf || !w->phys) return td_fail(TD_E_NOMEM, "out of memory");
    td_topo *topo = NULL;
    td_pool *pool = NULL;
    TD_TRY(td_topo_load(NULL, &topo));
    td_pool_params pp = {.n_threads = threads, .topo = topo, .pin = true};
    td_status st = td_pool_create(&pp, &pool);
    double t0 = td_now();
    int batch = n < TD_BX_TOPK ? n : TD_BX_TOPK;
    while (st == TD_OK && batch > 0) {
        for (int e = w->n; e < w->n + batch && st == TD_OK; e++) st = td_bx_weights_alloc(w, e);
        if (st != TD_OK) break;
        w->fill_lo = w->n;
        w->fill_hi = w->n + batch;
        td_pool_run(pool, td_bx_fill_task, w);
        w->n += batch;
        double spent = td_now() - t0, left = seconds - spent;
        double more = seconds <= 0 ? n : left > 0 ? (double)w->n / spent * left : 0;
        batch = (int)(more < (double)(n - w->n) ? more : (double)(n - w->n));
    }
    for (int e = w->n; e < n; e++) td_free(w->buf[e]); /* one whose batch failed */
    td_pool_free(pool);
    td_topo_free(topo);
    return st;
}

static void td_bx_weights_free(td_bx_weights *w)
{
    for (int e = 0; w->buf && e < w->n; e++) td_free(w->buf[e]);
    td_free(w->buf);
    td_free(w->phys);
}

/* Random top-8 of 256 for every token, and the logical -> physical map: the experts used in this
 * iteration take the next distinct weights round-robin, continuing where the last iteration stopped. */
static int td_bx_route(const td_bx_opts *o, uint64_t *rng, int32_t *ids, float *wts, td_ffn_weights *logical,
                       const td_bx_weights *w, int *cursor)
{
    int perm[TD_BX_EXPERTS];
    bool used[TD_BX_EXPERTS] = {false};
    for (int e = 0; e < TD_BX_EXPERTS; e++) perm[e] = e;
    for (int64_t t = 0; t < o->tokens; t++) {
        float sum = 0;
        for (int j = 0; j < TD_BX_TOPK; j++) {
            int k = j + (int)(td_randw_next(rng) % (uint64_t)(TD_BX_EXPERTS - j));
            int tmp = perm[j];
            perm[j] = perm[k];
            perm[k] = tmp;
            ids[t * TD_BX_TOPK + j] = perm[j];
            used[perm[j]] = true;
            wts[t * TD_BX_TOPK + j] = 0.05f + (float)(td_randw_next(rng) % 1000) / 1000.0f;
            sum += wts[t * TD_BX_TOPK + j];
        }
        for (int j = 0; j < TD_BX_TOPK; j++) wts[t * TD_BX_TOPK + j] /= sum;
    }
    int n_used = 0;
    for (int e = 0; e < TD_BX_EXPERTS; e++) {
        if (!used[e]) continue;
        logical[e] = w->phys[*cursor];
        *cursor = (*cursor + 1) % w->n;
        n_used++;
    }
    return n_used;
}

/* Enough experts for max(8 x last-level cache, 1 GiB), within a quarter of the available memory (the
 * filling stops early too when it runs out of time: td_bx_weights_make). */
static int td_bx_default_experts(uint64_t llc, uint64_t expert_bytes, uint64_t avail)
{
    uint64_t target = 8 * llc > (1ull << 30) ? 8 * llc : (1ull << 30);
    if (avail && target > avail / 4) target = avail / 4;
    uint64_t n = (target + expert_bytes - 1) / expert_bytes;
    return n < TD_BX_TOPK ? TD_BX_TOPK : n > TD_BX_EXPERTS ? TD_BX_EXPERTS : (int)n;
}

static int td_cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int td_bench_experts(int argc, char **argv)
{
    td_bx_opts o;
    int rc = td_bx_parse(argc, argv, &o);
    if (rc >= 0) return rc;
    const char *cmd = "bench experts";
    int64_t N = o.tokens, H = TD_BX_HIDDEN;
    td_cpu *cpu = NULL;
    td_cpu_params cp = {.kernels = o.kernels, .n_threads = o.threads, .max_tokens = N, .max_cols = TD_BX_HIDDEN,
                        .hidden = TD_BX_HIDDEN, .ffn_width = TD_BX_WIDTH, .expert_width = TD_BX_WIDTH,
                        .n_experts = TD_BX_EXPERTS, .top_k = TD_BX_TOPK};
    td_status st = td_cpu_create(&cp, &cpu);
    if (st != TD_OK) return td_cli_fail(cmd, st);
    uint64_t llc = td_cpu_llc_bytes(cpu);
    size_t up_row = td_type_row_bytes(o.type, H), down_row = td_type_row_bytes(o.type, TD_BX_WIDTH);
    uint64_t expert_bytes = 2ull * TD_BX_WIDTH * up_row + (uint64_t)H * down_row;
    uint64_t avail = td_mem_available_bytes();
    int n_phys = o.experts ? o.experts : td_bx_default_experts(llc, expert_bytes, avail);
    uint64_t need = (uint64_t)n_phys * expert_bytes;
    if (avail && need > avail / 10 * 8) {
        td_cpu_free(cpu);
        return td_cli_fail(cmd, td_fail(TD_E_NOMEM, "%d experts of %s need %.1f GiB but only %.1f GiB are available; "
                                        "lower --experts", n_phys, td_type_name(o.type), (double)need / (1 << 30),
                                        (double)avail / (1 << 30)));
    }

    td_membw_result mb;
    td_membw_params mp = {.bytes = o.membw_size, .passes = 10, .seconds = o.seconds};
    if ((st = td_membw_measure(cpu, &mp, &mb)) != TD_OK) {
        td_cpu_free(cpu);
        return td_cli_fail(cmd, st);
    }
    td_bx_weights w;
    int n_wanted = n_phys;
    st = td_bx_weights_make(&w, n_phys, o.type, o.threads, o.seed, o.experts ? 0 : o.seconds);
    n_phys = w.n;
    need = (uint64_t)n_phys * expert_bytes;
    if (st == TD_OK && need < 4 * llc)
        fprintf(stderr, "tandem %s: warning: %d experts (%.0f MiB%s) are less than 4x the last-level cache (%.0f MiB); "
                "some weights may come from cache (--experts N or a longer --time for more)\n", cmd, n_phys,
                (double)need / (1 << 20), n_phys < n_wanted ? ", as many as --time allows" : "",
                (double)llc / (1 << 20));
    float *x = td_malloc_aligned((size_t)(N * H) * sizeof(float), 64);
    float *out = td_malloc_aligned((size_t)(N * H) * sizeof(float), 64);
    int32_t *ids = td_malloc((size_t)(N * TD_BX_TOPK) * sizeof(int32_t));
    float *wts = td_malloc((size_t)(N * TD_BX_TOPK) * sizeof(float));
    double *times = td_malloc((size_t)o.iters * sizeof(double));
    td_ffn_weights *logical = td_calloc(TD_BX_EXPERTS, sizeof *logical);
    if (st == TD_OK && (!x || !out || !ids || !wts || !times || !logical))
        st = td_fail(TD_E_NOMEM, "out of memory for %lld tokens", (long long)N);
    if (st != TD_OK) goto done;
    uint64_t rng = o.seed * 7919 + 17;
    for (int64_t i = 0; i < N * H; i++) x[i] = (float)((int64_t)(td_randw_next(&rng) % 2001) - 1000) * 1e-3f;
    memset(out, 0, (size_t)(N * H) * sizeof(float));
    int cursor = 0;
    td_moe_batch b = {.n_tok = N, .k = TD_BX_TOPK, .ids = ids, .weights = wts, .x = x, .out = out};
    for (int i = 0; i < 2; i++) { /* warm-up */
        td_bx_route(&o, &rng, ids, wts, logical, &w, &cursor);
        td_cpu_moe(cpu, logical, TD_BX_EXPERTS, &b);
    }
    double total_t = 0, total_bytes = 0, total_flops = 0, ph0[4], ph1[4], id0[4], id1[4];
    int it = 0;
    td_cpu_moe_phase_times(cpu, ph0);
    td_cpu_moe_idle_times(cpu, id0);
    while (it < o.iters && total_t < o.seconds) {
        int used = td_bx_route(&o, &rng, ids, wts, logical, &w, &cursor);
        double t0 = td_now();
        td_cpu_moe(cpu, logical, TD_BX_EXPERTS, &b);
        double dt = td_now() - t0;
        times[it++] = dt;
        total_t += dt;
        total_bytes += (double)used * (double)expert_bytes;
        total_flops += 2.0 * 3.0 * (double)H * TD_BX_WIDTH * (double)(N * TD_BX_TOPK);
    }
    td_cpu_moe_phase_times(cpu, ph1);
    td_cpu_moe_idle_times(cpu, id1);
    /* the bandwidth again, after: on a shared host it drifts, and the ratio should hold against what the
     * memory gave while the layer ran, not against one moment before it */
    td_membw_result mb_after;
    if ((st = td_membw_measure(cpu, &mp, &mb_after)) != TD_OK) goto done;
    double membw = 0.5 * (mb.gbps_median + mb_after.gbps_median);
    double gbps = total_bytes / total_t * 1e-9, tflops = total_flops / total_t * 1e-12;
    qsort(times, (size_t)it, sizeof *times, td_cmp_dbl);
    int64_t per_expert = (N * TD_BX_TOPK + TD_BX_EXPERTS - 1) / TD_BX_EXPERTS;
    const char *kname = td_cpu_kernel_name(cpu, o.type, H, per_expert < N ? per_expert : N);
    td_isa peak_isa = strstr(kname, "amx") ? TD_ISA_AMX : td_cpu_has_isa(TD_ISA_AVX512) ? TD_ISA_AVX512 : TD_ISA_AVX2;
    double peak = td_peak_flops(cpu, peak_isa) * 1e-12;
    double flop_per_byte = total_flops / total_bytes;
    double roof = membw * 1e9 * flop_per_byte * 1e-12;
    if (peak > 0 && peak < roof) roof = peak;
    if (!o.json) {
        char desc[160];
        printf("machine     %s; LLC %.0f MiB\n", td_cpu_describe(cpu, desc, sizeof desc), (double)llc / (1 << 20));
        printf("shape       hidden %d, expert width %d, %d experts top-%d, %lld token%s; %s weights (%s kernel)\n",
               TD_BX_HIDDEN, TD_BX_WIDTH, TD_BX_EXPERTS, TD_BX_TOPK, (long long)N, N == 1 ? "" : "s",
               td_type_name(o.type), kname);
        printf("memory      %d distinct experts x %.1f MiB = %.2f GiB (%.1fx LLC%s)\n", n_phys,
               (double)expert_bytes / (1 << 20), (double)need / (1 << 30), llc ? (double)need / (double)llc : 0.0,
               n_phys < n_wanted ? "; as many as were made in --time" : "");
        printf("membw size  %.0f MiB%s\n", (double)mb.bytes / (1 << 20),
               mb.capped_by ? (strcmp(mb.capped_by, "time") == 0 ? " (as much as was filled in 40% of --time)"
                                                                   : " (a quarter of the available memory)")
                            : "");
        printf("membw       %.2f GB/s (mean of the medians of %d passes before, %.2f, and after, %.2f; best %.2f, %s loads)\n",
               membw, mb.passes, mb.gbps_median, mb_after.gbps_median,
               mb.gbps_best > mb_after.gbps_best ? mb.gbps_best : mb_after.gbps_best, mb.isa);
        printf("time        %.3f ms per layer (median %.3f, best %.3f) over %d iterations\n", total_t / it * 1e3,
               times[it / 2] * 1e3, times[0] * 1e3, it);
        printf("weights     %.2f GB/s effective = %.3f x membw\n", gbps, gbps / membw);
        if (ph1[1] > ph0[1]) /* where a layer's time goes (the fast path's phases, wall time) */
            printf("phases      inputs %.1f%%, gate/up %.1f%%, down %.1f%%, node sums %.1f%% of the time; threads idle at "
                   "the barriers %.1f%%, %.1f%%, %.1f%%, %.1f%%\n",
                   100 * (ph1[0] - ph0[0]) / total_t, 100 * (ph1[1] - ph0[1]) / total_t, 100 * (ph1[2] - ph0[2]) / total_t,
                   100 * (ph1[3] - ph0[3]) / total_t, 100 * (id1[0] - id0[0]) / total_t, 100 * (id1[1] - id0[1]) / total_t,
                   100 * (id1[2] - id0[2]) / total_t, 100 * (id1[3] - id0[3]) / total_t);
        printf("compute     %.3f TFLOP/s; roofline %.3f TFLOP/s = min(peak %.2f (%s), membw x %.1f FLOP/B) -> %.3f of roofline\n",
               tflops, roof, peak, td_isa_name(peak_isa), flop_per_byte, tflops / roof);
    }
    td_onednn_result dn[2];
    bool dn_ok[2] = {false, false};
    if (o.onednn) {
        uint64_t wb = 4 * llc > (1ull << 30) ? 4 * llc : (1ull << 30);
        if (avail && wb > avail / 4) wb = avail / 4;
        double secs = o.seconds < 2 ? o.seconds : 2;
        for (int k = 0; k < 2; k++) {
            td_status ds = td_onednn_matmul_bench(per_expert, H, TD_BX_WIDTH, k == 1, wb, secs, &dn[k]);
            dn_ok[k] = ds == TD_OK;
            if (!o.json) {
                if (dn_ok[k])
                    printf("onednn %s  %s matmul M=%lld K=%lld N=%d: %.3f %s (%.3f ms/call, %d distinct weights, %s)\n",
                           dn[k].version, k ? "int8" : "bf16", (long long)per_expert, (long long)H, TD_BX_WIDTH,
                           dn[k].tflops, k ? "TOP/s" : "TFLOP/s", dn[k].ms_per_call, dn[k].weights, dn[k].impl);
                else
                    printf("onednn      %s matmul: %s\n", k ? "int8" : "bf16", td_errmsg());
            }
        }
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", td_type_name(o.type));
    cJSON_AddNumberToObject(j, "tokens", (double)N);
    cJSON_AddNumberToObject(j, "threads", td_cpu_threads(cpu));
    cJSON_AddStringToObject(j, "kernels", td_kernels_name(o.kernels));
    cJSON_AddStringToObject(j, "kernel", kname);
    cJSON_AddNumberToObject(j, "experts_distinct", n_phys);
    cJSON_AddNumberToObject(j, "iters", it);
    cJSON_AddNumberToObject(j, "ms_per_layer", total_t / it * 1e3);
    cJSON_AddNumberToObject(j, "gbps", gbps);
    cJSON_AddNumberToObject(j, "membw_gbps", membw);
    cJSON_AddNumberToObject(j, "membw_before_gbps", mb.gbps_median);
    cJSON_AddNumberToObject(j, "membw_after_gbps", mb_after.gbps_median);
    cJSON_AddNumberToObject(j, "ratio", gbps / membw);
    cJSON_AddNumberToObject(j, "tflops", tflops);
    cJSON_AddNumberToObject(j, "roofline_tflops", roof);
    cJSON_AddNumberToObject(j, "roofline_ratio", tflops / roof);
    cJSON_AddNumberToObject(j, "peak_tflops", peak);
    if (dn_ok[0]) cJSON_AddNumberToObject(j, "onednn_bf16_tflops", dn[0].tflops);
    if (dn_ok[1]) cJSON_AddNumberToObject(j, "onednn_int8_tops", dn[1].tflops);
    char *line = cJSON_PrintUnformatted(j);
    if (line) puts(line);
    free(line);
    cJSON_Delete(j);
done:
    td_bx_weights_free(&w);
    td_free(x);
    td_free(out);
    td_free(ids);
    td_free(wts);
    td_free(times);
    td_free(logical);
    td_cpu_free(cpu);
    return st == TD_OK ? 0 : td_cli_fail(cmd, st);
}
