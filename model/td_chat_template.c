#include "td_chat_template.h"

#include "td_alloc.h"

#include <string.h>
#include <strings.h>

#define TD_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define TD_ASSISTANT                                                                                                   \
    "<\xef\xbd\x9c"                                                                                                    \
    "Assistant\xef\xbd\x9c>"
#define TD_EOS                                                                                                         \
    "<\xef\xbd\x9c"                                                                                                    \
    "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"

static const struct {
    const char *name, *alias;
} td_template_table[TD_TEMPLATE_COUNT] = {
    [TD_TEMPLATE_RAW] = {"raw", "none"},
    [TD_TEMPLATE_DEEPSEEK_V3] = {"deepseek-v3", "v3"},
    [TD_TEMPLATE_DEEPSEEK_R1] = {"deepseek-r1", "r1"},
    [TD_TEMPLATE_DEEPSEEK_V31] = {"deepseek-v3.1", "v3.1"},
    [TD_TEMPLATE_DEEPSEEK_V31_THINK] = {"deepseek-v3.1-think", "v3.1-think"},
};

bool td_template_from_name(const char *name, td_template *out)
{
    for (int i = 0; i < TD_TEMPLATE_COUNT; i++) {
        if (strcmp(name, td_template_table[i].name) == 0 || strcmp(name, td_template_table[i].alias) == 0) {
            *out = (td_template)i;
            return true;
        }
    }
    return false;
}

const char *td_template_name(td_template t)
{
    return (unsigned)t < TD_TEMPLATE_COUNT ? td_template_table[t].name : "?";
}

const char *td_template_names(void)
{
    return "v3, r1, v3.1, v3.1-think, raw (or deepseek-v3, deepseek-r1, ...)";
}

bool td_template_starts_thinking(td_template t)
{
    return t == TD_TEMPLATE_DEEPSEEK_R1 || t == TD_TEMPLATE_DEEPSEEK_V31_THINK;
}

static bool td_contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0) return true;
    return false;
}

td_template td_template_detect(const char *jinja, const char *model_name, const char **why)
{
    const char *dummy;
    if (!why) why = &dummy;
    if (jinja && *jinja) {
        /* V3.1 switches on a `thinking` variable (and tracks is_last_user); R1 forces or strips reasoning;
         * V3 knows no <think> */
        bool v31 = strstr(jinja, "is_last_user") || strstr(jinja, "thinking is defined") ||
                   strstr(jinja, "if thinking") || strstr(jinja, "not thinking");
        if (strstr(jinja, "</think>") && v31) {
            *why = "from the model's chat template: V3.1's thinking switch";
            return TD_TEMPLATE_DEEPSEEK_V31;
        }
        if (strstr(jinja, "<think>") || strstr(jinja, "</think>")) {
            *why = "from the model's chat template: R1's reasoning blocks";
            return TD_TEMPLATE_DEEPSEEK_R1;
        }
        if (strstr(jinja, TD_ASSISTANT)) {
            *why = "from the model's chat template";
            return TD_TEMPLATE_DEEPSEEK_V3;
        }
    }
    if (model_name && *model_name) {
        if (td_contains_ci(model_name, "v3.1") || td_contains_ci(model_name, "v3-1") ||
            td_contains_ci(model_name, "v3_1")) {
            *why = "from the model's name";
            return TD_TEMPLATE_DEEPSEEK_V31;
        }
        if (td_contains_ci(model_name, "r1")) {
            *why = "from the model's name";
            return TD_TEMPLATE_DEEPSEEK_R1;
        }
    }
    *why = jinja && *jinja ? "the default; the model's chat template is not one tandem knows"
                           : "the default; the model has no chat template";
    return TD_TEMPLATE_DEEPSEEK_V3;
}

/* ------------------------------------------------------------------ rendering */

typedef struct td_out {
    char *p;
    size_t n, cap;
    bool oom;
} td_out;

static void td_put_n(td_out *o, const char *s, size_t n)
{
    if (o->oom) return;
    if (o->n + n + 1 > o->cap) {
        size_t cap = (o->n + n + 1) * 2;
        char *p = td_realloc(o->p, cap);
        if (!p) {
            o->oom = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
    o->p[o->n] = '\0';
}

static void td_put(td_out *o, const char *s)
{
    td_put_n(o, s, strlen(s));
}

/* R1 keeps what follows the last </think> of an earlier answer, V3.1 what follows the first. */
static const char *td_after_think(const char *content, bool last)
{
    const char *tag = "</think>", *hit = strstr(content, tag), *after = content;
    while (hit) {
        after = hit + strlen(tag);
        if (!last) break;
        hit = strstr(after, tag);
    }
    return after;
}

static void td_render_v31(td_out *o, td_template t, const td_chat_msg *msgs, int n, bool gen)
{
    bool last_user = false;
    for (int i = 0; i < n; i++) {
        if (msgs[i].role == TD_ROLE_USER) {
            td_put(o, TD_USER);
            td_put(o, msgs[i].content);
            last_user = true;
        } else if (msgs[i].role == TD_ROLE_ASSISTANT) {
            /* only an answer right after a user turn opens with the assistant tag; it is always closed */
            if (last_user) td_put(o, TD_ASSISTANT "</think>");
            last_user = false;
            td_put(o, td_after_think(msgs[i].content, false));
            td_put(o, TD_EOS);
        }
    }
    if (gen && last_user)
        td_put(o, t == TD_TEMPLATE_DEEPSEEK_V31_THINK ? TD_ASSISTANT "<think>" : TD_ASSISTANT "</think>");
}

static void td_render_v3_r1(td_out *o, td_template t, const td_chat_msg *msgs, int n, bool gen)
{
    bool r1 = t == TD_TEMPLATE_DEEPSEEK_R1;
    for (int i = 0; i < n; i++) {
        if (msgs[i].role == TD_ROLE_USER) {
            td_put(o, TD_USER);
            td_put(o, msgs[i].content);
        } else if (msgs[i].role == TD_ROLE_ASSISTANT) {
            td_put(o, TD_ASSISTANT);
            td_put(o, r1 ? td_after_think(msgs[i].content, true) : msgs[i].content);
            td_put(o, TD_EOS);
        }
    }
    if (gen) td_put(o, r1 ? TD_ASSISTANT "<think>\n" : TD_ASSISTANT);
}

td_status td_template_render(td_template t, const td_chat_msg *msgs, int n, const char *bos, bool add_generation_prompt,
                             char **out)
{
    *out = NULL;
    if ((unsigned)t >= TD_TEMPLATE_COUNT) return td_fail(TD_E_ARG, "unknown chat template %d", (int)t);
    if (n < 0) return td_fail(TD_E_ARG, "negative message count");
    for (int i = 0; i < n; i++) {
        if ((unsigned)msgs[i].role >= TD_ROLE_COUNT || !msgs[i].content)
            return td_fail(TD_E_ARG, "message %d has no role or no content", i);
    }
    td_out o = {0};
    td_put(&o, bos ? bos : "");
    if (t == TD_TEMPLATE_RAW) {
        for (int i = 0; i < n; i++) td_put(&o, msgs[i].content);
    } else {
        bool first = true;
        for (int i = 0; i < n; i++) {
            if (msgs[i].role != TD_ROLE_SYSTEM) continue;
            if (!first) td_put(&o, "\n\n");
            td_put(&o, msgs[i].content);
            first = false;
        }
        if (t == TD_TEMPLATE_DEEPSEEK_V31 || t == TD_TEMPLATE_DEEPSEEK_V31_THINK)
            td_render_v31(&o, t, msgs, n, add_generation_prompt);
        else
            td_render_v3_r1(&o, t, msgs, n, add_generation_prompt);
    }
    if (o.oom) {
        td_free(o.p);
        return td_fail(TD_E_NOMEM, "out of memory rendering a conversation of %d messages", n);
    }
    *out = o.p;
    return TD_OK;
}
