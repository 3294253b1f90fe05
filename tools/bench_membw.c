/* tandem bench membw: the read bandwidth the decode kernels are measured against. */
#include "td_bench.h"
#include "td_cli.h"
#include "td_roofline.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void td_membw_help(void)
{
    printf("usage: tandem bench membw [--threads N] [--size BYTES] [--time S] [--passes N] [--json]\n\n"
           "Streams a buffer of several times the last-level cache through every thread (each its own slice,\n"
           "widest vector loads, eight independent accumulators) and prints the read bandwidth: the roofline\n"
           "of decoding, where every weight byte is read once per token. Last line: JSON.\n\n"
           "  --threads N   worker threads, pinned one per core (default: %s)\n"
           "  --size B      buffer bytes, e.g. 2GiB (default: max(8 x last-level cache, 1 GiB), within a quarter\n"
           "                of the available memory and what this machine fills in 40%% of --time)\n"
           "  --time S      about how long the measurement takes, filling the buffer included (default 3)\n"
           "  --passes N    timed passes at most, within --time (at least three run); the median is the\n"
           "                result, the best is shown too (default 10)\n"
           "  --json        print only the JSON line\n",
           td_cli_threads_default());
}

int td_bench_membw(int argc, char **argv)
{
    int threads = 0, passes = 10;
    uint64_t size = 0;
    double seconds = 3;
    bool json = false;
    td_args a;
    td_args_init(&a, "bench membw", argc, argv);
    while (td_args_next(&a)) {
        const char *v;
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_membw_help();
            return 0;
        } else if (td_args_is(&a, "--json")) {
            json = true;
        } else if (td_args_is(&a, "--threads")) {
            if (!(v = td_args_value(&a)) || !td_parse_threads(&a, v, &threads)) return 2;
        } else if (td_args_is(&a, "--passes")) {
            if (!(v = td_args_value(&a)) || !td_parse_int(&a, v, 1, 10000, &passes)) return 2;
        } else if (td_args_is(&a, "--time")) {
            if (!(v = td_args_value(&a)) || !td_parse_double(&a, v, 0.01, 3600, &seconds)) return 2;
        } else if (td_args_is(&a, "--size")) {
            if (!(v = td_args_value(&a)) || !td_parse_bytes(&a, v, &size)) return 2;
            if (size < (1u << 20)) return td_cli_usage_error("bench membw", "--size: at least 1 MiB");
        } else {
            return td_args_unknown(&a);
        }
    }
    td_cpu *cpu = NULL;
    td_cpu_params cp = {.kernels = TD_KERNELS_AUTO, .n_threads = threads, .max_tokens = 1, .max_cols = 256,
                        .hidden = 256, .ffn_width = 256, .n_experts = 1, .top_k = 1};
    td_status st = td_cpu_create(&cp, &cpu);
    if (st != TD_OK) return td_cli_fail("bench membw", st);
    td_membw_result r;
    td_membw_params mp = {.bytes = size, .passes = passes, .seconds = seconds};
    st = td_membw_measure(cpu, &mp, &r);
    if (st != TD_OK) {
        td_cpu_free(cpu);
        return td_cli_fail("bench membw", st);
    }
    char desc[160];
    if (!json) {
        printf("machine     %s; last-level cache %.1f MiB\n", td_cpu_describe(cpu, desc, sizeof desc),
               (double)td_cpu_llc_bytes(cpu) / (1 << 20));
        uint64_t llc = td_cpu_llc_bytes(cpu);
        printf("buffer      %.0f MiB%s, %d passes, %s loads, %.1f s in all\n", (double)r.bytes / (1 << 20),
               !r.capped_by ? ""
               : strcmp(r.capped_by, "time") == 0 ? " (as much as was filled in 40% of --time)"
                                                  : " (a quarter of the available memory)",
               r.passes, r.isa, r.seconds);
        if (llc && r.bytes < 4 * llc)
            printf("note        the buffer is less than 4x the last-level cache: some reads may come from cache "
                   "(--size or a longer --time for a larger one)\n");
        printf("read        %.2f GB/s median (the figure reported), %.2f GB/s best\n", r.gbps_median, r.gbps_best);
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "gbps", r.gbps_median);
    cJSON_AddNumberToObject(j, "gbps_best", r.gbps_best);
    cJSON_AddNumberToObject(j, "threads", td_cpu_threads(cpu));
    cJSON_AddNumberToObject(j, "bytes", (double)r.bytes);
    cJSON_AddNumberToObject(j, "passes", r.passes);
    cJSON_AddNumberToObject(j, "seconds", r.seconds);
    cJSON_AddStringToObject(j, "loads", r.isa);
    char *line = cJSON_PrintUnformatted(j);
    if (line) puts(line);
    free(line);
    cJSON_Delete(j);
    td_cpu_free(cpu);
    return 0;
}
