/* Ollama's routes: /api/chat and /api/generate (newline-delimited JSON when streamed, Ollama's default),
 * /api/tags, /api/show and /api/version. */
#include "td_srv_impl.h"
#include "td_srv_tools.h"

#include "td_alloc.h"
#include "td_clock.h"
#include "td_model.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

typedef struct td_ol_stream {
    td_srv_stream base;
    td_srv_api api;
    char model[256];
    bool tools;
    td_strbuf content;
    size_t content_sent;
} td_ol_stream;

/* RFC 3339 with nanoseconds, as Ollama writes created_at. */
static void td_ol_now(char *buf, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char head[32];
    strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%09ldZ", head, ts.tv_nsec);
}

static cJSON *td_ol_head(const char *model)
{
    char now[48];
    td_ol_now(now, sizeof now);
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "model", model);
    cJSON_AddStringToObject(c, "created_at", now);
    return c;
}

static cJSON *td_ol_calls_json(const td_srv_calls *calls)
{
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < calls->n; i++) {
        cJSON *c = cJSON_CreateObject(), *f = cJSON_AddObjectToObject(c, "function");
        cJSON_AddStringToObject(f, "name", calls->calls[i].name);
        cJSON *args = cJSON_Parse(calls->calls[i].arguments);
        if (!args) args = cJSON_CreateString(calls->calls[i].arguments); /* not JSON: handed over as written */
        cJSON_AddItemToObject(f, "arguments", args);
        cJSON_AddItemToArray(arr, c);
    }
    return arr;
}

/* A piece of the answer: {"message": {"role", "content", "thinking"}} or {"response", "thinking"}. */
static cJSON *td_ol_piece(td_srv_api api, const char *model, const char *text, const char *thinking)
{
    cJSON *c = td_ol_head(model);
    if (api == TD_API_OLLAMA_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", text);
        if (thinking) cJSON_AddStringToObject(m, "thinking", thinking);
    } else {
        cJSON_AddStringToObject(c, "response", text);
        if (thinking) cJSON_AddStringToObject(c, "thinking", thinking);
    }
    cJSON_AddBoolToObject(c, "done", false);
    return c;
}

/* The durations Ollama reports, in nanoseconds. */
static void td_ol_done(cJSON *c, const td_srv_job *j)
{
    cJSON_ReplaceItemInObject(c, "done", cJSON_CreateBool(true));
    cJSON_AddStringToObject(c, "done_reason", td_srv_finish_reason(j));
    double total = j->t_end - j->t_submit;
    cJSON_AddNumberToObject(c, "total_duration", (double)(long long)(total * 1e9));
    cJSON_AddNumberToObject(c, "load_duration", 0);
    cJSON_AddNumberToObject(c, "prompt_eval_count", (double)(j->prompt_tokens - j->reused_tokens));
    cJSON_AddNumberToObject(c, "prompt_eval_duration", (double)(long long)(j->prompt_s * 1e9));
    cJSON_AddNumberToObject(c, "eval_count", (double)j->gen_tokens);
    cJSON_AddNumberToObject(c, "eval_duration", (double)(long long)(j->decode_s * 1e9));
}

static void td_ndjson(td_strbuf *out, cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!s) {
        out->oom = true;
        return;
    }
    td_strbuf_puts(out, s);
    td_strbuf_puts(out, "\n");
    td_free(s);
}

static char *td_ol_dup(const td_strbuf *b, size_t from, size_t to)
{
    return td_strndup(b->p ? b->p + from : "", to - from);
}

static void td_ol_emit(td_srv_stream *base, const td_strbuf *events, bool done)
{
    td_ol_stream *st = (td_ol_stream *)base;
    td_srv_job *j = base->job;
    td_strbuf text = {0}, reasoning = {0};
    td_srv_split_pieces(events, &text, &reasoning);
    if (text.n) td_strbuf_put(&st->content, text.p, text.n);
    size_t safe = st->tools ? td_srv_calls_safe_prefix(st->content.p, st->content.n) : st->content.n;
    if (safe > st->content_sent || reasoning.n) {
        char *t = td_ol_dup(&st->content, st->content_sent, safe), *r = reasoning.n ? td_ol_dup(&reasoning, 0, reasoning.n) : NULL;
        if (t) td_ndjson(&base->out, td_ol_piece(st->api, st->model, t, r));
        st->content_sent = safe;
        td_free(t);
        td_free(r);
    }
    td_strbuf_free(&text);
    td_strbuf_free(&reasoning);
    if (!done) return;
    td_srv_note_ttft(base->srv, j);
    if (j->status) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "error", j->error);
        td_ndjson(&base->out, e);
        return;
    }
    cJSON *last = td_ol_piece(st->api, st->model, "", NULL);
    if (st->tools) {
        td_srv_calls calls;
        if (td_srv_parse_calls(st->content.p ? st->content.p : "", st->content.n, &calls) == TD_OK) {
            if (calls.n && st->api == TD_API_OLLAMA_CHAT)
                cJSON_AddItemToObject(cJSON_GetObjectItem(last, "message"), "tool_calls", td_ol_calls_json(&calls));
            size_t keep = strlen(calls.content);
            if (keep > st->content_sent)
                cJSON_ReplaceItemInObject(cJSON_GetObjectItem(last, "message"), "content",
                                          cJSON_CreateString(calls.content + st->content_sent));
            td_srv_calls_free(&calls);
        }
    }
    td_ol_done(last, j);
    td_ndjson(&base->out, last);
}

static void td_ol_destroy(td_srv_stream *base)
{
    td_ol_stream *st = (td_ol_stream *)base;
    td_strbuf_free(&st->content);
    td_free(st);
}

static cJSON *td_ol_whole(td_conn *cn, td_srv_api api, const td_srv_job *j, const td_strbuf *events, bool tools)
{
    td_strbuf text = {0}, reasoning = {0};
    td_srv_split_pieces(events, &text, &reasoning);
    td_srv_calls calls = {0};
    bool have_calls = tools && td_srv_parse_calls(text.p ? text.p : "", text.n, &calls) == TD_OK && calls.n;
    cJSON *c = td_ol_piece(api, cn->srv->m.id, have_calls ? calls.content : text.p ? text.p : "",
                           reasoning.n ? reasoning.p : NULL);
    if (have_calls && api == TD_API_OLLAMA_CHAT)
        cJSON_AddItemToObject(cJSON_GetObjectItem(c, "message"), "tool_calls", td_ol_calls_json(&calls));
    td_srv_calls_free(&calls);
    td_ol_done(c, j);
    td_strbuf_free(&text);
    td_strbuf_free(&reasoning);
    return c;
}

/* Ollama loads a model when asked to generate from nothing: it is loaded already. */
static enum MHD_Result td_ol_loaded(td_conn *cn, const td_srv_req *req)
{
    cJSON *c = td_ol_head(cn->srv->m.id);
    if (req->api == TD_API_OLLAMA_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", "");
    } else {
        cJSON_AddStringToObject(c, "response", "");
    }
    cJSON_AddBoolToObject(c, "done", true);
    cJSON_AddStringToObject(c, "done_reason", "load");
    return td_http_json(cn, 200, c);
}

static td_srv_stream *td_ol_new_stream(td_conn *cn, td_srv_api api, const td_srv_req *req, bool tools)
{
    (void)req;
    td_ol_stream *st = td_calloc(1, sizeof *st);
    if (!st) return NULL;
    st->api = api;
    snprintf(st->model, sizeof st->model, "%s", cn->srv->m.id);
    st->tools = tools;
    st->base.emit = td_ol_emit;
    st->base.destroy = td_ol_destroy;
    return &st->base;
}

static const td_srv_shape td_ol_shape = {"application/x-ndjson", td_ol_new_stream, td_ol_whole};

static enum MHD_Result td_ol_generate(td_conn *cn, td_srv_api api)
{
    td_srv_req req;
    enum MHD_Result r;
    if (!td_srv_parse_body(cn, api, &req, &r)) return r;
    if (!td_srv_model_ok(cn->srv, req.model)) {
        r = td_http_error(cn, 400, "model", "model '%.200s' is not served here: this server serves '%s'", req.model,
                          cn->srv->m.id);
        td_srv_req_free(&req);
        return r;
    }
    if ((api == TD_API_OLLAMA_GEN && (!req.prompt || !req.prompt[0])) || (api == TD_API_OLLAMA_CHAT && req.n_msgs == 0)) {
        r = td_ol_loaded(cn, &req);
        td_srv_req_free(&req);
        return r;
    }
    return td_srv_generate(cn, &req, &td_ol_shape);
}

enum MHD_Result td_route_ollama_chat(td_conn *cn)
{
    return td_ol_generate(cn, TD_API_OLLAMA_CHAT);
}

enum MHD_Result td_route_ollama_generate(td_conn *cn)
{
    return td_ol_generate(cn, TD_API_OLLAMA_GEN);
}

/* ------------------------------------------------------------------ the model */

static int64_t td_ol_params(const td_model *m)
{
    int64_t n = 0;
    for (int i = 0; i < m->n_modules; i++) n += m->modules[i].params;
    return n;
}

static uint64_t td_ol_bytes(const td_model *m)
{
    uint64_t n = 0;
    for (int i = 0; i < m->n_modules; i++) n += m->modules[i].bytes;
    return n;
}

static void td_ol_size_text(int64_t n, char *buf, size_t cap)
{
    if (n >= 1000000000LL)
        snprintf(buf, cap, "%.1fB", (double)n / 1e9);
    else if (n >= 1000000)
        snprintf(buf, cap, "%.1fM", (double)n / 1e6);
    else
        snprintf(buf, cap, "%lld", (long long)n);
}

static cJSON *td_ol_details(const td_server *s)
{
    const td_model *m = s->m.model;
    cJSON *d = cJSON_CreateObject();
    char size[32];
    td_ol_size_text(td_ol_params(m), size, sizeof size);
    cJSON_AddStringToObject(d, "parent_model", "");
    cJSON_AddStringToObject(d, "format", m->format);
    cJSON_AddStringToObject(d, "family", "deepseek2");
    cJSON *fam = cJSON_AddArrayToObject(d, "families");
    cJSON_AddItemToArray(fam, cJSON_CreateString("deepseek2"));
    cJSON_AddStringToObject(d, "parameter_size", size);
    cJSON_AddStringToObject(d, "quantization_level", m->n_modules ? td_type_name(m->embed.type) : "");
    return d;
}

/* An identifier for the loaded file (FNV-1a of its path and size, written out to sha256's length): Ollama
 * lists a digest per model. It is not a hash of the weights. */
static void td_ol_digest(const td_server *s, char *buf, size_t cap)
{
    uint64_t h = 0xcbf29ce484222325ULL, size = td_ol_bytes(s->m.model);
    for (const char *p = s->m.model->path; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    for (int i = 0; i < 8; i++) h = (h ^ ((size >> (8 * i)) & 0xff)) * 0x100000001b3ULL;
    snprintf(buf, cap, "%016llx%016llx%016llx%016llx", (unsigned long long)h, (unsigned long long)(h * 31),
             (unsigned long long)(h * 131), (unsigned long long)(h * 1313));
}

static void td_ol_modified(const td_server *s, char *buf, size_t cap)
{
    time_t t = (time_t)atomic_load(&s->started_unix);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

enum MHD_Result td_route_ollama_tags(td_conn *cn)
{
    td_server *s = cn->srv;
    char digest[80], modified[40];
    td_ol_digest(s, digest, sizeof digest);
    td_ol_modified(s, modified, sizeof modified);
    cJSON *root = cJSON_CreateObject(), *m = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "models"), m);
    cJSON_AddStringToObject(m, "name", s->m.id);
    cJSON_AddStringToObject(m, "model", s->m.id);
    cJSON_AddStringToObject(m, "modified_at", modified);
    cJSON_AddNumberToObject(m, "size", (double)td_ol_bytes(s->m.model));
    cJSON_AddStringToObject(m, "digest", digest);
    cJSON_AddItemToObject(m, "details", td_ol_details(s));
    return td_http_json(cn, 200, root);
}

enum MHD_Result td_route_ollama_show(td_conn *cn)
{
    td_server *s = cn->srv;
    char *model;
    td_srv_err err;
    if (td_srv_parse_model_only(cn->body.p ? cn->body.p : "", cn->body.n, &model, &err) != TD_OK)
        return td_http_error(cn, 400, err.param, "%s", err.message[0] ? err.message : td_errmsg());
    bool ok = td_srv_model_ok(s, model);
    enum MHD_Result r;
    if (!ok) {
        r = td_http_error(cn, 400, "model", "model '%.200s' is not served here: this server serves '%s'", model, s->m.id);
        td_free(model);
        return r;
    }
    td_free(model);
    const td_hparams *hp = &s->m.model->hp;
    char modified[40];
    td_ol_modified(s, modified, sizeof modified);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "license", "");
    cJSON_AddStringToObject(root, "modelfile", "");
    cJSON_AddStringToObject(root, "parameters", "");
    const char *jinja = td_template_jinja(s->m.tmpl);
    cJSON_AddStringToObject(root, "template", jinja ? jinja : "");
    cJSON_AddItemToObject(root, "details", td_ol_details(s));
    cJSON *info = cJSON_AddObjectToObject(root, "model_info");
    cJSON_AddStringToObject(info, "general.architecture", "deepseek2");
    cJSON_AddNumberToObject(info, "general.parameter_count", (double)td_ol_params(s->m.model));
    cJSON_AddNumberToObject(info, "deepseek2.context_length", (double)td_srv_sched_ctx(s->m.sched));
    cJSON_AddNumberToObject(info, "deepseek2.embedding_length", (double)hp->hidden_size);
    cJSON_AddNumberToObject(info, "deepseek2.block_count", (double)hp->n_layers);
    cJSON_AddNumberToObject(info, "deepseek2.expert_count", (double)hp->n_routed_experts);
    cJSON_AddNumberToObject(info, "deepseek2.expert_used_count", (double)hp->n_experts_per_tok);
    cJSON *caps = cJSON_AddArrayToObject(root, "capabilities");
    cJSON_AddItemToArray(caps, cJSON_CreateString("completion"));
    if (s->m.tmpl != TD_TEMPLATE_RAW) cJSON_AddItemToArray(caps, cJSON_CreateString("tools"));
    if (td_template_starts_thinking(s->m.tmpl) || s->m.tmpl == TD_TEMPLATE_DEEPSEEK_V31)
        cJSON_AddItemToArray(caps, cJSON_CreateString("thinking"));
    cJSON_AddStringToObject(root, "modified_at", modified);
    return td_http_json(cn, 200, root);
}

enum MHD_Result td_route_ollama_version(td_conn *cn)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", TANDEM_VERSION);
    return td_http_json(cn, 200, root);
}
