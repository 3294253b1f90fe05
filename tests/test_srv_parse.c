/* The request parser of tandem serve: every field read with its type and range, defaults per API, and
 * each bad input refused with the field named (never ignored); failures under injected out-of-memory
 * leave nothing allocated (LeakSanitizer in the sanitizer build). */
#include "td_alloc.h"
#include "td_srv_parse.h"
#include "td_test.h"

#include <string.h>

static bool td_parse(td_srv_api api, const char *body, td_srv_req *r, td_srv_err *e)
{
    return td_srv_parse(api, body, strlen(body), r, e) == TD_OK;
}

/* body must be refused, naming param, with a message containing `words`. */
static void td_refused(td_srv_api api, const char *body, const char *param, const char *words)
{
    td_srv_req r;
    td_srv_err e;
    bool ok = td_parse(api, body, &r, &e);
    TD_CHECKF(!ok, "accepted: %s", body);
    if (ok) {
        td_srv_req_free(&r);
        return;
    }
    TD_CHECKF(strcmp(e.param, param) == 0, "%s: param '%s', expected '%s' (%s)", body, e.param, param, e.message);
    TD_CHECKF(strstr(e.message, words) != NULL, "%s: message '%s' lacks '%s'", body, e.message, words);
}

static void td_test_chat_fields(void)
{
    td_srv_req r;
    td_srv_err e;
    const char *body = "{\"model\":\"default\",\"messages\":[{\"role\":\"developer\",\"content\":\"Be brief.\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
                       "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
                       "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"content\":\"ok\"}],"
                       "\"max_completion_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,\"seed\":42,\"stop\":[\"x\",\"yy\"],"
                       "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"n\":1,\"frequency_penalty\":0,"
                       "\"logprobs\":false,\"response_format\":{\"type\":\"text\"},\"tools\":[{\"type\":\"function\","
                       "\"function\":{\"name\":\"f\",\"description\":\"d\",\"parameters\":{\"type\":\"object\"}}}]}";
    TD_CHECK(td_parse(TD_API_CHAT, body, &r, &e));
    TD_CHECK(r.n_msgs == 4 && r.msgs[0].role == TD_SRV_SYSTEM && r.msgs[3].role == TD_SRV_TOOL);
    TD_CHECK(r.msgs[1].content && strcmp(r.msgs[1].content, "ab") == 0);
    TD_CHECK(r.msgs[2].n_calls == 1 && strcmp(r.msgs[2].calls[0].name, "f") == 0 && r.msgs[2].content[0] == '\0');
    TD_CHECK(r.max_tokens == 7 && r.sampling.temperature == 0.5 && r.sampling.top_p == 0.9);
    TD_CHECK(r.seed_set && r.sampling.seed == 42 && r.n_stop == 2 && strcmp(r.stop[1], "yy") == 0);
    TD_CHECK(r.stream && r.include_usage && r.n_tools == 1 && r.tools[0].parameters);
    td_srv_req_free(&r);

    /* defaults: OpenAI does not stream and samples at 1; Ollama streams and samples at 0.8 */
    TD_CHECK(td_parse(TD_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &r, &e));
    TD_CHECK(!r.stream && r.max_tokens == -1 && r.sampling.temperature == 1.0 && !r.model);
    td_srv_req_free(&r);
    TD_CHECK(td_parse(TD_API_OLLAMA_CHAT,
                      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"images\":[]}],"
                      "\"options\":{\"num_predict\":5,\"top_k\":3,\"stop\":[\"s\"]},\"keep_alive\":\"5m\",\"think\":false}",
                      &r, &e));
    TD_CHECK(r.stream && r.sampling.temperature == 0.8 && r.max_tokens == 5 && r.sampling.top_k == 3 && r.think == 0);
    td_srv_req_free(&r);
    TD_CHECK(td_parse(TD_API_OLLAMA_GEN, "{\"model\":\"m\",\"prompt\":\"p\",\"system\":\"s\",\"raw\":true}", &r, &e));
    TD_CHECK(r.raw && strcmp(r.system, "s") == 0 && strcmp(r.prompt, "p") == 0);
    td_srv_req_free(&r);
    TD_CHECK(td_parse(TD_API_COMPLETIONS, "{\"prompt\":[\"one\"],\"max_tokens\":3}", &r, &e));
    TD_CHECK(strcmp(r.prompt, "one") == 0 && r.max_tokens == 3);
    td_srv_req_free(&r);
}

static void td_test_refusals(void)
{
    const char *u = "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]";
    char b[512];
    td_refused(TD_API_CHAT, "{\"messages\": [", "", "not valid JSON");
    td_refused(TD_API_CHAT, "[1, 2]", "", "JSON object");
    td_refused(TD_API_CHAT, "{}", "messages", "missing");
    td_refused(TD_API_CHAT, "{\"messages\":[]}", "messages", "empty");
    td_refused(TD_API_CHAT, "{\"messages\":\"hi\"}", "messages", "an array");
    td_refused(TD_API_CHAT, "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", "messages[0]", "robot");
    td_refused(TD_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content", "string");
    td_refused(TD_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
               "messages[0].content", "image_url");
    td_refused(TD_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\\xff\"}]}", "", "not valid JSON");
    td_refused(TD_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xc3(\"}]}", "messages[0].content", "UTF-8");
#define TD_WITH(extra) (snprintf(b, sizeof b, "{%s,%s}", u, extra), b)
    td_refused(TD_API_CHAT, TD_WITH("\"temperature\":\"hot\""), "temperature", "a number");
    td_refused(TD_API_CHAT, TD_WITH("\"temperature\":3"), "temperature", "between 0 and 2");
    td_refused(TD_API_CHAT, TD_WITH("\"top_p\":0"), "top_p", "above 0");
    td_refused(TD_API_CHAT, TD_WITH("\"max_tokens\":0"), "max_tokens", "between 1");
    td_refused(TD_API_CHAT, TD_WITH("\"max_tokens\":2.5"), "max_tokens", "whole number");
    td_refused(TD_API_CHAT, TD_WITH("\"n\":2"), "n", "one choice");
    td_refused(TD_API_CHAT, TD_WITH("\"logprobs\":true"), "logprobs", "not supported");
    td_refused(TD_API_CHAT, TD_WITH("\"presence_penalty\":0.5"), "presence_penalty", "not supported");
    td_refused(TD_API_CHAT, TD_WITH("\"response_format\":{\"type\":\"json_object\"}"), "response_format", "not supported");
    td_refused(TD_API_CHAT, TD_WITH("\"logit_bias\":{\"5\":1}"), "logit_bias", "not supported");
    td_refused(TD_API_CHAT, TD_WITH("\"reasoning_effort\":\"low\""), "reasoning_effort", "not supported");
    td_refused(TD_API_CHAT, TD_WITH("\"stream\":1"), "stream", "true or false");
    td_refused(TD_API_CHAT, TD_WITH("\"stream_options\":{\"continuous_usage\":true}"), "stream_options", "continuous_usage");
    td_refused(TD_API_CHAT, TD_WITH("\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]"), "stop", "at most 8");
    td_refused(TD_API_CHAT, TD_WITH("\"stop\":[\"\"]"), "stop", "empty");
    td_refused(TD_API_CHAT, TD_WITH("\"tool_choice\":\"required\""), "tool_choice", "not supported");
    td_refused(TD_API_CHAT, TD_WITH("\"tools\":[{\"type\":\"code\"}]"), "tools[0]", "function");
    td_refused(TD_API_CHAT, TD_WITH("\"seed\":1,\"seed\":2"), "seed", "twice");
    td_refused(TD_API_COMPLETIONS, "{\"prompt\":[1,2,3]}", "prompt", "one string");
    td_refused(TD_API_COMPLETIONS, "{\"prompt\":\"x\",\"echo\":true}", "echo", "not supported");
    td_refused(TD_API_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"images\":[\"AA==\"]}]}",
               "messages[0]", "text only");
    td_refused(TD_API_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[],\"options\":{\"mirostat\":1}}", "options", "mirostat");
    td_refused(TD_API_OLLAMA_GEN, "{\"model\":\"m\",\"prompt\":\"p\",\"format\":\"json\"}", "format", "not supported");
    td_refused(TD_API_OLLAMA_GEN, "{\"model\":\"m\",\"prompt\":\"p\",\"think\":\"high\"}", "think", "true or false");
#undef TD_WITH
}

/* Every allocation of a rich request fails in turn: a clean failure each time. */
static void td_test_oom(void)
{
    const char *body = "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"assistant\",\"content\":\"a\","
                       "\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"x\":[1,2]}}}]}],\"stop\":[\"a\",\"b\"],"
                       "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\"d\","
                       "\"parameters\":{\"type\":\"object\"}}}]}";
    int failures = 0, n;
    for (n = 0; n < 200; n++) {
        td_srv_req r;
        td_srv_err e;
        td_alloc_fail_after(n);
        bool ok = td_parse(TD_API_CHAT, body, &r, &e);
        td_alloc_fail_after(-1);
        if (ok) {
            td_srv_req_free(&r);
            break;
        }
        failures++;
    }
    TD_CHECKF(n < 200 && failures > 5, "parsed after %d injected failures", failures);
}

int main(void)
{
    td_test_chat_fields();
    td_test_refusals();
    td_test_oom();
    return td_test_finish();
}
