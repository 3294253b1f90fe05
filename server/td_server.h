/* td_server: the HTTP server of `tandem serve`: OpenAI- and Ollama-compatible routes, a web chat page,
 * /health and /metrics, over libmicrohttpd (a thread per connection; generation runs on the
 * scheduler's thread, td_srv_sched.h).
 *
 * Lifecycle: td_server_start listens at once and answers 503 ("loading") until td_server_ready hands
 * it a loaded model; td_server_drain answers 503 to new requests, lets running answers finish or cuts
 * them after a grace period; td_server_stop closes the connections. */
#ifndef TD_SERVER_H
#define TD_SERVER_H

#include "td_chat_template.h"
#include "td_engine.h"
#include "td_srv_sched.h"
#include "td_tokenizer.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct td_server_params {
    const char *host;     /* address or name to bind ("127.0.0.1") */
    int port;             /* 0: any free port (td_server_port says which) */
    const char *api_key;  /* NULL: no key; else "Authorization: Bearer <key>" on every route but /health */
    int64_t max_body;     /* request bodies above it get 413 */
    bool quiet;
} td_server_params;

/* The model the routes serve; everything is borrowed and must outlive the server. */
typedef struct td_server_model {
    const char *id;          /* the name clients use (OpenAI model id, Ollama model name) */
    const td_model *model;
    const td_tokenizer *tok;
    td_template tmpl;
    bool tmpl_chosen;        /* --template given: Ollama's think does not switch V3.1's mode */
    const char *bos_text;
    td_srv_sched *sched;
    const char *mtp_mode;    /* "off", "on", "auto" */
} td_server_model;

typedef struct td_server td_server;

td_status td_server_start(const td_server_params *p, td_server **out);
int td_server_port(const td_server *s);
void td_server_ready(td_server *s, const td_server_model *m);
/* New requests get 503; running generations may go on for grace_s seconds more; returns once no request
 * is being answered (or after grace_s + 2 s). */
void td_server_drain(td_server *s, double grace_s);
void td_server_stop(td_server *s);

#endif
