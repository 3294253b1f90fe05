/* What the generation routes share: the model check, a parsed request made into a job (its prompt
 * rendered and tokenized, its limits checked), submission, and the text of a finished job. */
#include "td_srv_impl.h"
#include "td_srv_tools.h"

#include "td_alloc.h"

#include <stdio.h>
#include <string.h>

bool td_srv_parse_body(td_conn *cn, td_srv_api api, td_srv_req *req, enum MHD_Result *r)
{
    td_srv_err err;
    if (td_srv_parse(api, cn->body.p ? cn->body.p : "", cn->body.n, req, &err) == TD_OK) return true;
    *r = td_http_error(cn, err.message[0] ? 400 : 500, err.param, "%s", err.message[0] ? err.message : td_errmsg());
    return false;
}

bool td_srv_model_ok(const td_server *s, const char *model)
{
    if (!model || !*model || strcmp(model, "default") == 0 || strcmp(model, s->m.id) == 0) return true;
    size_t n = strlen(s->m.id);
    return strncmp(model, s->m.id, n) == 0 && strcmp(model + n, ":latest") == 0;
}

/* Ollama's think chooses V3.1's mode, unless --template fixed it. */
static td_template td_srv_template(const td_server *s, const td_srv_req *req)
{
    td_template t = s->m.tmpl;
    bool v31 = t == TD_TEMPLATE_DEEPSEEK_V31 || t == TD_TEMPLATE_DEEPSEEK_V31_THINK;
    if (v31 && req->think >= 0 && !s->m.tmpl_chosen) t = req->think ? TD_TEMPLATE_DEEPSEEK_V31_THINK : TD_TEMPLATE_DEEPSEEK_V31;
    return t;
}

static td_status td_srv_prompt_text(const td_server *s, const td_srv_req *req, char **out)
{
    const char *bos = s->m.bos_text;
    if (req->api == TD_API_CHAT || req->api == TD_API_OLLAMA_CHAT)
        return td_srv_render_chat(td_srv_template(s, req), req, bos, out);
    const char *prompt = req->prompt ? req->prompt : "";
    if (req->api == TD_API_COMPLETIONS || req->raw) {
        td_chat_msg m = {TD_ROLE_USER, prompt};
        return td_template_render(TD_TEMPLATE_RAW, &m, 1, bos, true, out);
    }
    td_srv_msg msgs[2] = {{.role = TD_SRV_SYSTEM, .content = req->system}, {.role = TD_SRV_USER, .content = (char *)prompt}};
    td_srv_req chat = {.api = TD_API_OLLAMA_CHAT, .msgs = req->system ? msgs : msgs + 1, .n_msgs = req->system ? 2 : 1};
    return td_srv_render_chat(td_srv_template(s, req), &chat, bos, out);
}

static bool td_ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

td_srv_job *td_srv_job_for(td_conn *cn, const td_srv_req *req, bool *thinks, enum MHD_Result *r)
{
    td_server *s = cn->srv;
    bool prompt_api = req->api == TD_API_COMPLETIONS || req->api == TD_API_OLLAMA_GEN;
    const char *field = prompt_api ? "prompt" : "messages";
    if (!td_srv_model_ok(s, req->model)) {
        *r = td_http_error(cn, 400, "model", "model '%.200s' is not served here: this server serves '%s' (or ask for "
                                             "'default')", req->model, s->m.id);
        return NULL;
    }
    td_srv_job *j = NULL;
    char *text = NULL;
    if (td_srv_job_create(&j) != TD_OK || td_srv_prompt_text(s, req, &text) != TD_OK) {
        bool nomem = !j || strstr(td_errmsg(), "out of memory");
        *r = td_http_error(cn, nomem ? 500 : 400, field, "%s", td_errmsg());
        td_srv_job_free(j);
        return NULL;
    }
    td_status st = td_tokenizer_encode(s->m.tok, text, strlen(text), false, &j->prompt);
    *thinks = td_ends_with(text, "<think>") || td_ends_with(text, "<think>\n");
    td_free(text);
    int64_t ctx = td_srv_sched_ctx(s->m.sched);
    bool bad = true;
    if (st != TD_OK)
        *r = td_http_error(cn, 400, field, "%s", td_errmsg());
    else if (j->prompt.n < 1)
        *r = td_http_error(cn, 400, field, "the prompt is empty");
    else if (j->prompt.n > ctx)
        *r = td_http_error(cn, 400, field,
                           "the prompt has %lld tokens but a slot's context holds %lld: shorten it, or start the server "
                           "with a larger --ctx",
                           (long long)j->prompt.n, (long long)ctx);
    else
        bad = false;
    if (bad) {
        td_srv_job_free(j);
        return NULL;
    }
    /* OpenAI documents 16 tokens as /v1/completions' default; the others run to EOS or a full context */
    j->max_tokens = req->max_tokens > 0 ? req->max_tokens : req->api == TD_API_COMPLETIONS ? 16 : 0;
    j->sampling = req->sampling;
    if (!req->seed_set) j->sampling.seed = j->sampling.temperature > 0 ? td_sampler_random_seed() : 0;
    for (int i = 0; i < req->n_stop; i++) {
        if (!(j->stop[i] = td_strdup(req->stop[i]))) {
            *r = td_http_error(cn, 500, "", "out of memory");
            td_srv_job_free(j);
            return NULL;
        }
        j->n_stop++;
    }
    j->starts_thinking = *thinks;
    j->show_special = req->n_tools > 0 && req->tool_choice != TD_TOOLS_NONE;
    return j;
}

bool td_srv_submit_job(td_conn *cn, td_srv_job *j, enum MHD_Result *r)
{
    td_srv_submit how = td_srv_sched_submit(cn->srv->m.sched, j);
    if (how == TD_SUBMIT_OK) return true;
    td_srv_job_free(j);
    if (how == TD_SUBMIT_FULL)
        *r = td_http_error(cn, 429, "", "all slots are busy and the queue is full: retry after a moment");
    else
        *r = td_http_error(cn, 503, "", "the server is shutting down");
    return false;
}

void td_srv_split_pieces(const td_strbuf *events, td_strbuf *text, td_strbuf *reasoning)
{
    size_t at = 0, n;
    td_gen_piece kind;
    const char *p;
    while (td_srv_job_next_piece(events, &at, &kind, &p, &n)) {
        if (kind == TD_PIECE_TEXT) td_strbuf_put(text, p, n);
        if (kind == TD_PIECE_THINK) td_strbuf_put(reasoning, p, n);
    }
}

const char *td_srv_finish_reason(const td_srv_job *j)
{
    return j->stop_reason == TD_GEN_STOP_MAX_TOKENS || j->stop_reason == TD_GEN_STOP_CONTEXT ? "length" : "stop";
}

void td_srv_note_ttft(td_server *s, const td_srv_job *j)
{
    if (j->t_first <= 0) return;
    atomic_fetch_add(&s->ttft_count, 1);
    atomic_fetch_add(&s->ttft_us_sum, (long long)((j->t_first - j->t_submit) * 1e6));
}

enum MHD_Result td_srv_generate(td_conn *cn, td_srv_req *req, const td_srv_shape *shape)
{
    bool thinks, tools = req->n_tools > 0 && req->tool_choice != TD_TOOLS_NONE;
    enum MHD_Result r;
    td_srv_job *j = td_srv_job_for(cn, req, &thinks, &r);
    if (!j || !td_srv_submit_job(cn, j, &r)) {
        td_srv_req_free(req);
        return r;
    }
    if (req->stream) {
        td_srv_stream *st = shape->stream(cn, req->api, req, tools);
        td_srv_req_free(req);
        if (!st) {
            td_srv_job_release(j);
            return td_http_error(cn, 500, "", "out of memory");
        }
        st->job = j;
        return td_http_stream(cn, shape->stream_type, st);
    }
    td_srv_api api = req->api;
    td_srv_req_free(req);
    td_strbuf events = {0};
    if (!td_http_wait_job(cn, j, &events)) {
        td_strbuf_free(&events);
        td_srv_job_free(j);
        return MHD_NO; /* the client left: nobody to answer */
    }
    td_srv_note_ttft(cn->srv, j);
    if (j->status)
        r = td_http_error(cn, j->status, "", "%s", j->error);
    else
        r = td_http_json(cn, 200, shape->whole(cn, api, j, &events, tools));
    td_strbuf_free(&events);
    td_srv_job_free(j);
    return r;
}
