/* What `tandem chat` and `tandem generate` share: the default model, opening a model with its engine,
 * session, tokenizer, sampler and generator in one go, the chat format, and the options that set them. */
#ifndef TD_CHAT_SETUP_H
#define TD_CHAT_SETUP_H

#include "td_chat_template.h"
#include "td_cli.h"
#include "td_cli_plan.h"
#include "td_engine.h"
#include "td_generate.h"
#include "td_mtp_spec.h"
#include "td_sampler.h"
#include "td_tokenizer.h"

/* The model used when --model is not given (NULL when none is found; *looked says where it looked). */
const char *td_default_model_path(const char **looked);

typedef struct td_chat_opts {
    const char *model;         /* NULL: td_default_model_path() */
    const char *tokenizer;     /* NULL: the model's own */
    const char *template_name; /* NULL or "auto": chosen from the model */
    td_kernels kernels;
    td_kv_type kv_type; /* TD_KV_AUTO: the session's default (bf16; f32 with --kernels ref) */
    int threads;
    int64_t ctx; /* 0: the model's context, capped at 4096 */
    td_sampler_params sampling;
    bool seed_set; /* --seed given (otherwise a fresh one per run when sampling) */
    int64_t max_tokens;
    bool quiet;
    bool mtp_set;    /* --mtp given (otherwise off) */
    td_mtp_mode mtp; /* MTP speculative decoding */
    int mtp_k;       /* drafts per step (0: 1) */
    const char *mtp_from; /* attach the MTP block from this safetensors file or HF directory */
    td_cli_plan_opts plan; /* --rules, --override, --gpu-mem */
} td_chat_opts;

/* Parses the options both commands take (--model, --tokenizer, --template, --kernels, --kv-type, --threads, --ctx,
 * --temp, --top-k, --top-p, --min-p, --seed, -n/--max-tokens, --mtp, --mtp-k, --mtp-from, --rules, --override,
 * --gpu-mem). Returns 1 when the option was one of
 * them, 0 when it is not, -1 after printing an error. */
int td_chat_opts_parse(td_args *a, td_chat_opts *o);
/* The help lines for those options. */
const char *td_chat_opts_help(void);
/* Without --seed: a fresh seed from the OS when `sampling` (a temperature above 0, or a chat, where /set
 * can raise it later), so that each run differs and the seed reported reproduces it. */
void td_chat_opts_pick_seed(td_chat_opts *o, bool sampling);

typedef struct td_chat_rt {
    td_model *model;
    td_rules *rules;  /* --rules/--override, NULL without */
    td_plan *plan;    /* where the modules run (NULL: all on the CPU) */
    td_engine *engine;
    td_session *session;
    td_tokenizer *tok;
    td_sampler *sampler;
    td_generator *gen;
    td_mtp_spec *mtp; /* NULL: plain decoding */
    td_template tmpl;
    const char *tmpl_why;
    char model_name[256];
    char bos_text[128];
} td_chat_rt;

td_status td_chat_rt_open(const td_chat_opts *o, td_chat_rt *rt);
/* The pieces of td_chat_rt_open, for a program that makes its own sessions (tandem serve): the model,
 * tokenizer, chat format and BOS text; then the engine, under an optional placement plan. */
td_status td_chat_rt_open_model(const td_chat_opts *o, td_chat_rt *rt);
struct td_plan;
struct td_rules;
td_status td_chat_rt_open_engine(const td_chat_opts *o, const struct td_plan *plan, td_chat_rt *rt);
/* The placement plan of rules_name (a rules file or preset; NULL: cpu-only) for the opened model, on this
 * machine, with kv_positions of KV cache (all sessions together): TD_E_NOMEM saying by how much when it
 * does not fit. Free both with td_plan_free / td_rules_free. */
td_status td_chat_rt_plan(const td_chat_opts *o, const char *rules_name, const td_chat_rt *rt, int64_t kv_positions,
                          struct td_rules **rules, struct td_plan **plan);
void td_chat_rt_close(td_chat_rt *rt);

/* Renders msgs with the runtime's template (ending where the answer starts) and tokenizes it. Text that
 * is not UTF-8 is refused with the offset in the message's own text (not in the rendered template). */
td_status td_chat_rt_prompt(const td_chat_rt *rt, const td_chat_msg *msgs, int n, td_tokens *out);
/* Refuses text that is not UTF-8, naming `what` and the byte offset in text. */
td_status td_chat_check_utf8(const char *what, const char *text, size_t len);

/* The positions a conversation holds, for display: the last token chosen at a full context has no
 * position of its own, so "used" never reads more than the context. */
static inline int64_t td_chat_ctx_shown(int64_t used, int64_t size)
{
    return used < size ? used : size;
}

#endif
