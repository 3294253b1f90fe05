/* td_chat_template: DeepSeek's chat formats, written out in C from the semantics of the Jinja templates
 * the models ship (tokenizer_config.json "chat_template"); tandem does not run Jinja.
 *
 *  V3 / V3-0324: <bos>{system}<｜User｜>{u}<｜Assistant｜>{a}<｜end▁of▁sentence｜>...<｜User｜>{u}<｜Assistant｜>
 *  R1:           the same, earlier answers keep only the text after their last </think>, and the prompt
 *                ends with <｜Assistant｜><think>\n
 *  V3.1:         <bos>{system}<｜User｜>{u}<｜Assistant｜></think>{a}<｜end▁of▁sentence｜>...; earlier answers
 *                keep the text after their first </think>; the prompt ends with <｜Assistant｜></think>
 *                (non-thinking) or <｜Assistant｜><think> (thinking)
 * System messages, wherever they are, are joined with blank lines and placed right after BOS. */
#ifndef TD_CHAT_TEMPLATE_H
#define TD_CHAT_TEMPLATE_H

#include "td_status.h"

#include <stdbool.h>

typedef enum td_chat_role { TD_ROLE_SYSTEM = 0, TD_ROLE_USER = 1, TD_ROLE_ASSISTANT = 2, TD_ROLE_COUNT } td_chat_role;

typedef struct td_chat_msg {
    td_chat_role role;
    const char *content;
} td_chat_msg;

typedef enum td_template {
    TD_TEMPLATE_RAW = 0,         /* no chat format: BOS, then the messages' text (plain completion) */
    TD_TEMPLATE_DEEPSEEK_V3 = 1, /* V3, V3-0324 */
    TD_TEMPLATE_DEEPSEEK_R1 = 2,
    TD_TEMPLATE_DEEPSEEK_V31 = 3,       /* V3.1, non-thinking mode */
    TD_TEMPLATE_DEEPSEEK_V31_THINK = 4, /* V3.1, thinking mode */
    TD_TEMPLATE_COUNT
} td_template;

/* "deepseek-v3" (or "v3"), "deepseek-r1" ("r1"), "deepseek-v3.1" ("v3.1"), "deepseek-v3.1-think"
 * ("v3.1-think"), "raw". */
bool td_template_from_name(const char *name, td_template *out);
const char *td_template_name(td_template t);
/* The accepted names, for help and error messages. */
const char *td_template_names(void);

/* Picks the format from a model's Jinja template text (GGUF tokenizer.chat_template or
 * tokenizer_config.json; may be NULL) and its name (general.name or the path; may be NULL).
 * *why says what decided it. */
td_template td_template_detect(const char *jinja, const char *model_name, const char **why);

/* The format as Jinja, for a GGUF's tokenizer.chat_template: it renders what td_template_render does, and
 * td_template_detect() recognises it. V3.1 and V3.1-think share one template, switched by its `thinking`
 * variable (true: thinking). NULL for raw. */
const char *td_template_jinja(td_template t);

/* True when the prompt ends inside a reasoning block (the answer starts with the reasoning). */
bool td_template_starts_thinking(td_template t);

/* Renders the conversation (td_free the result). add_generation_prompt ends it where the assistant's
 * answer begins. bos is the BOS token's text ("" when the tokenizer has none). */
td_status td_template_render(td_template t, const td_chat_msg *msgs, int n, const char *bos, bool add_generation_prompt,
                             char **out);

#endif
