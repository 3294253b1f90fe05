/* td_llama_run: one GGUF in llama.cpp (the prebuilt libllama that node-llama-cpp ships, set up by
 * tools/setup-llama.sh) beside tandem, on the same input. Shared by its command files. */
#ifndef TD_LLAMA_RUN_H
#define TD_LLAMA_RUN_H

#include "llama.h"
#include "td_cpu.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

typedef struct td_lr_opts {
    const char *model;     /* the GGUF (any part of a split one) */
    const char *texts;     /* tokenize: a vectors file, [{"text": ...}, ...] */
    const char *conv;      /* template: a conversation, [{"role": ..., "content": ...}, ...] */
    const char *prompt;    /* greedy: one prompt */
    const char *prompts;   /* greedy: a file of prompts, one per line */
    const char *reference; /* reference: a reference.safetensors (input_ids, logits) */
    const char *engine;    /* speed: llama | tandem */
    int prompt_tokens;     /* speed: prompt length */
    int n_predict;         /* greedy, speed: tokens */
    double margin;         /* greedy: top-2 logit gap below which a step is a near-tie */
    int thinking;          /* template: -1 unset, 0/1 the template's `thinking` variable */
    bool no_gen_prompt;    /* template: end after the last message */
    int threads;
    td_kernels kernels;    /* tandem's */
    bool verbose;          /* llama.cpp's own log on stderr */
} td_lr_opts;

/* llama.cpp with its CPU backends loaded, logging to stderr only for warnings and errors. */
void td_lr_backend_init(bool verbose);
/* Loads the model (vocab_only: tokenizer and metadata only); NULL after printing why. */
struct llama_model *td_lr_load(const char *path, bool vocab_only, bool load_mtp);
/* Prints the JSON line and frees it. */
void td_lr_print_json(cJSON *j);

int td_lr_cmd_load(const td_lr_opts *o);
int td_lr_cmd_tokenize(const td_lr_opts *o);
int td_lr_cmd_template(const td_lr_opts *o);
int td_lr_cmd_greedy(const td_lr_opts *o);
int td_lr_cmd_reference(const td_lr_opts *o);
int td_lr_cmd_speed(const td_lr_opts *o);

#endif
