/* tandem bench: measurements of real work, printed as numbers and one JSON line (never asserted). */
#include "td_bench.h"
#include "td_commands.h"

#include <stdio.h>
#include <string.h>

static const td_bench td_benches[] = {
    /* one line per benchmark */
    {"tokenize", td_bench_tokenize, "tokenizer encoding speed on one core (MB/s of text)"},
    {"membw", td_bench_membw, "read bandwidth of all cores: the roofline of decoding"},
    {"experts", td_bench_experts, "routed-expert FFN at DeepSeek-V3 shapes: GB/s vs membw, TFLOP/s"},
    {"decode", td_bench_decode, "whole-model decode tok/s, per-layer split, roofline ratio, memory vs plan"},
    {"prefill", td_bench_prefill, "whole-model prompt processing tok/s, per-layer split"},
    {"serve", td_bench_serve, "tandem serve's scheduler: tok/s and experts per step at 1, 4, 16 slots; prefix reuse"},
    {"mtp", td_bench_mtp, "decode tok/s with MTP speculative decoding vs plain, acceptance, experts per verify"},
    {NULL, NULL, NULL},
};

static void td_bench_usage(FILE *f)
{
    fprintf(f, "usage: tandem bench <benchmark> [options]\n\nbenchmarks:\n");
    for (const td_bench *b = td_benches; b->name; b++) fprintf(f, "  %-10s %s\n", b->name, b->summary);
}

int td_cmd_bench(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        td_bench_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (const td_bench *b = td_benches; b->name; b++)
        if (strcmp(argv[1], b->name) == 0) return b->run(argc - 1, argv + 1);
    fprintf(stderr, "tandem bench: unknown benchmark '%s'\n", argv[1]);
    td_bench_usage(stderr);
    return 2;
}
