/* libmicrohttpd glue: the daemon, request bodies, the API key, routing, responses and streams. */
#include "td_srv_impl.h"

#include "td_alloc.h"
#include "td_clock.h"

#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

const int td_srv_codes[TD_SRV_N_CODES] = {200, 400, 401, 404, 405, 413, 429, 500, 503, 0, 0};

static void td_count(td_conn *cn, int status)
{
    cn->status = status;
    for (int i = 0; i < TD_SRV_N_CODES; i++)
        if (td_srv_codes[i] == status) {
            atomic_fetch_add(&cn->srv->requests[cn->route][i], 1);
            return;
        }
}

/* ------------------------------------------------------------------ responses */

enum MHD_Result td_http_send(td_conn *cn, int status, const char *type, const char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == 401) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 429) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 503) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "5");
    enum MHD_Result rc = MHD_queue_response(cn->c, (unsigned)status, r);
    MHD_destroy_response(r);
    td_count(cn, status);
    return rc;
}

enum MHD_Result td_http_json(td_conn *cn, int status, cJSON *body)
{
    char *text = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    if (!text) return td_http_send(cn, 500, "text/plain", "out of memory\n", 14);
    enum MHD_Result rc = td_http_send(cn, status, "application/json", text, strlen(text));
    td_free(text);
    return rc;
}

static const char *td_error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 500: return "server_error";
    case 503: return "unavailable_error";
    default: return "invalid_request_error";
    }
}

cJSON *td_srv_error_json(int status, const char *param, const char *message)
{
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", td_error_type(status));
    if (param && *param)
        cJSON_AddStringToObject(e, "param", param);
    else
        cJSON_AddNullToObject(e, "param");
    cJSON_AddNumberToObject(e, "code", status);
    return root;
}

enum MHD_Result td_http_error(td_conn *cn, int status, const char *param, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return td_http_json(cn, status, td_srv_error_json(status, param, msg));
}

static int td_conn_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static bool td_fd_gone(int fd)
{
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

bool td_http_client_gone(td_conn *cn)
{
    return td_fd_gone(td_conn_fd(cn->c));
}

/* How often a waiting thread looks at its client between pieces: a disconnect cancels the job at the
 * scheduler's next step. */
#define TD_WAIT_S 0.02

bool td_http_wait_job(td_conn *cn, td_srv_job *j, td_strbuf *events)
{
    int fd = td_conn_fd(cn->c);
    while (!td_srv_job_wait(j, TD_WAIT_S, events)) {
        if (td_fd_gone(fd)) {
            atomic_store(&j->cancel, 1);
            while (!td_srv_job_wait(j, TD_WAIT_S, events)) {}
            return false;
        }
    }
    return true;
}

void td_srv_job_release(td_srv_job *j)
{
    if (!j) return;
    atomic_store(&j->cancel, 1);
    td_strbuf scratch = {0};
    while (!td_srv_job_wait(j, TD_WAIT_S, &scratch)) td_strbuf_clear(&scratch);
    td_strbuf_free(&scratch);
    td_srv_job_free(j);
}

/* ------------------------------------------------------------------ streams */

static ssize_t td_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    td_srv_stream *st = cls;
    td_strbuf events = {0};
    while (st->out_pos == st->out.n) {
        if (st->finished) {
            td_strbuf_free(&events);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        td_strbuf_clear(&st->out);
        st->out_pos = 0;
        td_strbuf_clear(&events);
        bool done = td_srv_job_wait(st->job, TD_WAIT_S, &events);
        if (!done && td_fd_gone(st->fd)) {
            atomic_store(&st->job->cancel, 1);
            td_strbuf_free(&events);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (events.n || done) st->emit(st, &events, done);
        if (done) st->finished = true;
        if (st->out.oom) {
            td_strbuf_free(&events);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    td_strbuf_free(&events);
    size_t n = st->out.n - st->out_pos < max ? st->out.n - st->out_pos : max;
    memcpy(buf, st->out.p + st->out_pos, n);
    st->out_pos += n;
    return (ssize_t)n;
}

static void td_stream_free(void *cls)
{
    td_srv_stream *st = cls;
    td_srv_job_release(st->job);
    td_strbuf_free(&st->out);
    st->destroy(st);
}

enum MHD_Result td_http_stream(td_conn *cn, const char *type, td_srv_stream *st)
{
    st->srv = cn->srv;
    st->fd = td_conn_fd(cn->c);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, td_stream_read, st,
                                                               td_stream_free);
    if (!r) {
        td_stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result rc = MHD_queue_response(cn->c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    td_count(cn, 200);
    return rc;
}

/* ------------------------------------------------------------------ routing */

static const struct {
    const char *method, *path;
    td_route route;
    bool needs_model;
    enum MHD_Result (*fn)(td_conn *cn);
} td_routes[] = {
    {"GET", "/", TD_ROUTE_PAGE, false, td_route_page},
    {"GET", "/health", TD_ROUTE_HEALTH, false, NULL},
    {"GET", "/metrics", TD_ROUTE_METRICS, false, td_route_metrics},
    {"GET", "/v1/models", TD_ROUTE_MODELS, true, td_route_models},
    {"POST", "/v1/chat/completions", TD_ROUTE_CHAT, true, td_route_chat},
    {"POST", "/v1/completions", TD_ROUTE_COMPLETIONS, true, td_route_completions},
    {"POST", "/api/chat", TD_ROUTE_OLLAMA_CHAT, true, td_route_ollama_chat},
    {"POST", "/api/generate", TD_ROUTE_OLLAMA_GENERATE, true, td_route_ollama_generate},
    {"GET", "/api/tags", TD_ROUTE_OLLAMA_TAGS, true, td_route_ollama_tags},
    {"POST", "/api/show", TD_ROUTE_OLLAMA_SHOW, true, td_route_ollama_show},
    {"GET", "/api/version", TD_ROUTE_OLLAMA_VERSION, false, td_route_ollama_version},
};
#define TD_N_ROUTES (int)(sizeof td_routes / sizeof td_routes[0])

static int td_find_route(const char *url, const char *method, bool *wrong_method)
{
    *wrong_method = false;
    size_t n = strcspn(url, "?");
    while (n > 1 && url[n - 1] == '/') n--; /* "/v1/models/" is "/v1/models" */
    for (int i = 0; i < TD_N_ROUTES; i++) {
        if (strlen(td_routes[i].path) != n || strncmp(td_routes[i].path, url, n) != 0) continue;
        bool head = strcmp(method, "HEAD") == 0 && strcmp(td_routes[i].method, "GET") == 0;
        if (strcmp(method, td_routes[i].method) == 0 || head) return i;
        *wrong_method = true;
    }
    return -1;
}

/* The key compared in time that depends only on the key's length, not on where a guess goes wrong. */
static bool td_key_ok(const td_server *s, struct MHD_Connection *c)
{
    const char *key = s->p.api_key;
    if (!key || !*key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *given = "";
    if (h && strncasecmp(h, "Bearer ", 7) == 0) given = h + 7;
    size_t kl = strlen(key), gl = strlen(given);
    unsigned diff = (unsigned)(kl != gl);
    for (size_t i = 0; i < kl; i++) diff |= (unsigned)(unsigned char)(key[i] ^ (i < gl ? given[i] : 0));
    return diff == 0;
}

static enum MHD_Result td_health(td_conn *cn)
{
    int state = atomic_load(&cn->srv->state);
    static const char *const names[TD_SRV_STATE_COUNT] = {"loading", "ok", "draining"};
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "status", names[state]);
    return td_http_json(cn, state == TD_SRV_READY ? 200 : 503, j);
}

enum MHD_Result td_route_page(td_conn *cn)
{
    return td_http_send(cn, 200, "text/html; charset=utf-8", (const char *)td_srv_page_html, td_srv_page_html_len);
}

static enum MHD_Result td_dispatch(td_conn *cn, const char *method)
{
    td_server *s = cn->srv;
    bool wrong_method;
    int i = td_find_route(cn->url, method, &wrong_method);
    cn->route = i >= 0 ? td_routes[i].route : TD_ROUTE_OTHER;
    if (cn->route == TD_ROUTE_HEALTH) return td_health(cn);
    if (!td_key_ok(s, cn->c))
        return td_http_error(cn, 401, "", "a valid API key is needed: send 'Authorization: Bearer <key>' (the key "
                                          "given by --api-key or TANDEM_API_KEY)");
    if (i < 0 && wrong_method) return td_http_error(cn, 405, "", "%s is not allowed on %s", method, cn->url);
    if (i < 0) return td_http_error(cn, 404, "", "no route %s %s", method, cn->url);
    if (cn->too_big)
        return td_http_error(cn, 413, "", "the request body is larger than %lld bytes (--max-body)",
                             (long long)s->p.max_body);
    int state = atomic_load(&s->state);
    if (td_routes[i].needs_model && state != TD_SRV_READY)
        return td_http_error(cn, 503, "", state == TD_SRV_LOADING ? "the model is still loading; try again shortly"
                                                                  : "the server is shutting down");
    return td_routes[i].fn(cn);
}

static enum MHD_Result td_on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                     const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    td_server *s = cls;
    td_conn *cn = *con_cls;
    if (!cn) {
        if (!(cn = td_calloc(1, sizeof *cn))) return MHD_NO;
        cn->srv = s;
        cn->c = c;
        cn->url = url;
        cn->route = TD_ROUTE_OTHER;
        *con_cls = cn;
        atomic_fetch_add(&s->active, 1);
        /* a declared size over the limit is refused before the body is read */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoll(cl, NULL, 10) > s->p.max_body) {
            cn->too_big = true;
            bool wrong;
            int i = td_find_route(url, method, &wrong);
            cn->route = i >= 0 ? td_routes[i].route : TD_ROUTE_OTHER;
            if (td_key_ok(s, c))
                return td_http_error(cn, 413, "", "the request body is larger than %lld bytes (--max-body)",
                                     (long long)s->p.max_body);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cn->too_big && cn->body.n + *upload_size > (size_t)s->p.max_body) {
            cn->too_big = true;
            td_strbuf_free(&cn->body);
        }
        if (!cn->too_big) td_strbuf_put(&cn->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (cn->status) return MHD_YES; /* answered already (413 up front) */
    if (cn->body.oom) return td_http_error(cn, 500, "", "out of memory for the request body");
    return td_dispatch(cn, method);
}

static void td_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)c;
    (void)toe;
    td_server *s = cls;
    td_conn *cn = *con_cls;
    if (!cn) return;
    td_strbuf_free(&cn->body);
    td_free(cn);
    *con_cls = NULL;
    atomic_fetch_sub(&s->active, 1);
}

/* ------------------------------------------------------------------ lifecycle */

td_status td_server_start(const td_server_params *p, td_server **out)
{
    *out = NULL;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    int gai = getaddrinfo(p->host, port, &hints, &ai);
    if (gai != 0)
        return td_fail(TD_E_ARG, "--host %s: cannot resolve it (%s); give an address such as 127.0.0.1 or ::1",
                       p->host, gai_strerror(gai));
    td_server *s = td_calloc(1, sizeof *s);
    if (!s) {
        freeaddrinfo(ai);
        return td_fail(TD_E_NOMEM, "out of memory");
    }
    s->p = *p;
    atomic_init(&s->state, TD_SRV_LOADING);
    atomic_store(&s->started_unix, (long long)time(NULL));
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD; /* errors: ours, below */
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, td_on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_NOTIFY_COMPLETED, td_on_completed, s, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)512, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)3600, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        td_free(s);
        return td_fail(TD_E_IO, "cannot listen on %s port %d (in use, or not an address of this machine?)", p->host,
                       p->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : p->port;
    *out = s;
    return TD_OK;
}

int td_server_port(const td_server *s)
{
    return s->port;
}

void td_server_ready(td_server *s, const td_server_model *m)
{
    s->m = *m;
    atomic_store(&s->state, TD_SRV_READY);
}

void td_server_drain(td_server *s, double grace_s)
{
    atomic_store(&s->state, TD_SRV_DRAINING);
    if (s->m.sched) td_srv_sched_drain(s->m.sched, grace_s);
    double until = td_now() + grace_s + 2.0;
    while (td_now() < until && (atomic_load(&s->active) > 0 || (s->m.sched && !td_srv_sched_idle(s->m.sched))))
        usleep(10000);
}

void td_server_stop(td_server *s)
{
    if (!s) return;
    if (s->d) MHD_stop_daemon(s->d);
    td_free(s);
}
