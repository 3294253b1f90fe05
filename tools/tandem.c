/* tandem: one program, many subcommands. Each lives in tools/cmd_<name>.c. */
#include "td_cli.h"
#include "td_commands.h"

#include <stdio.h>
#include <string.h>

typedef struct td_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} td_command;

static const td_command td_commands[] = {
    {"chat", td_cmd_chat, "chat with a model in the terminal (the default model when none is given)"},
    {"generate", td_cmd_generate, "generate an answer to one prompt (--json for a result line)"},
    {"tokenize", td_cmd_tokenize, "text on stdin to token ids, or ids back to text (--decode)"},
    {"eval", td_cmd_eval, "check a model against a reference file (logits, greedy decode, MTP)"},
    {"inspect", td_cmd_inspect, "show a model's hyperparameters, tensors and bytes per module"},
    {"bench", td_cmd_bench, "measure memory bandwidth, kernels and the tokenizer"},
    {"convert", td_cmd_convert, "write a GGUF (deepseek2, MLA layout) from an HF model or another GGUF"},
    {"serve", td_cmd_serve, "serve the model over HTTP: OpenAI and Ollama APIs, a web chat page, /metrics"},
    {"rules", td_cmd_rules, "plan a placement: bytes per device and NUMA node, KV cache, speed, fit"},
    {"synth", td_cmd_synth, "write a GGUF with a real config's shapes and random weights (for benchmarks)"},
};

static void td_usage(FILE *f)
{
    fprintf(f, "tandem %s: DeepSeek-V3/R1 on one workstation\n\nusage: tandem <command> [options]\n\ncommands:\n",
            TANDEM_VERSION);
    for (size_t i = 0; i < sizeof td_commands / sizeof td_commands[0]; i++)
        fprintf(f, "  %-10s %s\n", td_commands[i].name, td_commands[i].summary);
    fprintf(f, "\nRun `tandem <command> --help` for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        td_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("tandem %s\n", TANDEM_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof td_commands / sizeof td_commands[0]; i++)
        if (strcmp(argv[1], td_commands[i].name) == 0) return td_commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "tandem: unknown command '%s'\n\n", argv[1]);
    td_usage(stderr);
    return 2;
}
