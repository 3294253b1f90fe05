/* libFuzzer: the HTTP JSON request parser of tandem serve. The first byte picks the route (OpenAI chat,
 * completions, Ollama chat, generate); the rest is the body. A request that parses is also rendered in
 * every chat format (tools and tool calls included), and the body's bytes are parsed as generated text
 * that may hold tool calls. */
#include "td_srv_parse.h"
#include "td_srv_tools.h"

#include "td_alloc.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    td_srv_api api = (td_srv_api)(data[0] % TD_API_COUNT);
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    td_srv_req req;
    td_srv_err err;
    if (td_srv_parse(api, body, n, &req, &err) == TD_OK) {
        if (req.n_msgs > 0)
            for (int t = 0; t < TD_TEMPLATE_COUNT; t++) {
                char *text = NULL;
                if (td_srv_render_chat((td_template)t, &req, "<bos>", &text) == TD_OK) td_free(text);
            }
        td_srv_req_free(&req);
    }
    td_srv_calls calls;
    if (td_srv_parse_calls(body, n, &calls) == TD_OK) td_srv_calls_free(&calls);
    (void)td_srv_calls_safe_prefix(body, n);
    char *model = NULL;
    if (td_srv_parse_model_only(body, n, &model, &err) == TD_OK) td_free(model);
    return 0;
}
