/* td_roofline: the machine's limits, measured on the pool of a CPU context, for benchmarks to report
 * their results against:
 *  - read bandwidth: each thread streams its own slice of a buffer several times the last-level cache
 *    with the widest vector loads and several independent accumulators;
 *  - compute peak: register-only loops of the instruction the kernels use (AMX bf16 tiles, AVX-512 or
 *    AVX2 fused multiply-adds), all threads at once. */
#ifndef TD_ROOFLINE_H
#define TD_ROOFLINE_H

#include "td_cpu.h"
#include "td_cpu_features.h"
#include "td_status.h"

#include <stdint.h>

typedef struct td_membw_params {
    uint64_t bytes;  /* buffer; 0: max(8 x last-level cache, 1 GiB), at most a quarter of the available
                      * memory and what can be filled in 40% of `seconds` */
    int passes;      /* timed passes at most (0: 10); at least three (or `passes`) run */
    double seconds;  /* about how long the measurement takes, filling the buffer included (0: 1 s) */
} td_membw_params;

typedef struct td_membw_result {
    double gbps_best;    /* the fastest pass, GB/s (1e9 bytes) */
    double gbps_median;
    uint64_t bytes;      /* buffer size */
    uint64_t wanted;     /* the size asked for, or the default before the caps */
    const char *capped_by; /* NULL, "memory" or "time": why bytes < wanted */
    int passes;
    double seconds;      /* the whole measurement, filling included */
    const char *isa;     /* loads used */
} td_membw_result;

td_status td_membw_measure(td_cpu *cpu, const td_membw_params *p, td_membw_result *out);

/* The default buffer: max(8 x llc, 1 GiB), at most avail / 4 (avail 0: unknown) and what fills in
 * fill_s seconds at fill_bps bytes/s (0: unknown), at least 64 MiB. *why: NULL, "memory" or "time". */
uint64_t td_membw_default_size(uint64_t llc, uint64_t avail, double fill_bps, double fill_s, const char **why);

/* MemAvailable from /proc/meminfo, bytes (0 if unknown). */
uint64_t td_mem_available_bytes(void);

/* FLOP/s of `isa`'s multiply-add instruction on all threads (AMX: bf16 tiles). */
double td_peak_flops(td_cpu *cpu, td_isa isa);

/* Last-level cache of this machine, bytes (0 if unknown). */
uint64_t td_cpu_llc_bytes(const td_cpu *cpu);

/* Read `bytes` (a multiple of 256, 64-byte aligned) with the widest loads each allows (SSE2 in td_roofline.c,
 * the others in their ISA files); returns a value that depends on the data. */
uint64_t td_read_sse2(const void *p, size_t bytes);
uint64_t td_read_avx2(const void *p, size_t bytes);
uint64_t td_read_avx512(const void *p, size_t bytes);
/* `iters` rounds of independent multiply-adds; returns the FLOPs done. */
double td_fma_loop_avx2(int64_t iters);
double td_fma_loop_avx512(int64_t iters);
double td_amx_bf16_loop(int64_t iters);

#endif
