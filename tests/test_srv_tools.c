/* Function calling in DeepSeek's formats: a request with tools renders the prompt the model family
 * specifies (V3.1: its model card's tool section and template; V3/R1: V3-0324's template), a request
 * without tools renders exactly as td_template_render, and generated tool-call texts of V3 and V3.1 are
 * taken apart into content and calls (complete calls only). */
#include "td_alloc.h"
#include "td_srv_parse.h"
#include "td_srv_tools.h"
#include "td_test.h"

#include <string.h>

#define FW(s) "<\xef\xbd\x9c" s "\xef\xbd\x9c>"
#define SP "\xe2\x96\x81"
#define USER FW("User")
#define ASSISTANT FW("Assistant")
#define EOS FW("end" SP "of" SP "sentence")
#define CALLS_BEGIN FW("tool" SP "calls" SP "begin")
#define CALLS_END FW("tool" SP "calls" SP "end")
#define CALL_BEGIN FW("tool" SP "call" SP "begin")
#define CALL_END FW("tool" SP "call" SP "end")
#define SEP FW("tool" SP "sep")
#define OUTPUTS_BEGIN FW("tool" SP "outputs" SP "begin")
#define OUTPUTS_END FW("tool" SP "outputs" SP "end")
#define OUTPUT_BEGIN FW("tool" SP "output" SP "begin")
#define OUTPUT_END FW("tool" SP "output" SP "end")

static const char *const td_tool_request =
    "{\"messages\":[{\"role\":\"system\",\"content\":\"You are a helper.\"},"
    "{\"role\":\"user\",\"content\":\"Weather in Paris?\"}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather of a city\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"description\":\"caf\\u00e9 "
    "city\"},\"days\":{\"type\":\"number\",\"default\":0.1}},\"required\":[\"city\"]}}}]}";

/* The "## Tools" section of the V3.1 model card, with the parameters as Python's json.dumps writes them. */
#define TOOLS_HEAD                                                                                                     \
    "## Tools\nYou have access to the following tools:\n\n### get_weather\nDescription: Weather of a city\n\n"          \
    "Parameters: {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": "            \
    "\"caf\\u00e9 city\"}, \"days\": {\"type\": \"number\", \"default\": 0.1}}, \"required\": [\"city\"]}\n\n"          \
    "IMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
#define TOOLS_WHERE                                                                                                    \
    "Where:\n- `tool_call_name` must be an exact match to one of the available tools\n"                              \
    "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"

static char *td_render(td_template t, const char *json)
{
    td_srv_req r;
    td_srv_err e;
    char *out = NULL;
    if (td_srv_parse(TD_API_CHAT, json, strlen(json), &r, &e) != TD_OK) {
        TD_CHECKF(false, "parse: %s", e.message);
        return NULL;
    }
    TD_CHECKF(td_srv_render_chat(t, &r, "<bos>", &out) == TD_OK, "render: %s", td_errmsg());
    td_srv_req_free(&r);
    return out;
}

static void td_expect_render(td_template t, const char *json, const char *want)
{
    char *got = td_render(t, json);
    TD_CHECKF(got && strcmp(got, want) == 0, "%s:\n got  %s\n want %s", td_template_name(t), got ? got : "(null)", want);
    td_free(got);
}

static void td_test_render_tools(void)
{
    td_expect_render(TD_TEMPLATE_DEEPSEEK_V31, td_tool_request,
                     "<bos>You are a helper.\n\n" TOOLS_HEAD CALLS_BEGIN CALL_BEGIN "tool_call_name" SEP
                     "tool_call_arguments" CALL_END "{additional_tool_calls}" CALLS_END "\n\n" TOOLS_WHERE
                     "- For multiple tool calls, chain them directly without separators or spaces" USER
                     "Weather in Paris?" ASSISTANT "</think>");
    td_expect_render(TD_TEMPLATE_DEEPSEEK_V3, td_tool_request,
                     "<bos>You are a helper.\n\n" TOOLS_HEAD CALLS_BEGIN CALL_BEGIN "function" SEP
                     "tool_call_name\n```json\ntool_call_arguments\n```" CALL_END "{additional_tool_calls}" CALLS_END
                     "\n\n" TOOLS_WHERE "- For multiple tool calls, put a newline between them" USER
                     "Weather in Paris?" ASSISTANT);

    /* a call, its result, and the answer after it: the templates' own shapes */
    const char *turns = "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"},"
                        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
                        "{\"id\":\"1\",\"type\":\"function\",\"function\":{\"name\":\"w\",\"arguments\":\"{\\\"c\\\": 1}\"}},"
                        "{\"id\":\"2\",\"type\":\"function\",\"function\":{\"name\":\"w\",\"arguments\":\"{\\\"c\\\": 2}\"}}]},"
                        "{\"role\":\"tool\",\"content\":\"sunny\"},{\"role\":\"tool\",\"content\":\"rain\"},"
                        "{\"role\":\"assistant\",\"content\":\"Sunny, then rain.\"},{\"role\":\"user\",\"content\":\"Thanks\"}]}";
    td_expect_render(TD_TEMPLATE_DEEPSEEK_V31, turns,
                     "<bos>" USER "Weather?" ASSISTANT "</think>" CALLS_BEGIN CALL_BEGIN "w" SEP "{\"c\": 1}" CALL_END
                     CALL_BEGIN "w" SEP "{\"c\": 2}" CALL_END CALLS_END EOS OUTPUT_BEGIN "sunny" OUTPUT_END OUTPUT_BEGIN
                     "rain" OUTPUT_END "Sunny, then rain." EOS USER "Thanks" ASSISTANT "</think>");
    td_expect_render(TD_TEMPLATE_DEEPSEEK_V3, turns,
                     "<bos>" USER "Weather?" ASSISTANT CALLS_BEGIN CALL_BEGIN "function" SEP "w\n```json\n{\"c\": 1}\n```"
                     CALL_END "\n" CALL_BEGIN "function" SEP "w\n```json\n{\"c\": 2}\n```" CALL_END CALLS_END EOS
                     OUTPUTS_BEGIN OUTPUT_BEGIN "sunny" OUTPUT_END OUTPUT_BEGIN "rain" OUTPUT_END OUTPUTS_END
                     "Sunny, then rain." EOS USER "Thanks" ASSISTANT);
    /* a prompt that ends with tool results: the model goes on after them (no assistant tag) */
    td_expect_render(TD_TEMPLATE_DEEPSEEK_R1,
                     "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"\","
                     "\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"content\":\"r\"}]}",
                     "<bos>" USER "q" ASSISTANT CALLS_BEGIN CALL_BEGIN "function" SEP "f\n```json\n{}\n```" CALL_END
                     CALLS_END EOS OUTPUTS_BEGIN OUTPUT_BEGIN "r" OUTPUT_END OUTPUTS_END);
    /* tool_choice none: the tools are not offered */
    char *none = td_render(TD_TEMPLATE_DEEPSEEK_V31, "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"tool_choice\":\"none\","
                                                    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}");
    TD_CHECK(none && !strstr(none, "## Tools"));
    td_free(none);
}

/* Without tools, the server's prompt is td_template_render's, in every format. */
static void td_test_render_plain(void)
{
    const char *json = "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"U1\"},"
                       "{\"role\":\"assistant\",\"content\":\"<think>r</think>A1\"},{\"role\":\"user\",\"content\":\"U2\"}]}";
    td_chat_msg msgs[] = {{TD_ROLE_SYSTEM, "S"}, {TD_ROLE_USER, "U1"}, {TD_ROLE_ASSISTANT, "<think>r</think>A1"}, {TD_ROLE_USER, "U2"}};
    for (int t = 0; t < TD_TEMPLATE_COUNT; t++) {
        char *want = NULL, *got = td_render((td_template)t, json);
        TD_CHECK(td_template_render((td_template)t, msgs, 4, "<bos>", true, &want) == TD_OK);
        TD_CHECKF(got && want && strcmp(got, want) == 0, "%s: %s != %s", td_template_name((td_template)t), got, want);
        td_free(got);
        td_free(want);
    }
}

static void td_expect_calls(const char *text, const char *content, int n, const char *const *names, const char *const *args)
{
    td_srv_calls c;
    TD_CHECK(td_srv_parse_calls(text, strlen(text), &c) == TD_OK);
    TD_CHECKF(strcmp(c.content, content) == 0, "content '%s', want '%s'", c.content, content);
    TD_CHECKF(c.n == n, "%d calls, want %d in %s", c.n, n, text);
    for (int i = 0; i < n && i < c.n; i++) {
        TD_CHECKF(strcmp(c.calls[i].name, names[i]) == 0, "call %d: name '%s', want '%s'", i, c.calls[i].name, names[i]);
        TD_CHECKF(strcmp(c.calls[i].arguments, args[i]) == 0, "call %d: args '%s', want '%s'", i, c.calls[i].arguments, args[i]);
    }
    td_srv_calls_free(&c);
}

static void td_test_parse_calls(void)
{
    static const char *const names[] = {"get_weather", "get_time"};
    static const char *const args[] = {"{\"city\": \"Paris\"}", "{\"tz\": \"CET\"}"};
    /* V3: function<sep>NAME, a json code block, calls separated by a newline */
    td_expect_calls("Let me look." CALLS_BEGIN CALL_BEGIN "function" SEP "get_weather\n```json\n{\"city\": \"Paris\"}\n```"
                    CALL_END "\n" CALL_BEGIN "function" SEP "get_time\n```json\n{\"tz\": \"CET\"}\n```" CALL_END CALLS_END,
                    "Let me look.", 2, names, args);
    /* V3.1: NAME<sep>ARGS, chained */
    td_expect_calls(CALLS_BEGIN CALL_BEGIN "get_weather" SEP "{\"city\": \"Paris\"}" CALL_END CALL_BEGIN "get_time" SEP
                    "{\"tz\": \"CET\"}" CALL_END CALLS_END,
                    "", 2, names, args);
    /* cut off inside the second call: the complete one is kept */
    td_expect_calls("x" CALLS_BEGIN CALL_BEGIN "get_weather" SEP "{\"city\": \"Paris\"}" CALL_END CALL_BEGIN "get_ti", "x", 1,
                    names, args);
    /* no complete call: all of it is content */
    td_expect_calls("plain text", "plain text", 0, names, args);
    td_expect_calls("a" CALLS_BEGIN CALL_BEGIN "get", "a" CALLS_BEGIN CALL_BEGIN "get", 0, names, args);

    /* what a stream may send before a call block */
    const char *t = "Sure." CALLS_BEGIN "x";
    TD_CHECK(td_srv_calls_safe_prefix(t, strlen(t)) == 5);
    char partial[64];
    snprintf(partial, sizeof partial, "Sure.%.6s", CALLS_BEGIN);
    TD_CHECK(td_srv_calls_safe_prefix(partial, strlen(partial)) == 5);
    TD_CHECK(td_srv_calls_safe_prefix("Sure.<", 6) == 5);
    TD_CHECK(td_srv_calls_safe_prefix("Sure.", 5) == 5);
}

/* json.dumps: ", " and ": ", \uXXXX for non-ASCII (surrogate pairs above the BMP), shortest floats. */
static void td_test_dumps(void)
{
    cJSON *v = cJSON_Parse("{\"a\":[1,2.5,0.1,1e300,true,null],\"s\":\"\\u00e9\\ud83d\\ude00\\n\\\"\",\"o\":{}}");
    td_strbuf b = {0};
    td_srv_json_dumps(v, &b);
    const char *want = "{\"a\": [1, 2.5, 0.1, 1e+300, true, null], \"s\": \"\\u00e9\\ud83d\\ude00\\n\\\"\", \"o\": {}}";
    TD_CHECKF(b.p && strcmp(b.p, want) == 0, "%s != %s", b.p, want);
    td_strbuf_free(&b);
    cJSON_Delete(v);
}

int main(void)
{
    td_test_render_tools();
    td_test_render_plain();
    td_test_parse_calls();
    td_test_dumps();
    return td_test_finish();
}
