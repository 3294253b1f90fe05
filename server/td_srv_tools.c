#include "td_srv_tools.h"

#include "td_alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TD_FW(s) "<\xef\xbd\x9c" s "\xef\xbd\x9c>" /* <｜s｜> */
#define TD_SP "\xe2\x96\x81"                      /* ▁ */
#define TD_T_USER TD_FW("User")
#define TD_T_ASSISTANT TD_FW("Assistant")
#define TD_T_EOS TD_FW("end" TD_SP "of" TD_SP "sentence")
#define TD_T_CALLS_BEGIN TD_FW("tool" TD_SP "calls" TD_SP "begin")
#define TD_T_CALLS_END TD_FW("tool" TD_SP "calls" TD_SP "end")
#define TD_T_CALL_BEGIN TD_FW("tool" TD_SP "call" TD_SP "begin")
#define TD_T_CALL_END TD_FW("tool" TD_SP "call" TD_SP "end")
#define TD_T_SEP TD_FW("tool" TD_SP "sep")
#define TD_T_OUTPUTS_BEGIN TD_FW("tool" TD_SP "outputs" TD_SP "begin")
#define TD_T_OUTPUTS_END TD_FW("tool" TD_SP "outputs" TD_SP "end")
#define TD_T_OUTPUT_BEGIN TD_FW("tool" TD_SP "output" TD_SP "begin")
#define TD_T_OUTPUT_END TD_FW("tool" TD_SP "output" TD_SP "end")
#define TD_V3_JSON_OPEN "\n```json\n"
#define TD_V3_JSON_CLOSE "\n```"

/* ------------------------------------------------------------------ json.dumps */

static void td_dumps_string(const char *s, td_strbuf *out)
{
    td_strbuf_puts(out, "\"");
    const unsigned char *p = (const unsigned char *)s;
    char buf[16];
    while (*p) {
        unsigned c = *p;
        uint32_t cp;
        int n;
        if (c < 0x80) {
            cp = c, n = 1;
        } else if ((c & 0xe0) == 0xc0 && p[1]) {
            cp = (c & 0x1f) << 6 | (p[1] & 0x3f), n = 2;
        } else if ((c & 0xf0) == 0xe0 && p[1] && p[2]) {
            cp = (c & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f), n = 3;
        } else if ((c & 0xf8) == 0xf0 && p[1] && p[2] && p[3]) {
            cp = (c & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 | (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f), n = 4;
        } else {
            cp = 0xfffd, n = 1;
        }
        p += n;
        switch (cp) {
        case '"': td_strbuf_puts(out, "\\\""); continue;
        case '\\': td_strbuf_puts(out, "\\\\"); continue;
        case '\n': td_strbuf_puts(out, "\\n"); continue;
        case '\r': td_strbuf_puts(out, "\\r"); continue;
        case '\t': td_strbuf_puts(out, "\\t"); continue;
        case '\b': td_strbuf_puts(out, "\\b"); continue;
        case '\f': td_strbuf_puts(out, "\\f"); continue;
        default: break;
        }
        if (cp >= 0x20 && cp < 0x7f) {
            char ch = (char)cp;
            td_strbuf_put(out, &ch, 1);
        } else if (cp < 0x10000) {
            snprintf(buf, sizeof buf, "\\u%04x", cp);
            td_strbuf_puts(out, buf);
        } else {
            cp -= 0x10000;
            snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
            td_strbuf_puts(out, buf);
        }
    }
    td_strbuf_puts(out, "\"");
}

/* Python writes the shortest text that reads back as the same double; integers without a fraction. */
static void td_dumps_number(double d, td_strbuf *out)
{
    char buf[40];
    if (d == floor(d) && fabs(d) < 1e16) {
        snprintf(buf, sizeof buf, "%.0f", d);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, d);
            if (strtod(buf, NULL) == d) break;
        }
    }
    td_strbuf_puts(out, buf);
}

void td_srv_json_dumps(const cJSON *v, td_strbuf *out)
{
    if (cJSON_IsString(v)) {
        td_dumps_string(v->valuestring, out);
    } else if (cJSON_IsNumber(v)) {
        td_dumps_number(v->valuedouble, out);
    } else if (cJSON_IsBool(v)) {
        td_strbuf_puts(out, cJSON_IsTrue(v) ? "true" : "false");
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        bool obj = cJSON_IsObject(v);
        td_strbuf_puts(out, obj ? "{" : "[");
        for (const cJSON *e = v->child; e; e = e->next) {
            if (e != v->child) td_strbuf_puts(out, ", ");
            if (obj) {
                td_dumps_string(e->string, out);
                td_strbuf_puts(out, ": ");
            }
            td_srv_json_dumps(e, out);
        }
        td_strbuf_puts(out, obj ? "}" : "]");
    } else {
        td_strbuf_puts(out, "null");
    }
}

/* ------------------------------------------------------------------ rendering */

static bool td_is_v31(td_template t)
{
    return t == TD_TEMPLATE_DEEPSEEK_V31 || t == TD_TEMPLATE_DEEPSEEK_V31_THINK;
}

static void td_tools_section(td_template t, const td_srv_req *r, td_strbuf *o)
{
    td_strbuf_puts(o, "## Tools\nYou have access to the following tools:\n");
    for (int i = 0; i < r->n_tools; i++) {
        const td_srv_tool *tool = &r->tools[i];
        td_strbuf_puts(o, "\n### ");
        td_strbuf_puts(o, tool->name);
        td_strbuf_puts(o, "\nDescription: ");
        td_strbuf_puts(o, tool->description ? tool->description : "");
        td_strbuf_puts(o, "\n\nParameters: ");
        if (tool->parameters)
            td_srv_json_dumps(tool->parameters, o);
        else
            td_strbuf_puts(o, "{}");
        td_strbuf_puts(o, "\n");
    }
    td_strbuf_puts(o, "\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n");
    if (td_is_v31(t)) {
        td_strbuf_puts(o, TD_T_CALLS_BEGIN TD_T_CALL_BEGIN "tool_call_name" TD_T_SEP "tool_call_arguments" TD_T_CALL_END
                          "{additional_tool_calls}" TD_T_CALLS_END "\n\n");
    } else {
        td_strbuf_puts(o, TD_T_CALLS_BEGIN TD_T_CALL_BEGIN "function" TD_T_SEP "tool_call_name" TD_V3_JSON_OPEN
                          "tool_call_arguments" TD_V3_JSON_CLOSE TD_T_CALL_END "{additional_tool_calls}" TD_T_CALLS_END
                          "\n\n");
    }
    td_strbuf_puts(o, "Where:\n"
                      "- `tool_call_name` must be an exact match to one of the available tools\n"
                      "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n");
    td_strbuf_puts(o, td_is_v31(t) ? "- For multiple tool calls, chain them directly without separators or spaces"
                                   : "- For multiple tool calls, put a newline between them");
}

static void td_system_area(td_template t, const td_srv_req *r, td_strbuf *o)
{
    bool first = true;
    for (int i = 0; i < r->n_msgs; i++) {
        if (r->msgs[i].role != TD_SRV_SYSTEM) continue;
        if (!first) td_strbuf_puts(o, "\n\n");
        td_strbuf_puts(o, r->msgs[i].content);
        first = false;
    }
    if (r->n_tools > 0 && r->tool_choice != TD_TOOLS_NONE) {
        td_strbuf_puts(o, "\n\n");
        td_tools_section(t, r, o);
    }
}

static const char *td_after_think(const char *s, bool last)
{
    const char *hit = strstr(s, "</think>"), *after = s;
    while (hit) {
        after = hit + 8;
        if (!last) break;
        hit = strstr(after, "</think>");
    }
    return after;
}

static void td_render_calls(td_template t, const td_srv_msg *m, td_strbuf *o)
{
    for (int k = 0; k < m->n_calls; k++) {
        const td_srv_tool_call *c = &m->calls[k];
        if (k == 0) td_strbuf_puts(o, TD_T_CALLS_BEGIN);
        if (td_is_v31(t)) {
            td_strbuf_puts(o, TD_T_CALL_BEGIN);
            td_strbuf_puts(o, c->name);
            td_strbuf_puts(o, TD_T_SEP);
            td_strbuf_puts(o, c->arguments);
        } else {
            if (k > 0) td_strbuf_puts(o, "\n");
            td_strbuf_puts(o, TD_T_CALL_BEGIN "function" TD_T_SEP);
            td_strbuf_puts(o, c->name);
            td_strbuf_puts(o, TD_V3_JSON_OPEN);
            td_strbuf_puts(o, c->arguments);
            td_strbuf_puts(o, TD_V3_JSON_CLOSE);
        }
        td_strbuf_puts(o, TD_T_CALL_END);
    }
    td_strbuf_puts(o, TD_T_CALLS_END TD_T_EOS);
}

static void td_render_v31_tools(td_template t, const td_srv_req *r, td_strbuf *o, bool gen)
{
    bool last_user = false, in_tool = false;
    for (int i = 0; i < r->n_msgs; i++) {
        const td_srv_msg *m = &r->msgs[i];
        switch (m->role) {
        case TD_SRV_USER:
            td_strbuf_puts(o, TD_T_USER);
            td_strbuf_puts(o, m->content);
            last_user = true;
            in_tool = false;
            break;
        case TD_SRV_ASSISTANT:
            if (last_user) td_strbuf_puts(o, TD_T_ASSISTANT "</think>");
            last_user = false;
            if (m->n_calls) {
                td_strbuf_puts(o, m->content);
                td_render_calls(t, m, o);
            } else {
                td_strbuf_puts(o, in_tool ? m->content : td_after_think(m->content, false));
                td_strbuf_puts(o, TD_T_EOS);
            }
            in_tool = false;
            break;
        case TD_SRV_TOOL:
            last_user = false;
            in_tool = true;
            td_strbuf_puts(o, TD_T_OUTPUT_BEGIN);
            td_strbuf_puts(o, m->content);
            td_strbuf_puts(o, TD_T_OUTPUT_END);
            break;
        default: break;
        }
    }
    if (gen && last_user && !in_tool)
        td_strbuf_puts(o, t == TD_TEMPLATE_DEEPSEEK_V31_THINK ? TD_T_ASSISTANT "<think>" : TD_T_ASSISTANT "</think>");
}

static void td_render_v3_tools(td_template t, const td_srv_req *r, td_strbuf *o, bool gen)
{
    bool r1 = t == TD_TEMPLATE_DEEPSEEK_R1, in_tool = false;
    for (int i = 0; i < r->n_msgs; i++) {
        const td_srv_msg *m = &r->msgs[i];
        if (m->role != TD_SRV_TOOL && in_tool && m->role != TD_SRV_ASSISTANT) td_strbuf_puts(o, TD_T_OUTPUTS_END);
        switch (m->role) {
        case TD_SRV_USER:
            td_strbuf_puts(o, TD_T_USER);
            td_strbuf_puts(o, m->content);
            in_tool = false;
            break;
        case TD_SRV_ASSISTANT:
            if (m->n_calls) {
                if (in_tool) td_strbuf_puts(o, TD_T_OUTPUTS_END);
                td_strbuf_puts(o, TD_T_ASSISTANT);
                td_strbuf_puts(o, m->content);
                td_render_calls(t, m, o);
            } else if (in_tool) {
                td_strbuf_puts(o, TD_T_OUTPUTS_END);
                td_strbuf_puts(o, m->content);
                td_strbuf_puts(o, TD_T_EOS);
            } else {
                td_strbuf_puts(o, TD_T_ASSISTANT);
                td_strbuf_puts(o, r1 ? td_after_think(m->content, true) : m->content);
                td_strbuf_puts(o, TD_T_EOS);
            }
            in_tool = false;
            break;
        case TD_SRV_TOOL:
            td_strbuf_puts(o, in_tool ? TD_T_OUTPUT_BEGIN : TD_T_OUTPUTS_BEGIN TD_T_OUTPUT_BEGIN);
            td_strbuf_puts(o, m->content);
            td_strbuf_puts(o, TD_T_OUTPUT_END);
            in_tool = true;
            break;
        default: break;
        }
    }
    if (in_tool) td_strbuf_puts(o, TD_T_OUTPUTS_END);
    else if (gen) td_strbuf_puts(o, r1 ? TD_T_ASSISTANT "<think>\n" : TD_T_ASSISTANT);
}

static bool td_needs_tool_format(const td_srv_req *r)
{
    if (r->n_tools > 0 && r->tool_choice != TD_TOOLS_NONE) return true;
    for (int i = 0; i < r->n_msgs; i++)
        if (r->msgs[i].role == TD_SRV_TOOL || r->msgs[i].n_calls) return true;
    return false;
}

td_status td_srv_render_chat(td_template t, const td_srv_req *r, const char *bos, char **out)
{
    *out = NULL;
    if (!td_needs_tool_format(r)) {
        td_chat_msg *msgs = td_calloc((size_t)(r->n_msgs ? r->n_msgs : 1), sizeof *msgs);
        if (!msgs) return td_fail(TD_E_NOMEM, "out of memory");
        for (int i = 0; i < r->n_msgs; i++)
            msgs[i] = (td_chat_msg){(td_chat_role)r->msgs[i].role, r->msgs[i].content};
        td_status st = td_template_render(t, msgs, r->n_msgs, bos, true, out);
        td_free(msgs);
        return st;
    }
    if (t == TD_TEMPLATE_RAW)
        return td_fail(TD_E_ARG, "tools and tool messages need a chat format; the server runs --template raw");
    td_strbuf o = {0};
    td_strbuf_puts(&o, bos ? bos : "");
    td_system_area(t, r, &o);
    if (td_is_v31(t))
        td_render_v31_tools(t, r, &o, true);
    else
        td_render_v3_tools(t, r, &o, true);
    if (o.oom) {
        td_strbuf_free(&o);
        return td_fail(TD_E_NOMEM, "out of memory rendering a conversation of %d messages", r->n_msgs);
    }
    *out = o.p ? o.p : td_strdup("");
    return *out ? TD_OK : td_fail(TD_E_NOMEM, "out of memory");
}

/* ------------------------------------------------------------------ parsing */

static const char *td_find(const char *s, const char *end, const char *needle)
{
    return memmem(s, (size_t)(end - s), needle, strlen(needle));
}

static char *td_dup_range(const char *a, const char *b)
{
    return td_strndup(a, (size_t)(b - a));
}

/* One call's text between <｜tool▁call▁begin｜> and <｜tool▁call▁end｜>, in either format. */
static bool td_parse_one(const char *a, const char *b, td_srv_tool_call *c)
{
    const char *sep = td_find(a, b, TD_T_SEP);
    if (!sep) return false;
    const char *rest = sep + strlen(TD_T_SEP);
    const char *name_a, *name_b, *args_a, *args_b;
    const char *open = td_find(rest, b, TD_V3_JSON_OPEN);
    if (sep - a == 8 && memcmp(a, "function", 8) == 0 && open) { /* V3: function<sep>NAME\n```json\nARGS\n``` */
        name_a = rest;
        name_b = open;
        args_a = open + strlen(TD_V3_JSON_OPEN);
        args_b = b;
        size_t cl = strlen(TD_V3_JSON_CLOSE);
        if (args_b - args_a >= (ptrdiff_t)cl && memcmp(args_b - cl, TD_V3_JSON_CLOSE, cl) == 0) args_b -= cl;
    } else { /* V3.1: NAME<sep>ARGS */
        name_a = a;
        name_b = sep;
        args_a = rest;
        args_b = b;
    }
    if (name_a == name_b) return false;
    c->name = td_dup_range(name_a, name_b);
    c->arguments = td_dup_range(args_a, args_b);
    return c->name && c->arguments;
}

td_status td_srv_parse_calls(const char *text, size_t len, td_srv_calls *out)
{
    memset(out, 0, sizeof *out);
    const char *end = text + len, *block = td_find(text, end, TD_T_CALLS_BEGIN);
    int cap = 0;
    if (block) {
        const char *p = block + strlen(TD_T_CALLS_BEGIN);
        for (;;) {
            const char *a = td_find(p, end, TD_T_CALL_BEGIN);
            if (!a) break;
            a += strlen(TD_T_CALL_BEGIN);
            const char *b = td_find(a, end, TD_T_CALL_END);
            if (!b) break;
            if (out->n == cap) {
                cap = cap ? cap * 2 : 4;
                td_srv_tool_call *nc = td_realloc(out->calls, (size_t)cap * sizeof *nc);
                if (!nc) goto fail_nomem;
                out->calls = nc;
            }
            td_srv_tool_call *c = &out->calls[out->n];
            memset(c, 0, sizeof *c);
            out->n++;
            if (!td_parse_one(a, b, c)) {
                td_free(c->name);
                td_free(c->arguments);
                out->n--;
            }
            p = b + strlen(TD_T_CALL_END);
        }
    }
    out->content = out->n ? td_dup_range(text, block) : td_strndup(text, len);
    if (!out->content) goto fail_nomem;
    return TD_OK;
fail_nomem:
    td_srv_calls_free(out);
    return td_fail(TD_E_NOMEM, "out of memory parsing tool calls");
}

void td_srv_calls_free(td_srv_calls *c)
{
    for (int i = 0; i < c->n; i++) {
        td_free(c->calls[i].id);
        td_free(c->calls[i].name);
        td_free(c->calls[i].arguments);
    }
    td_free(c->calls);
    td_free(c->content);
    memset(c, 0, sizeof *c);
}

size_t td_srv_calls_safe_prefix(const char *text, size_t len)
{
    const char *m = TD_T_CALLS_BEGIN;
    size_t ml = strlen(m);
    const char *hit = memmem(text, len, m, ml);
    if (hit) return (size_t)(hit - text);
    for (size_t k = ml - 1; k > 0; k--)
        if (len >= k && memcmp(text + len - k, m, k) == 0) return len - k;
    return len;
}
