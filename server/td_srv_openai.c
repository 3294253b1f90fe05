/* OpenAI's routes: /v1/chat/completions and /v1/completions (whole or streamed as server-sent events
 * ending in "data: [DONE]"), and /v1/models. */
#include "td_srv_impl.h"
#include "td_srv_tools.h"

#include "td_alloc.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct td_oa_stream {
    td_srv_stream base;
    td_srv_api api;
    char id[48];
    long long created;
    char model[256];
    bool include_usage, tools, sent_role;
    td_strbuf content; /* with tools: the answer so far, to find a call block in it */
    size_t content_sent;
} td_oa_stream;

static void td_oa_id(char *buf, size_t cap, const char *prefix)
{
    static atomic_ullong counter;
    unsigned long long n = atomic_fetch_add(&counter, 1) + 1;
    snprintf(buf, cap, "%s%llx%08llx", prefix, (unsigned long long)time(NULL), n);
}

static cJSON *td_oa_usage(const td_srv_job *j)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)j->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)j->gen_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(j->prompt_tokens + j->gen_tokens));
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", (double)j->reused_tokens);
    return u;
}

static cJSON *td_oa_calls_json(const td_srv_calls *calls, bool stream)
{
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < calls->n; i++) {
        cJSON *c = cJSON_CreateObject();
        char id[48];
        td_oa_id(id, sizeof id, "call_");
        if (stream) cJSON_AddNumberToObject(c, "index", i);
        cJSON_AddStringToObject(c, "id", id);
        cJSON_AddStringToObject(c, "type", "function");
        cJSON *f = cJSON_AddObjectToObject(c, "function");
        cJSON_AddStringToObject(f, "name", calls->calls[i].name);
        cJSON_AddStringToObject(f, "arguments", calls->calls[i].arguments);
        cJSON_AddItemToArray(arr, c);
    }
    return arr;
}

/* ------------------------------------------------------------------ streams */

static void td_sse(td_strbuf *out, cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!s) {
        out->oom = true;
        return;
    }
    td_strbuf_puts(out, "data: ");
    td_strbuf_puts(out, s);
    td_strbuf_puts(out, "\n\n");
    td_free(s);
}

/* A chunk with one choice; its delta (chat) or text (completions) is filled by the caller. */
static cJSON *td_oa_chunk(td_oa_stream *st, cJSON **choice)
{
    bool chat = st->api == TD_API_CHAT;
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "id", st->id);
    cJSON_AddStringToObject(c, "object", chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddNumberToObject(c, "created", (double)st->created);
    cJSON_AddStringToObject(c, "model", st->model);
    cJSON *choices = cJSON_AddArrayToObject(c, "choices");
    *choice = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, *choice);
    cJSON_AddNumberToObject(*choice, "index", 0);
    return c;
}

static void td_oa_delta(td_oa_stream *st, const char *key, const char *text, size_t n, const char *finish)
{
    cJSON *choice, *c = td_oa_chunk(st, &choice);
    char *t = text ? td_strndup(text, n) : NULL;
    if (st->api == TD_API_CHAT) {
        cJSON *d = cJSON_AddObjectToObject(choice, "delta");
        if (!st->sent_role) {
            cJSON_AddStringToObject(d, "role", "assistant");
            st->sent_role = true;
        }
        if (t) cJSON_AddStringToObject(d, key, t);
    } else {
        cJSON_AddStringToObject(choice, "text", t ? t : "");
    }
    cJSON_AddNullToObject(choice, "logprobs");
    if (finish)
        cJSON_AddStringToObject(choice, "finish_reason", finish);
    else
        cJSON_AddNullToObject(choice, "finish_reason");
    td_free(t);
    td_sse(&st->base.out, c);
}

static void td_oa_end(td_oa_stream *st)
{
    td_srv_job *j = st->base.job;
    td_strbuf *out = &st->base.out;
    if (j->status) {
        td_sse(out, td_srv_error_json(j->status, "", j->error));
        td_strbuf_puts(out, "data: [DONE]\n\n");
        return;
    }
    const char *finish = td_srv_finish_reason(j);
    if (st->tools) {
        td_srv_calls calls;
        if (td_srv_parse_calls(st->content.p ? st->content.p : "", st->content.n, &calls) != TD_OK) {
            out->oom = true;
            return;
        }
        size_t keep = strlen(calls.content);
        if (keep > st->content_sent)
            td_oa_delta(st, "content", calls.content + st->content_sent, keep - st->content_sent, NULL);
        if (calls.n) {
            cJSON *choice, *c = td_oa_chunk(st, &choice);
            cJSON *d = cJSON_AddObjectToObject(choice, "delta");
            cJSON_AddItemToObject(d, "tool_calls", td_oa_calls_json(&calls, true));
            cJSON_AddNullToObject(choice, "logprobs");
            cJSON_AddNullToObject(choice, "finish_reason");
            td_sse(out, c);
            finish = "tool_calls";
        }
        td_srv_calls_free(&calls);
    }
    td_oa_delta(st, NULL, NULL, 0, finish);
    if (st->include_usage) {
        cJSON *choice, *c = td_oa_chunk(st, &choice);
        cJSON_DeleteItemFromObject(c, "choices");
        cJSON_AddArrayToObject(c, "choices");
        cJSON_AddItemToObject(c, "usage", td_oa_usage(j));
        td_sse(out, c);
    }
    td_strbuf_puts(out, "data: [DONE]\n\n");
}

static void td_oa_emit(td_srv_stream *base, const td_strbuf *events, bool done)
{
    td_oa_stream *st = (td_oa_stream *)base;
    if (st->api == TD_API_CHAT) {
        td_strbuf text = {0}, reasoning = {0};
        td_srv_split_pieces(events, &text, &reasoning);
        if (!st->sent_role) td_oa_delta(st, "content", "", 0, NULL);
        if (reasoning.n) td_oa_delta(st, "reasoning_content", reasoning.p, reasoning.n, NULL);
        if (text.n && !st->tools) td_oa_delta(st, "content", text.p, text.n, NULL);
        if (text.n && st->tools) {
            td_strbuf_put(&st->content, text.p, text.n);
            size_t safe = td_srv_calls_safe_prefix(st->content.p, st->content.n);
            if (safe > st->content_sent) {
                td_oa_delta(st, "content", st->content.p + st->content_sent, safe - st->content_sent, NULL);
                st->content_sent = safe;
            }
        }
        td_strbuf_free(&text);
        td_strbuf_free(&reasoning);
    } else {
        size_t at = 0, n;
        td_gen_piece kind;
        const char *p;
        td_strbuf all = {0};
        while (td_srv_job_next_piece(events, &at, &kind, &p, &n)) td_strbuf_put(&all, p, n);
        if (all.n) td_oa_delta(st, "text", all.p, all.n, NULL);
        td_strbuf_free(&all);
    }
    if (done) {
        td_srv_note_ttft(base->srv, base->job);
        td_oa_end(st);
    }
}

static void td_oa_destroy(td_srv_stream *base)
{
    td_oa_stream *st = (td_oa_stream *)base;
    td_strbuf_free(&st->content);
    td_free(st);
}

/* ------------------------------------------------------------------ whole answers */

static cJSON *td_oa_whole(td_conn *cn, td_srv_api api, const td_srv_job *j, const td_strbuf *events, bool tools)
{
    bool chat = api == TD_API_CHAT;
    char id[48];
    td_oa_id(id, sizeof id, chat ? "chatcmpl-" : "cmpl-");
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", id);
    cJSON_AddStringToObject(root, "object", chat ? "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(root, "created", (double)time(NULL));
    cJSON_AddStringToObject(root, "model", cn->srv->m.id);
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "choices"), choice);
    cJSON_AddNumberToObject(choice, "index", 0);
    const char *finish = td_srv_finish_reason(j);
    td_strbuf text = {0}, reasoning = {0};
    if (chat) {
        td_srv_split_pieces(events, &text, &reasoning);
        cJSON *m = cJSON_AddObjectToObject(choice, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        td_srv_calls calls = {0};
        if (tools && td_srv_parse_calls(text.p ? text.p : "", text.n, &calls) == TD_OK && calls.n) {
            cJSON_AddStringToObject(m, "content", calls.content);
            cJSON_AddItemToObject(m, "tool_calls", td_oa_calls_json(&calls, false));
            finish = "tool_calls";
        } else {
            cJSON_AddStringToObject(m, "content", text.p ? text.p : "");
        }
        td_srv_calls_free(&calls);
        if (reasoning.n) cJSON_AddStringToObject(m, "reasoning_content", reasoning.p);
    } else {
        size_t at = 0, n;
        td_gen_piece kind;
        const char *p;
        while (td_srv_job_next_piece(events, &at, &kind, &p, &n)) td_strbuf_put(&text, p, n);
        cJSON_AddStringToObject(choice, "text", text.p ? text.p : "");
    }
    cJSON_AddNullToObject(choice, "logprobs");
    cJSON_AddStringToObject(choice, "finish_reason", finish);
    cJSON_AddItemToObject(root, "usage", td_oa_usage(j));
    td_strbuf_free(&text);
    td_strbuf_free(&reasoning);
    return root;
}

static td_srv_stream *td_oa_new_stream(td_conn *cn, td_srv_api api, const td_srv_req *req, bool tools)
{
    td_oa_stream *st = td_calloc(1, sizeof *st);
    if (!st) return NULL;
    st->api = api;
    td_oa_id(st->id, sizeof st->id, api == TD_API_CHAT ? "chatcmpl-" : "cmpl-");
    st->created = (long long)time(NULL);
    snprintf(st->model, sizeof st->model, "%s", cn->srv->m.id);
    st->include_usage = req->include_usage;
    st->tools = tools;
    st->base.emit = td_oa_emit;
    st->base.destroy = td_oa_destroy;
    return &st->base;
}

static const td_srv_shape td_oa_shape = {"text/event-stream", td_oa_new_stream, td_oa_whole};

static enum MHD_Result td_oa_generate(td_conn *cn, td_srv_api api)
{
    td_srv_req req;
    enum MHD_Result r;
    if (!td_srv_parse_body(cn, api, &req, &r)) return r;
    return td_srv_generate(cn, &req, &td_oa_shape);
}

enum MHD_Result td_route_chat(td_conn *cn)
{
    return td_oa_generate(cn, TD_API_CHAT);
}

enum MHD_Result td_route_completions(td_conn *cn)
{
    return td_oa_generate(cn, TD_API_COMPLETIONS);
}

enum MHD_Result td_route_models(td_conn *cn)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "data"), m);
    cJSON_AddStringToObject(m, "id", cn->srv->m.id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)atomic_load(&cn->srv->started_unix));
    cJSON_AddStringToObject(m, "owned_by", "tandem");
    return td_http_json(cn, 200, root);
}
