/* td_llama_jinja: llama.cpp's Jinja rendering of a model's chat template (libllama-common), for C. */
#ifndef TD_LLAMA_JINJA_H
#define TD_LLAMA_JINJA_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct llama_model;

typedef struct td_llama_msg {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} td_llama_msg;

/* The conversation rendered with the model's tokenizer.chat_template as llama.cpp's server does (without
 * the BOS text when the vocabulary adds BOS itself). thinking: -1 leaves the template's `thinking` variable
 * undefined, 0/1 passes it as false/true (chat_template_kwargs). Returns a malloc'd string, or NULL with
 * the reason in err. */
char *td_llama_render_chat(const struct llama_model *model, const td_llama_msg *msgs, int n,
                           bool add_generation_prompt, int thinking, char *err, size_t err_cap);

#ifdef __cplusplus
}
#endif

#endif
