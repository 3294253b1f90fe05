#include "td_roofline.h"

#include "td_alloc.h"
#include "td_clock.h"
#include "td_cpu_impl.h"

#include <emmintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t td_cpu_llc_bytes(const td_cpu *cpu)
{
    if (cpu->topo) return td_topo_llc_bytes(cpu->topo);
    td_topo *t = NULL;
    uint64_t b = 0;
    if (td_topo_load(NULL, &t) == TD_OK) b = td_topo_llc_bytes(t);
    td_topo_free(t);
    return b;
}

typedef struct td_membw_job {
    uint8_t *buf;
    size_t bytes;
    bool touch;
    td_isa isa; /* widest loads: TD_ISA_AVX512, TD_ISA_AVX2, or TD_ISA_SCALAR (SSE2, every x86-64) */
    _Atomic uint64_t sink;
} td_membw_job;

/* 128-bit loads with eight accumulators: what every x86-64 has (SSE2), for CPUs without AVX2 */
uint64_t td_read_sse2(const void *p, size_t bytes)
{
    const __m128i *v = p;
    __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (size_t i = 0; i < bytes / 16; i += 8) {
        a0 = _mm_xor_si128(a0, _mm_load_si128(v + i));
        a1 = _mm_xor_si128(a1, _mm_load_si128(v + i + 1));
        a2 = _mm_xor_si128(a2, _mm_load_si128(v + i + 2));
        a3 = _mm_xor_si128(a3, _mm_load_si128(v + i + 3));
        a4 = _mm_xor_si128(a4, _mm_load_si128(v + i + 4));
        a5 = _mm_xor_si128(a5, _mm_load_si128(v + i + 5));
        a6 = _mm_xor_si128(a6, _mm_load_si128(v + i + 6));
        a7 = _mm_xor_si128(a7, _mm_load_si128(v + i + 7));
    }
    __m128i s = _mm_xor_si128(_mm_xor_si128(_mm_xor_si128(a0, a1), _mm_xor_si128(a2, a3)),
                              _mm_xor_si128(_mm_xor_si128(a4, a5), _mm_xor_si128(a6, a7)));
    return (uint64_t)_mm_cvtsi128_si64(s) ^ (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s));
}

static void td_membw_task(const td_pool_task *t, void *arg)
{
    td_membw_job *j = arg;
    size_t units = j->bytes / 256;
    size_t u0 = units * (size_t)t->ith / (size_t)t->nth, u1 = units * (size_t)(t->ith + 1) / (size_t)t->nth;
    uint8_t *p = j->buf + u0 * 256;
    size_t n = (u1 - u0) * 256;
    if (j->touch) { /* first touch from the reading thread: pages land on its node */
        for (size_t i = 0; i < n; i += 8) {
            uint64_t v = (uint64_t)(i + u0) * 0x9e3779b97f4a7c15ull;
            memcpy(p + i, &v, 8);
        }
        return;
    }
    uint64_t s = j->isa == TD_ISA_AVX512 ? td_read_avx512(p, n) : j->isa == TD_ISA_AVX2 ? td_read_avx2(p, n)
                                                                                     : td_read_sse2(p, n);
    atomic_fetch_xor_explicit(&j->sink, s, memory_order_relaxed);
}

static void td_cpu_run_all(td_cpu *cpu, td_pool_fn fn, void *arg)
{
    if (cpu->pool) {
        td_pool_run(cpu->pool, fn, arg);
    } else {
        td_pool_task solo = {.ith = 0, .nth = 1};
        fn(&solo, arg);
    }
}

static int td_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

uint64_t td_mem_available_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

#define TD_MEMBW_PROBE (32ull << 20) /* bytes filled to learn how fast this machine hands out memory */
#define TD_MEMBW_MIN   (64ull << 20)

/* Fills a fresh buffer of `bytes` the way the measurement does (each thread its own slice); seconds. */
static double td_membw_fill_time(td_cpu *cpu, td_membw_job *proto, size_t bytes)
{
    td_membw_job j = {.bytes = bytes, .touch = true, .isa = proto->isa};
    j.buf = td_malloc_aligned(bytes, 4096);
    if (!j.buf) return -1;
    double t0 = td_now();
    td_cpu_run_all(cpu, td_membw_task, &j);
    double dt = td_now() - t0;
    td_free(j.buf);
    return dt;
}

uint64_t td_membw_default_size(uint64_t llc, uint64_t avail, double fill_bps, double fill_s, const char **why)
{
    uint64_t bytes = 8 * llc > (1ull << 30) ? 8 * llc : (1ull << 30);
    *why = NULL;
    if (avail && bytes > avail / 4) {
        bytes = avail / 4;
        *why = "memory";
    }
    if (fill_bps > 0 && fill_bps * fill_s < (double)bytes) {
        bytes = (uint64_t)(fill_bps * fill_s);
        *why = "time";
    }
    return bytes > TD_MEMBW_MIN ? bytes : TD_MEMBW_MIN;
}

/* The default buffer for this machine: its cache and memory, and how fast it fills a probe buffer (a VM
 * that reports a 1 GiB cache would otherwise take minutes to page in 8 GiB). */
static uint64_t td_membw_default_bytes(td_cpu *cpu, td_membw_job *proto, double fill_s, td_membw_result *out)
{
    uint64_t llc = td_cpu_llc_bytes(cpu);
    const char *uncapped;
    out->wanted = td_membw_default_size(llc, 0, 0, 0, &uncapped); /* the cache rule alone */
    double probe = td_membw_fill_time(cpu, proto, TD_MEMBW_PROBE);
    double fill_bps = probe > 0 ? (double)TD_MEMBW_PROBE / probe : 0;
    return td_membw_default_size(llc, td_mem_available_bytes(), fill_bps, fill_s, &out->capped_by);
}

td_status td_membw_measure(td_cpu *cpu, const td_membw_params *p, td_membw_result *out)
{
    *out = (td_membw_result){0};
    double t_start = td_now(), seconds = p && p->seconds > 0 ? p->seconds : 1.0;
    int passes = p && p->passes > 0 ? p->passes : 10;
    td_membw_job j = {.touch = true,
                      .isa = td_cpu_has_isa(TD_ISA_AVX512) ? TD_ISA_AVX512
                             : td_cpu_has_isa(TD_ISA_AVX2) ? TD_ISA_AVX2 : TD_ISA_SCALAR};
    uint64_t bytes = p ? p->bytes : 0;
    if (bytes)
        out->wanted = bytes;
    else
        bytes = td_membw_default_bytes(cpu, &j, 0.4 * seconds, out);
    bytes = (bytes + 255) / 256 * 256;
    j.bytes = (size_t)bytes;
    j.buf = td_malloc_aligned((size_t)bytes, 4096);
    double *t = td_calloc((size_t)passes, sizeof *t);
    if (!j.buf || !t) {
        td_free(j.buf);
        td_free(t);
        return td_fail(TD_E_NOMEM, "out of memory for a %llu MiB bandwidth buffer (lower --size)",
                       (unsigned long long)(bytes >> 20));
    }
    td_cpu_run_all(cpu, td_membw_task, &j);
    j.touch = false;
    td_cpu_run_all(cpu, td_membw_task, &j); /* warm the TLB and the clocks */
    /* timed passes until the time is up, or `passes` of them; at least three for a median (a pass reads
     * far faster than the buffer was filled, so these stay short) */
    int done = 0, least = passes < 3 ? passes : 3;
    double deadline = t_start + seconds;
    while (done < passes) {
        double t0 = td_now();
        td_cpu_run_all(cpu, td_membw_task, &j);
        double t1 = td_now();
        t[done++] = t1 - t0;
        if (done >= least && t1 + (t1 - t0) > deadline) break;
    }
    qsort(t, (size_t)done, sizeof *t, td_cmp_double);
    out->gbps_best = (double)bytes / t[0] * 1e-9;
    out->gbps_median = (double)bytes / t[done / 2] * 1e-9;
    out->bytes = bytes;
    out->passes = done;
    out->isa = j.isa == TD_ISA_AVX512 ? "avx512" : j.isa == TD_ISA_AVX2 ? "avx2" : "sse2";
    td_free(j.buf);
    td_free(t);
    out->seconds = td_now() - t_start;
    return TD_OK;
}

typedef struct td_peak_job {
    td_isa isa;
    int64_t iters;
    _Atomic uint64_t flops; /* total, in units of 1 FLOP */
} td_peak_job;

static void td_peak_task(const td_pool_task *t, void *arg)
{
    (void)t;
    td_peak_job *j = arg;
    double f = j->isa == TD_ISA_AMX      ? td_amx_bf16_loop(j->iters)
               : j->isa == TD_ISA_AVX512 ? td_fma_loop_avx512(j->iters)
                                         : td_fma_loop_avx2(j->iters);
    atomic_fetch_add(&j->flops, (uint64_t)f);
}

double td_peak_flops(td_cpu *cpu, td_isa isa)
{
    if (!td_cpu_has_isa(isa) || isa == TD_ISA_SCALAR) return 0;
    td_peak_job j = {.isa = isa, .iters = 1000};
    for (;;) { /* grow until one run takes 50 ms */
        atomic_store(&j.flops, 0);
        double t0 = td_now();
        td_cpu_run_all(cpu, td_peak_task, &j);
        double dt = td_now() - t0;
        if (dt > 0.05 || j.iters > (1ll << 40)) return (double)atomic_load(&j.flops) / dt;
        j.iters *= dt > 0.005 ? 4 : 16;
    }
}
