/* The chat formats of td_chat_template.c written as Jinja, for the tokenizer.chat_template key of the GGUFs
 * that tandem writes: front ends that run Jinja (llama.cpp's server, LM Studio, ...) then render what
 * tandem renders. The official templates' semantics, expressed in our own words; only features that
 * llama.cpp's Jinja engine, Python's jinja2 and Hugging Face's JavaScript port share: namespace(), for/if,
 * set, `in`, split() and indexing. tests/cli/test_llama_interop.sh renders conversations with llama.cpp's
 * engine and compares them with td_template_render byte for byte.
 *
 * Variables: messages (role, content), bos_token, add_generation_prompt, and for V3.1 `thinking` (true:
 * the answer opens with <think>; false or undefined: with </think>, as the official V3.1 template). */
#include "td_chat_template.h"

#include <stddef.h>

#define TD_J_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define TD_J_ASSISTANT                                                                                                 \
    "<\xef\xbd\x9c"                                                                                                    \
    "Assistant\xef\xbd\x9c>"
#define TD_J_EOS                                                                                                       \
    "<\xef\xbd\x9c"                                                                                                    \
    "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"

/* BOS, then every system message, joined by blank lines, wherever it stands in the conversation. */
#define TD_J_SYSTEM                                                                                                    \
    "{%- set ns = namespace(system='', n_system=0, after_user=false) -%}"                                              \
    "{%- for m in messages -%}"                                                                                        \
    "{%- if m['role'] == 'system' -%}"                                                                                 \
    "{%- if ns.n_system > 0 -%}{%- set ns.system = ns.system + '\\n\\n' -%}{%- endif -%}"                              \
    "{%- set ns.system = ns.system + m['content'] -%}"                                                                 \
    "{%- set ns.n_system = ns.n_system + 1 -%}"                                                                        \
    "{%- endif -%}"                                                                                                    \
    "{%- endfor -%}"                                                                                                   \
    "{{- bos_token + ns.system -}}"

/* V3, V3-0324: turns tagged, every answer closed by EOS. */
static const char td_jinja_v3[] =
    TD_J_SYSTEM
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}"
    "{{- '" TD_J_USER "' + m['content'] -}}"
    "{%- elif m['role'] == 'assistant' -%}"
    "{{- '" TD_J_ASSISTANT "' + m['content'] + '" TD_J_EOS "' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '" TD_J_ASSISTANT "' -}}{%- endif -%}";

/* R1: earlier answers keep what follows their last </think>; the answer starts inside <think>. */
static const char td_jinja_r1[] =
    TD_J_SYSTEM
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}"
    "{{- '" TD_J_USER "' + m['content'] -}}"
    "{%- elif m['role'] == 'assistant' -%}"
    "{%- set answer = m['content'] -%}"
    "{%- if '</think>' in answer -%}{%- set answer = answer.split('</think>')[-1] -%}{%- endif -%}"
    "{{- '" TD_J_ASSISTANT "' + answer + '" TD_J_EOS "' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '" TD_J_ASSISTANT "<think>\\n' -}}{%- endif -%}";

/* V3.1: an answer right after a user turn opens with the assistant tag and </think>; earlier answers keep
 * what follows their first </think>; the prompt (after a user turn) ends in </think>, or <think> when
 * `thinking` is true. */
static const char td_jinja_v31[] =
    "{%- if thinking is not defined -%}{%- set thinking = false -%}{%- endif -%}"
    TD_J_SYSTEM
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}"
    "{{- '" TD_J_USER "' + m['content'] -}}"
    "{%- set ns.after_user = true -%}"
    "{%- elif m['role'] == 'assistant' -%}"
    "{%- if ns.after_user -%}{{- '" TD_J_ASSISTANT "</think>' -}}{%- endif -%}"
    "{%- set ns.after_user = false -%}"
    "{%- set answer = m['content'] -%}"
    "{%- if '</think>' in answer -%}"
    "{%- set rest = answer.split('</think>') -%}"
    "{%- set answer = rest[1:] | join('</think>') -%}"
    "{%- endif -%}"
    "{{- answer + '" TD_J_EOS "' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt and ns.after_user -%}"
    "{%- if thinking -%}{{- '" TD_J_ASSISTANT "<think>' -}}{%- else -%}{{- '" TD_J_ASSISTANT "</think>' -}}{%- endif -%}"
    "{%- endif -%}";

const char *td_template_jinja(td_template t)
{
    switch (t) {
    case TD_TEMPLATE_DEEPSEEK_V3: return td_jinja_v3;
    case TD_TEMPLATE_DEEPSEEK_R1: return td_jinja_r1;
    case TD_TEMPLATE_DEEPSEEK_V31:
    case TD_TEMPLATE_DEEPSEEK_V31_THINK: return td_jinja_v31;
    default: return NULL;
    }
}
