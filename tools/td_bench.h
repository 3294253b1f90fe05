/* `tandem bench <name>`: each benchmark lives in tools/bench_<name>.c and is listed in cmd_bench.c. */
#ifndef TD_BENCH_H
#define TD_BENCH_H

#include <stdbool.h>

typedef struct td_bench {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] = the benchmark's name */
    const char *summary;
} td_bench;

int td_bench_tokenize(int argc, char **argv);
int td_bench_membw(int argc, char **argv);
int td_bench_experts(int argc, char **argv);
int td_bench_mtp(int argc, char **argv);
int td_bench_decode(int argc, char **argv);
int td_bench_prefill(int argc, char **argv);
/* bench mtp --simulate-acceptance / --synth (bench_mtp_sim.c) */
bool td_bench_mtp_simulated(int argc, char **argv);
int td_bench_mtp_sim_main(int argc, char **argv);
int td_bench_serve(int argc, char **argv);

#endif
