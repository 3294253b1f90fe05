/* Internals shared by the server's files: the server, one HTTP request being answered, response
 * helpers, and streamed answers. */
#ifndef TD_SRV_IMPL_H
#define TD_SRV_IMPL_H

#include "td_server.h"
#include "td_srv_job.h"
#include "td_srv_parse.h"
#include "td_strbuf.h"

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdatomic.h>

typedef enum td_srv_state { TD_SRV_LOADING = 0, TD_SRV_READY = 1, TD_SRV_DRAINING = 2, TD_SRV_STATE_COUNT } td_srv_state;

/* The routes, for dispatch and for the request counters of /metrics. */
typedef enum td_route {
    TD_ROUTE_PAGE = 0,
    TD_ROUTE_HEALTH,
    TD_ROUTE_METRICS,
    TD_ROUTE_MODELS,
    TD_ROUTE_CHAT,
    TD_ROUTE_COMPLETIONS,
    TD_ROUTE_OLLAMA_CHAT,
    TD_ROUTE_OLLAMA_GENERATE,
    TD_ROUTE_OLLAMA_TAGS,
    TD_ROUTE_OLLAMA_SHOW,
    TD_ROUTE_OLLAMA_VERSION,
    TD_ROUTE_OTHER, /* no such route */
    TD_ROUTE_COUNT
} td_route;

#define TD_SRV_N_CODES 11
extern const int td_srv_codes[TD_SRV_N_CODES]; /* the statuses counted per route */

struct td_server {
    td_server_params p;
    struct MHD_Daemon *d;
    int port;
    atomic_int state;
    atomic_int active;   /* requests being answered */
    atomic_llong started_unix; /* for "created" fields */
    td_server_model m;   /* valid from READY on */
    atomic_llong requests[TD_ROUTE_COUNT][TD_SRV_N_CODES];
    atomic_llong ttft_count;
    atomic_llong ttft_us_sum;
};

/* One HTTP request. */
typedef struct td_conn {
    td_server *srv;
    struct MHD_Connection *c;
    td_route route;
    const char *url;
    td_strbuf body;
    bool too_big;
    int status; /* what was answered, for the counters */
} td_conn;

/* ------------------------------------------------------------------ responses (td_srv_http.c) */

enum MHD_Result td_http_send(td_conn *cn, int status, const char *type, const char *body, size_t len);
/* Sends the JSON and deletes it. */
enum MHD_Result td_http_json(td_conn *cn, int status, cJSON *body);
/* OpenAI's error shape: {"error": {"message", "type", "param", "code"}}. */
enum MHD_Result td_http_error(td_conn *cn, int status, const char *param, const char *fmt, ...) TD_PRINTF(4, 5);
cJSON *td_srv_error_json(int status, const char *param, const char *message);
/* The client closed its side of the connection. */
bool td_http_client_gone(td_conn *cn);

/* A streamed answer: emit() formats new pieces of the job (and, once done, the end) into out. The
 * stream owns the job: it is cancelled (if not done) and freed with the stream. */
typedef struct td_srv_stream td_srv_stream;
struct td_srv_stream {
    td_server *srv;
    int fd; /* the client's socket, to notice it leaving */
    td_srv_job *job;
    td_strbuf out;
    size_t out_pos;
    bool finished;
    void (*emit)(td_srv_stream *st, const td_strbuf *events, bool done);
    void (*destroy)(td_srv_stream *st); /* frees the API's own state (the whole struct) */
};
enum MHD_Result td_http_stream(td_conn *cn, const char *type, td_srv_stream *st);
/* Waits for a job to finish while watching the client: false when the client left (the job is then
 * cancelled and finished). Pieces go to events. */
bool td_http_wait_job(td_conn *cn, td_srv_job *j, td_strbuf *events);
/* Cancels a job, waits until the scheduler lets go of it, frees it. */
void td_srv_job_release(td_srv_job *j);

/* ------------------------------------------------------------------ shared by the APIs (td_srv_gen.c) */

/* The request body parsed for api; on failure the 400 has been sent (*r its result). */
bool td_srv_parse_body(td_conn *cn, td_srv_api api, td_srv_req *req, enum MHD_Result *r);
/* Checks req.model: the served id, "<id>:latest", "default", or absent. */
bool td_srv_model_ok(const td_server *s, const char *model);
/* A job for a parsed request: the prompt rendered and tokenized, limits and sampling set. On failure an
 * HTTP error has been sent: returns NULL with *r set to the MHD result. */
td_srv_job *td_srv_job_for(td_conn *cn, const td_srv_req *req, bool *thinks, enum MHD_Result *r);
/* Submits; on a full queue or a drain, answers 429 / 503 and frees the job (returns false). */
bool td_srv_submit_job(td_conn *cn, td_srv_job *j, enum MHD_Result *r);
/* How an API shapes answers: a stream (allocated with its own state; the job is set by the caller) and a
 * whole answer. */
typedef struct td_srv_shape {
    const char *stream_type;
    td_srv_stream *(*stream)(td_conn *cn, td_srv_api api, const td_srv_req *req, bool tools);
    cJSON *(*whole)(td_conn *cn, td_srv_api api, const td_srv_job *j, const td_strbuf *events, bool tools);
} td_srv_shape;
/* A parsed generation request answered: the job made and submitted, then streamed or waited for. Frees
 * the request. */
enum MHD_Result td_srv_generate(td_conn *cn, td_srv_req *req, const td_srv_shape *shape);
/* Splits the pieces of a job into answer text and reasoning. */
void td_srv_split_pieces(const td_strbuf *events, td_strbuf *text, td_strbuf *reasoning);
const char *td_srv_finish_reason(const td_srv_job *j);
void td_srv_note_ttft(td_server *s, const td_srv_job *j);

/* ------------------------------------------------------------------ routes */

enum MHD_Result td_route_chat(td_conn *cn);        /* td_srv_openai.c */
enum MHD_Result td_route_completions(td_conn *cn); /* td_srv_openai.c */
enum MHD_Result td_route_models(td_conn *cn);      /* td_srv_openai.c */
enum MHD_Result td_route_ollama_chat(td_conn *cn); /* td_srv_ollama.c */
enum MHD_Result td_route_ollama_generate(td_conn *cn);
enum MHD_Result td_route_ollama_tags(td_conn *cn);
enum MHD_Result td_route_ollama_show(td_conn *cn);
enum MHD_Result td_route_ollama_version(td_conn *cn);
enum MHD_Result td_route_metrics(td_conn *cn);     /* td_srv_metrics.c */
enum MHD_Result td_route_page(td_conn *cn);        /* td_srv_http.c: the compiled-in page */

/* The web page (generated at build time from server/web/index.html). */
extern const unsigned char td_srv_page_html[];
extern const unsigned long td_srv_page_html_len;

#endif
