/* The request parser's messages (roles, content as text or text parts, tool calls) and tools. */
#include "td_srv_parse_impl.h"

#include "td_alloc.h"
#include "td_tokenizer.h" /* td_utf8_valid_prefix */

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ messages */

static bool td_role_from(const char *s, td_srv_role *out)
{
    static const struct {
        const char *name;
        td_srv_role role;
    } roles[] = {{"system", TD_SRV_SYSTEM}, {"developer", TD_SRV_SYSTEM}, {"user", TD_SRV_USER},
                 {"assistant", TD_SRV_ASSISTANT}, {"tool", TD_SRV_TOOL}};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (strcmp(s, roles[i].name) == 0) {
            *out = roles[i].role;
            return true;
        }
    return false;
}

/* content: a string, null, or (OpenAI) an array of text parts, joined. */
static td_status td_get_content(td_pctx *c, const cJSON *v, const char *param, char **out)
{
    if (td_absent(v)) {
        *out = td_strdup("");
        return *out ? TD_OK : td_fail(TD_E_NOMEM, "out of memory");
    }
    if (cJSON_IsString(v)) return td_get_str(c, v, param, out);
    if (!cJSON_IsArray(v))
        return td_bad(c, param, "'%s' must be a string or an array of text parts, not %s", param, td_json_type(v));
    size_t total = 1;
    const cJSON *part;
    cJSON_ArrayForEach(part, v)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type))
            return td_bad(c, param, "each part of '%s' must be an object with a 'type'", param);
        if (strcmp(type->valuestring, "text") != 0)
            return td_bad(c, param, "content parts of type '%.64s' are not supported (only 'text')", type->valuestring);
        if (!cJSON_IsString(text)) return td_bad(c, param, "a text part of '%s' has no string 'text'", param);
        total += strlen(text->valuestring);
    }
    char *s = td_malloc(total);
    if (!s) return td_fail(TD_E_NOMEM, "out of memory");
    s[0] = '\0';
    size_t n = 0;
    cJSON_ArrayForEach(part, v)
    {
        const char *t = cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring;
        size_t k = strlen(t);
        memcpy(s + n, t, k + 1);
        n += k;
    }
    if (td_utf8_valid_prefix((const uint8_t *)s, n) != n) {
        td_free(s);
        return td_bad(c, param, "'%s' is not valid UTF-8", param);
    }
    td_free(*out);
    *out = s;
    return TD_OK;
}

/* OpenAI: {"id", "type": "function", "function": {"name", "arguments": "<json text>"}};
 * Ollama: {"function": {"name", "arguments": {...}}}. */
static td_status td_get_call(td_pctx *c, const cJSON *v, const char *param, td_srv_tool_call *call)
{
    if (!cJSON_IsObject(v)) return td_bad(c, param, "'%s' must be an object", param);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(v, "id");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(v, "function");
    if (!td_absent(id)) TD_TRY(td_get_str(c, id, param, &call->id));
    if (!cJSON_IsObject(fn)) return td_bad(c, param, "'%s' needs a 'function' object", param);
    TD_TRY(td_get_str(c, cJSON_GetObjectItemCaseSensitive(fn, "name"), param, &call->name));
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
    if (cJSON_IsString(args)) return td_get_str(c, args, param, &call->arguments);
    if (td_absent(args)) {
        call->arguments = td_strdup("{}");
    } else if (cJSON_IsObject(args)) {
        call->arguments = cJSON_PrintUnformatted(args);
    } else {
        return td_bad(c, param, "the arguments of '%s' must be a JSON string or object", param);
    }
    return call->arguments ? TD_OK : td_fail(TD_E_NOMEM, "out of memory");
}

static td_status td_get_message(td_pctx *c, const cJSON *v, int i, bool ollama, td_srv_msg *m)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%d]", i);
    if (!cJSON_IsObject(v)) return td_bad(c, param, "'%s' must be an object, not %s", param, td_json_type(v));
    const cJSON *f;
    cJSON_ArrayForEach(f, v)
    {
        static const char *const known[] = {"role", "content", "name", "tool_calls", "tool_call_id",
                                            "reasoning_content", "thinking", "tool_name", "images", "refusal"};
        bool ok = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) ok |= strcmp(f->string, known[k]) == 0;
        if (!ok) return td_bad(c, param, "'%s.%.64s' is not supported", param, f->string);
    }
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(v, "role");
    if (!cJSON_IsString(role)) return td_bad(c, param, "'%s.role' must be a string", param);
    if (!td_role_from(role->valuestring, &m->role))
        return td_bad(c, param, "'%s.role' is '%.64s'; it must be system, developer, user, assistant or tool", param,
                      role->valuestring);
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(v, "images");
    if (!td_absent(images) && !(cJSON_IsArray(images) && cJSON_GetArraySize(images) == 0))
        return td_bad(c, param, "'%s.images': this model reads text only", param);
    snprintf(param, sizeof param, "messages[%d].content", i);
    TD_TRY(td_get_content(c, cJSON_GetObjectItemCaseSensitive(v, "content"), param, &m->content));
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(v, "tool_calls");
    if (td_absent(calls)) return TD_OK;
    snprintf(param, sizeof param, "messages[%d].tool_calls", i);
    if (m->role != TD_SRV_ASSISTANT || !cJSON_IsArray(calls))
        return td_bad(c, param, "'%s' must be an array, on an assistant message", param);
    int n = cJSON_GetArraySize(calls);
    if (n == 0) return TD_OK;
    m->calls = td_calloc((size_t)n, sizeof *m->calls);
    if (!m->calls) return td_fail(TD_E_NOMEM, "out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, calls) TD_TRY(td_get_call(c, e, param, &m->calls[m->n_calls++]));
    (void)ollama;
    return TD_OK;
}

td_status td_get_messages(td_pctx *c, const cJSON *v, bool ollama, td_srv_req *r)
{
    if (!cJSON_IsArray(v)) return td_bad(c, "messages", "'messages' must be an array, not %s", td_json_type(v));
    int n = cJSON_GetArraySize(v);
    if (n == 0 && ollama) return TD_OK; /* Ollama's way of asking to load the model */
    if (n == 0) return td_bad(c, "messages", "'messages' is empty: give at least one message");
    r->msgs = td_calloc((size_t)n, sizeof *r->msgs);
    if (!r->msgs) return td_fail(TD_E_NOMEM, "out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        r->n_msgs++; /* counted first, so that a failure frees what this message holds */
        TD_TRY(td_get_message(c, e, r->n_msgs - 1, ollama, &r->msgs[r->n_msgs - 1]));
    }
    return TD_OK;
}

/* ------------------------------------------------------------------ tools */

static td_status td_get_tool(td_pctx *c, const cJSON *v, int i, td_srv_tool *t)
{
    char param[48];
    snprintf(param, sizeof param, "tools[%d]", i);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(v, "type");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(v, "function");
    if (!cJSON_IsObject(v) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0 ||
        !cJSON_IsObject(fn))
        return td_bad(c, param, "'%s' must be {\"type\": \"function\", \"function\": {...}}", param);
    TD_TRY(td_get_str(c, cJSON_GetObjectItemCaseSensitive(fn, "name"), param, &t->name));
    if (!t->name[0]) return td_bad(c, param, "'%s' has an empty function name", param);
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(fn, "description");
    if (!td_absent(desc)) TD_TRY(td_get_str(c, desc, param, &t->description));
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    if (!td_absent(params)) {
        if (!cJSON_IsObject(params)) return td_bad(c, param, "the parameters of '%s' must be a JSON schema object", param);
        if (!(t->parameters = cJSON_Duplicate(params, true))) return td_fail(TD_E_NOMEM, "out of memory");
    }
    return TD_OK;
}

td_status td_get_tools(td_pctx *c, const cJSON *v, td_srv_req *r)
{
    if (td_absent(v)) return TD_OK;
    if (!cJSON_IsArray(v)) return td_bad(c, "tools", "'tools' must be an array, not %s", td_json_type(v));
    int n = cJSON_GetArraySize(v);
    if (n == 0) return TD_OK;
    r->tools = td_calloc((size_t)n, sizeof *r->tools);
    if (!r->tools) return td_fail(TD_E_NOMEM, "out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        r->n_tools++;
        TD_TRY(td_get_tool(c, e, r->n_tools - 1, &r->tools[r->n_tools - 1]));
    }
    return TD_OK;
}

td_status td_get_tool_choice(td_pctx *c, const cJSON *v, td_srv_req *r)
{
    if (td_absent(v)) return TD_OK;
    if (cJSON_IsString(v)) {
        if (strcmp(v->valuestring, "auto") == 0) return TD_OK;
        if (strcmp(v->valuestring, "none") == 0) {
            r->tool_choice = TD_TOOLS_NONE;
            return TD_OK;
        }
        if (strcmp(v->valuestring, "required") == 0)
            return td_bad(c, "tool_choice", "'tool_choice': \"required\" is not supported (tandem cannot force a "
                                            "call); use \"auto\" or \"none\"");
    }
    return td_bad(c, "tool_choice", "'tool_choice' must be \"auto\" or \"none\" (forcing a call is not supported)");
}
