#include "td_srv_parse_impl.h"

#include "td_alloc.h"

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ fields */

typedef td_status (*td_field_fn)(td_pctx *c, const cJSON *v, td_srv_req *r);

typedef struct td_field {
    const char *name;
    td_field_fn fn; /* NULL: accepted, and it changes nothing by definition */
} td_field;

#define TD_N(t) (sizeof t / sizeof t[0])

static const td_field *td_find_field(const td_field *fields, size_t n, const char *name)
{
    for (size_t k = 0; k < n; k++)
        if (strcmp(name, fields[k].name) == 0) return &fields[k];
    return NULL;
}

#define TD_FIELD(fname) static td_status fname(td_pctx *c, const cJSON *v, td_srv_req *r)

TD_FIELD(td_f_model)
{
    return td_absent(v) ? TD_OK : td_get_str(c, v, "model", &r->model);
}
TD_FIELD(td_f_messages)
{
    return td_get_messages(c, v, r->api == TD_API_OLLAMA_CHAT, r);
}
TD_FIELD(td_f_prompt)
{
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1 && cJSON_IsString(cJSON_GetArrayItem(v, 0)))
        v = cJSON_GetArrayItem(v, 0);
    if (cJSON_IsArray(v))
        return td_bad(c, "prompt", "'prompt' must be one string (several prompts or token arrays are not supported)");
    return td_get_str(c, v, "prompt", &r->prompt);
}
TD_FIELD(td_f_system)
{
    return td_absent(v) ? TD_OK : td_get_str(c, v, "system", &r->system);
}
TD_FIELD(td_f_max_tokens)
{
    if (td_absent(v)) return TD_OK;
    const char *name = v->string;
    return td_get_int(c, v, name, 1, 1 << 24, &r->max_tokens);
}
TD_FIELD(td_f_temperature)
{
    return td_absent(v) ? TD_OK : td_get_num(c, v, "temperature", 0, 2, &r->sampling.temperature);
}
TD_FIELD(td_f_top_p)
{
    if (td_absent(v)) return TD_OK;
    TD_TRY(td_get_num(c, v, "top_p", 0, 1, &r->sampling.top_p));
    if (r->sampling.top_p <= 0) return td_bad(c, "top_p", "'top_p' must be above 0");
    return TD_OK;
}
TD_FIELD(td_f_top_k)
{
    int64_t k = 0;
    if (td_absent(v)) return TD_OK;
    TD_TRY(td_get_int(c, v, "top_k", 0, 1 << 24, &k));
    r->sampling.top_k = (int)k;
    return TD_OK;
}
TD_FIELD(td_f_min_p)
{
    if (td_absent(v)) return TD_OK;
    TD_TRY(td_get_num(c, v, "min_p", 0, 1, &r->sampling.min_p));
    if (r->sampling.min_p >= 1) return td_bad(c, "min_p", "'min_p' must be below 1");
    return TD_OK;
}
TD_FIELD(td_f_seed)
{
    int64_t s;
    if (td_absent(v)) return TD_OK;
    TD_TRY(td_get_int(c, v, "seed", -9007199254740992.0, 9007199254740992.0, &s));
    r->sampling.seed = (uint64_t)s;
    r->seed_set = true;
    return TD_OK;
}
TD_FIELD(td_f_stop)
{
    return td_get_stop(c, v, "stop", r);
}
TD_FIELD(td_f_stream)
{
    return td_absent(v) ? TD_OK : td_get_bool(c, v, "stream", &r->stream);
}
TD_FIELD(td_f_stream_options)
{
    if (td_absent(v)) return TD_OK;
    if (!cJSON_IsObject(v)) return td_bad(c, "stream_options", "'stream_options' must be an object");
    const cJSON *f;
    cJSON_ArrayForEach(f, v)
    {
        if (strcmp(f->string, "include_usage") != 0)
            return td_bad(c, "stream_options", "'stream_options.%.64s' is not supported", f->string);
        TD_TRY(td_get_bool(c, f, "stream_options.include_usage", &r->include_usage));
    }
    return TD_OK;
}
TD_FIELD(td_f_n)
{
    (void)r;
    int64_t n = 1;
    if (td_absent(v)) return TD_OK;
    TD_TRY(td_get_int(c, v, "n", 1, 1 << 20, &n));
    return n == 1 ? TD_OK : td_bad(c, "n", "'n' is %lld: only one choice per request (n = 1) is supported", (long long)n);
}
TD_FIELD(td_f_tools)
{
    return td_get_tools(c, v, r);
}
TD_FIELD(td_f_tool_choice)
{
    return td_get_tool_choice(c, v, r);
}
/* Fields whose neutral value is accepted and any other refused, by name. */
static td_status td_only_neutral(td_pctx *c, const cJSON *v, bool neutral, const char *what)
{
    if (td_absent(v) || neutral) return TD_OK;
    return td_bad(c, v->string, "'%s' is not supported%s%s", v->string, what ? ": " : "", what ? what : "");
}
TD_FIELD(td_f_zero)
{
    (void)r;
    return td_only_neutral(c, v, cJSON_IsNumber(v) && v->valuedouble == 0, "only 0 (no penalty)");
}
TD_FIELD(td_f_false)
{
    (void)r;
    return td_only_neutral(c, v, cJSON_IsFalse(v), NULL);
}
TD_FIELD(td_f_true)
{
    (void)r;
    return td_only_neutral(c, v, cJSON_IsTrue(v), NULL);
}
TD_FIELD(td_f_one)
{
    (void)r;
    return td_only_neutral(c, v, cJSON_IsNumber(v) && v->valuedouble == 1, NULL);
}
TD_FIELD(td_f_empty)
{
    (void)r;
    bool empty = (cJSON_IsString(v) && !v->valuestring[0]) || ((cJSON_IsObject(v) || cJSON_IsArray(v)) && !v->child);
    return td_only_neutral(c, v, empty, NULL);
}
TD_FIELD(td_f_response_format)
{
    (void)r;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(v, "type");
    bool text = cJSON_IsObject(v) && cJSON_IsString(type) && strcmp(type->valuestring, "text") == 0 &&
                cJSON_GetArraySize(v) == 1;
    return td_only_neutral(c, v, text, "only {\"type\": \"text\"}");
}
TD_FIELD(td_f_raw)
{
    return td_absent(v) ? TD_OK : td_get_bool(c, v, "raw", &r->raw);
}
TD_FIELD(td_f_think)
{
    bool b = false;
    if (td_absent(v)) return TD_OK;
    if (!cJSON_IsBool(v))
        return td_bad(c, "think", "'think' must be true or false (reasoning levels are not supported)");
    TD_TRY(td_get_bool(c, v, "think", &b));
    r->think = b;
    return TD_OK;
}
TD_FIELD(td_f_keep_alive)
{
    (void)r;
    /* the model stays loaded for the server's life: any keep_alive is satisfied */
    if (td_absent(v) || cJSON_IsString(v) || cJSON_IsNumber(v)) return TD_OK;
    return td_bad(c, "keep_alive", "'keep_alive' must be a duration string or a number of seconds");
}
TD_FIELD(td_f_user)
{
    (void)r;
    /* an end-user id for the provider's abuse monitoring: nothing to do with it here */
    return td_absent(v) || cJSON_IsString(v) ? TD_OK : td_bad(c, "user", "'user' must be a string");
}

/* Ollama's options. */
static const td_field td_ollama_options[] = {
    {"temperature", td_f_temperature}, {"top_p", td_f_top_p}, {"top_k", td_f_top_k}, {"min_p", td_f_min_p},
    {"seed", td_f_seed},               {"stop", td_f_stop},   {"num_predict", NULL}, {"num_ctx", NULL},
};

TD_FIELD(td_f_options)
{
    if (td_absent(v)) return TD_OK;
    if (!cJSON_IsObject(v)) return td_bad(c, "options", "'options' must be an object, not %s", td_json_type(v));
    const cJSON *f;
    cJSON_ArrayForEach(f, v)
    {
        const td_field *hit = td_find_field(td_ollama_options, TD_N(td_ollama_options), f->string);
        if (!hit) return td_bad(c, "options", "option '%.64s' is not supported", f->string);
        if (hit->fn) {
            TD_TRY(hit->fn(c, f, r));
        } else if (strcmp(f->string, "num_predict") == 0 && !td_absent(f)) {
            int64_t n;
            TD_TRY(td_get_int(c, f, "options.num_predict", -2, 1 << 24, &n));
            r->max_tokens = n > 0 ? n : -1; /* -1 (forever) and -2 (fill the context) run to a full context */
        } else if (!td_absent(f)) {
            int64_t n;
            TD_TRY(td_get_int(c, f, "options.num_ctx", 1, 1 << 24, &n)); /* each slot has --ctx: see td_srv_api */
        }
    }
    return TD_OK;
}

/* OpenAI's fields that chat and completions share. */
static const td_field td_openai_fields[] = {
    {"model", td_f_model},
    {"max_tokens", td_f_max_tokens},
    {"temperature", td_f_temperature},
    {"top_p", td_f_top_p},
    {"top_k", td_f_top_k},
    {"min_p", td_f_min_p},
    {"seed", td_f_seed},
    {"stop", td_f_stop},
    {"stream", td_f_stream},
    {"stream_options", td_f_stream_options},
    {"n", td_f_n},
    {"user", td_f_user},
    {"frequency_penalty", td_f_zero},
    {"presence_penalty", td_f_zero},
    {"logit_bias", td_f_empty},
};

static const td_field td_chat_fields[] = {
    {"messages", td_f_messages},
    {"max_completion_tokens", td_f_max_tokens},
    {"tools", td_f_tools},
    {"tool_choice", td_f_tool_choice},
    {"parallel_tool_calls", td_f_true},
    {"logprobs", td_f_false},
    {"response_format", td_f_response_format},
};

static const td_field td_completion_fields[] = {
    {"prompt", td_f_prompt}, {"best_of", td_f_one}, {"echo", td_f_false}, {"suffix", td_f_empty}, {"logprobs", td_f_empty},
};

static const td_field td_ollama_chat_fields[] = {
    {"model", td_f_model},   {"messages", td_f_messages},     {"stream", td_f_stream}, {"options", td_f_options},
    {"tools", td_f_tools},   {"keep_alive", td_f_keep_alive}, {"think", td_f_think},   {"format", td_f_empty},
};

static const td_field td_ollama_gen_fields[] = {
    {"model", td_f_model},   {"prompt", td_f_prompt},         {"system", td_f_system},  {"stream", td_f_stream},
    {"raw", td_f_raw},       {"options", td_f_options},       {"keep_alive", td_f_keep_alive},
    {"think", td_f_think},   {"format", td_f_empty},          {"suffix", td_f_empty},   {"images", td_f_empty},
    {"context", td_f_empty}, {"template", td_f_empty},
};

static const struct {
    const td_field *fields;
    size_t n;
    const char *required;
    bool openai; /* td_openai_fields too */
} td_api_fields[TD_API_COUNT] = {
    [TD_API_CHAT] = {td_chat_fields, TD_N(td_chat_fields), "messages", true},
    [TD_API_COMPLETIONS] = {td_completion_fields, TD_N(td_completion_fields), "prompt", true},
    [TD_API_OLLAMA_CHAT] = {td_ollama_chat_fields, TD_N(td_ollama_chat_fields), "messages", false},
    [TD_API_OLLAMA_GEN] = {td_ollama_gen_fields, TD_N(td_ollama_gen_fields), NULL, false},
};


static td_status td_parse_fields(td_pctx *c, const cJSON *root, td_srv_req *r)
{
    const td_field *fields = td_api_fields[r->api].fields;
    size_t n = td_api_fields[r->api].n;
    const cJSON *f;
    cJSON_ArrayForEach(f, root)
    {
        const td_field *hit = td_find_field(fields, n, f->string);
        if (!hit && td_api_fields[r->api].openai) hit = td_find_field(td_openai_fields, TD_N(td_openai_fields), f->string);
        if (!hit) return td_bad(c, f->string, "'%.64s' is not supported by this server", f->string);
        for (const cJSON *g = root->child; g != f; g = g->next)
            if (strcmp(g->string, f->string) == 0) return td_bad(c, f->string, "'%.64s' appears twice", f->string);
        if (hit->fn) TD_TRY(hit->fn(c, f, r));
    }
    const char *req = td_api_fields[r->api].required;
    if (req && !cJSON_GetObjectItemCaseSensitive(root, req)) return td_bad(c, req, "'%s' is missing", req);
    return TD_OK;
}

static td_status td_parse_object(td_pctx *c, const char *body, size_t len, cJSON **out)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!root) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        const char *e = cJSON_GetErrorPtr();
        if (e && e >= body && e <= body + len) at = (size_t)(e - body);
        return td_bad(c, "", "the body is not valid JSON (at byte %zu of %zu)", at, len);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return td_bad(c, "", "the body must be a JSON object");
    }
    *out = root;
    return TD_OK;
}

td_status td_srv_parse(td_srv_api api, const char *body, size_t len, td_srv_req *out, td_srv_err *err)
{
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    td_pctx c = {.err = err};
    if ((unsigned)api >= TD_API_COUNT) return td_bad(&c, "", "unknown API %d", (int)api);
    out->api = api;
    out->max_tokens = -1;
    out->sampling = td_sampler_greedy();
    out->sampling.temperature = api == TD_API_OLLAMA_CHAT || api == TD_API_OLLAMA_GEN ? 0.8 : 1.0;
    out->stream = api == TD_API_OLLAMA_CHAT || api == TD_API_OLLAMA_GEN; /* Ollama streams by default */
    out->think = -1;
    cJSON *root;
    td_status st = td_parse_object(&c, body, len, &root);
    if (st != TD_OK) return st;
    st = td_parse_fields(&c, root, out);
    cJSON_Delete(root);
    if (st == TD_OK && err->message[0] == '\0') return TD_OK;
    if (st == TD_E_NOMEM && !err->message[0]) snprintf(err->message, sizeof err->message, "%s", td_errmsg());
    td_srv_req_free(out);
    return st != TD_OK ? st : TD_E_FORMAT;
}

td_status td_srv_parse_model_only(const char *body, size_t len, char **model, td_srv_err *err)
{
    memset(err, 0, sizeof *err);
    *model = NULL;
    td_pctx c = {.err = err};
    cJSON *root;
    TD_TRY(td_parse_object(&c, body, len, &root));
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!m) m = cJSON_GetObjectItemCaseSensitive(root, "name"); /* older clients */
    td_status st = m ? td_get_str(&c, m, "model", model) : td_bad(&c, "model", "'model' is missing");
    cJSON_Delete(root);
    return st;
}

void td_srv_req_free(td_srv_req *r)
{
    td_free(r->model);
    for (int i = 0; i < r->n_msgs; i++) {
        td_free(r->msgs[i].content);
        for (int k = 0; k < r->msgs[i].n_calls; k++) {
            td_free(r->msgs[i].calls[k].id);
            td_free(r->msgs[i].calls[k].name);
            td_free(r->msgs[i].calls[k].arguments);
        }
        td_free(r->msgs[i].calls);
    }
    td_free(r->msgs);
    td_free(r->prompt);
    td_free(r->system);
    for (int i = 0; i < r->n_stop; i++) td_free(r->stop[i]);
    for (int i = 0; i < r->n_tools; i++) {
        td_free(r->tools[i].name);
        td_free(r->tools[i].description);
        cJSON_Delete(r->tools[i].parameters);
    }
    td_free(r->tools);
    memset(r, 0, sizeof *r);
}
