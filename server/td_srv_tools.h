/* td_srv_tools: function calling in DeepSeek's own format, and the prompt of a request.
 *
 * Rendering follows the models' chat templates:
 *  - V3.1 (its tokenizer_config.json template and model card): the tools are described in the system
 *    area as "## Tools" (name, description, the parameters as Python's json.dumps writes them) with the
 *    call format; a call is <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>
 *    ...<｜tool▁calls▁end｜>; a result is <｜tool▁output▁begin｜>...<｜tool▁output▁end｜>.
 *  - V3 / R1 (V3-0324's template): a call is <｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS
 *    \n```<｜tool▁call▁end｜>, calls joined by newlines; results sit between <｜tool▁outputs▁begin｜> and
 *    <｜tool▁outputs▁end｜>. Their templates do not describe the tools themselves: tandem adds V3.1's
 *    "## Tools" section with V3's call syntax. Unlike the shipped template, the markers that open a
 *    block of calls or of results open every such block, not only the conversation's first.
 * A conversation without tools renders exactly as td_template_render does.
 *
 * Parsing takes a generated text apart into its content and the complete calls of either format. */
#ifndef TD_SRV_TOOLS_H
#define TD_SRV_TOOLS_H

#include "td_chat_template.h"
#include "td_srv_parse.h"
#include "td_strbuf.h"

#include <cjson/cJSON.h>

/* The prompt text of a chat request (td_free it). */
td_status td_srv_render_chat(td_template t, const td_srv_req *r, const char *bos, char **out);

/* A generated text taken apart: content is the text before the first call block (the whole text when
 * it holds no complete call). Pointers into nothing: everything is owned. */
typedef struct td_srv_calls {
    char *content;
    td_srv_tool_call *calls;
    int n;
} td_srv_calls;
td_status td_srv_parse_calls(const char *text, size_t len, td_srv_calls *out);
void td_srv_calls_free(td_srv_calls *c);

/* Where the text of a call block begins in text (len when none, or the start of a partial marker at the
 * end that may still become one): what a stream may send as content. */
size_t td_srv_calls_safe_prefix(const char *text, size_t len);

/* JSON as Python's json.dumps writes it: ", " and ": " separators, non-ASCII as \uXXXX, floats in their
 * shortest form. cJSON keeps every number as a double, so 2.0 in the request is written 2 (Python: 2.0). */
void td_srv_json_dumps(const cJSON *v, td_strbuf *out);

#endif
