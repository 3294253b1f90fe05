/* tandem serve: the model behind OpenAI- and Ollama-compatible HTTP routes and a web chat page. */
#include "td_alloc.h"
#include "td_chat_setup.h"
#include "td_commands.h"
#include "td_plan.h"
#include "td_server.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TD_SERVE_GRACE_S 1.0 /* a drain lets running answers go on this long, then cuts them */

static void td_serve_help(void)
{
    printf("usage: tandem serve [--model M] [--host 127.0.0.1] [--port 8080] [options]\n\n"
           "Serves the model over HTTP: OpenAI's /v1/chat/completions, /v1/completions and /v1/models, Ollama's\n"
           "/api/chat, /api/generate, /api/tags, /api/show and /api/version, a web chat page at /, /health, and\n"
           "/metrics (Prometheus). Requests run in --parallel slots, each with its own KV cache of --ctx positions;\n"
           "the decode steps of all busy slots run as one batched forward pass. A request whose prompt extends a\n"
           "slot's cached conversation prefills only the new part. Ctrl-C or SIGTERM drains: new requests get 503,\n"
           "running answers finish or are cut within a second, and the server exits 0.\n\n"
           "  --host H             address to listen on (default 127.0.0.1: this machine only)\n"
           "  --port P             TCP port (default 8080; 0: any free port, printed at start)\n"
           "  --api-key K          require 'Authorization: Bearer K' on every route but /health (default:\n"
           "                       $TANDEM_API_KEY; none when unset)\n"
           "  --parallel N         slots answering at once, 1..%d (default 1)\n"
           "  --queue N            requests waiting for a slot at most; more get 429 (default 16)\n"
           "  --max-body B         largest request body, e.g. 8MiB (default 8 MiB; larger get 413)\n"
           "  --rules R            placement rules or preset (default cpu-only); the plan must hold\n"
           "                       --parallel x --ctx positions of KV cache, or the server is refused at start\n"
           "  --quiet              no start-up lines on stderr\n"
           "%s"
           "Sampling (--temp, --top-p, ...) and -n are per request (OpenAI/Ollama fields), not options here.\n",
           TD_SRV_MAX_SLOTS, td_chat_opts_help());
}

typedef struct td_serve_opts {
    td_chat_opts c;
    const char *host, *api_key, *rules;
    int port, parallel, queue;
    uint64_t max_body;
} td_serve_opts;

static bool td_is_per_request(const td_args *a)
{
    static const char *const names[] = {"--temp", "--temperature", "--top-k", "--top-p", "--min-p", "--seed",
                                        "-n",     "--max-tokens"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (td_args_is(a, names[i])) return true;
    return false;
}

static int td_serve_parse(int argc, char **argv, td_serve_opts *o)
{
    memset(o, 0, sizeof *o);
    o->c.sampling = td_sampler_greedy();
    o->host = "127.0.0.1";
    o->port = 8080;
    o->parallel = 1;
    o->queue = 16;
    o->max_body = 8u << 20;
    o->api_key = getenv("TANDEM_API_KEY");
    td_args a;
    td_args_init(&a, "serve", argc, argv);
    while (td_args_next(&a)) {
        if (td_is_per_request(&a))
            return td_cli_usage_error("serve", "%s: sampling and token limits are set per request (OpenAI's "
                                               "temperature, top_p, seed, max_tokens; Ollama's options)", a.opt);
        int r = td_chat_opts_parse(&a, &o->c);
        if (r < 0) return 2;
        if (r > 0) continue;
        const char *v;
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_serve_help();
            return 0;
        } else if (td_args_is(&a, "--host")) {
            if (!(o->host = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--port")) {
            if (!(v = td_args_value(&a)) || !td_parse_int(&a, v, 0, 65535, &o->port)) return 2;
        } else if (td_args_is(&a, "--api-key")) {
            if (!(o->api_key = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--parallel")) {
            if (!(v = td_args_value(&a)) || !td_parse_int(&a, v, 1, TD_SRV_MAX_SLOTS, &o->parallel)) return 2;
        } else if (td_args_is(&a, "--queue")) {
            if (!(v = td_args_value(&a)) || !td_parse_int(&a, v, 0, 100000, &o->queue)) return 2;
        } else if (td_args_is(&a, "--max-body")) {
            if (!(v = td_args_value(&a)) || !td_parse_bytes(&a, v, &o->max_body)) return 2;
            if (o->max_body < 1024 || o->max_body > (1ull << 32))
                return td_cli_usage_error("serve", "--max-body: %s is out of range (1KiB..4GiB)", v);
        } else if (td_args_is(&a, "--rules")) {
            if (!(o->rules = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--quiet")) {
            o->c.quiet = true;
        } else {
            return td_args_unknown(&a);
        }
    }
    if (o->api_key && !*o->api_key) o->api_key = NULL;
    return -1;
}

/* Pauses for the tests, in seconds from milliseconds in the environment: TANDEM_SERVE_TEST_DELAY_MS after
 * every step (answers of the bundled model end in milliseconds, too soon to press stop or to drain while
 * one runs), TANDEM_SERVE_TEST_LOAD_DELAY_MS before the model loads (to see the server loading). */
static double td_serve_test_delay(const char *name)
{
    const char *v = getenv(name);
    double ms = v ? atof(v) : 0;
    return ms > 0 && ms < 10000 ? ms / 1000 : 0;
}

/* Signals are taken by sigwait on the main thread: every other thread starts with them blocked. */
static void td_serve_block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-answer is a failed write, not the end of the server */
}

int td_cmd_serve(int argc, char **argv)
{
    td_serve_opts o;
    int rc = td_serve_parse(argc, argv, &o);
    if (rc >= 0) return rc;
    sigset_t sigs;
    td_serve_block_signals(&sigs);
    td_server *srv = NULL;
    td_server_params hp = {.host = o.host, .port = o.port, .api_key = o.api_key, .max_body = (int64_t)o.max_body,
                           .quiet = o.c.quiet};
    td_status st = td_server_start(&hp, &srv);
    if (st == TD_E_ARG) return td_cli_usage_error("serve", "%s", td_errmsg());
    if (st != TD_OK) return td_cli_fail("serve", st);
    if (!o.c.quiet)
        fprintf(stderr, "tandem serve: listening on http://%s%s%s:%d/ (loading the model)\n", strchr(o.host, ':') ? "[" : "",
                o.host, strchr(o.host, ':') ? "]" : "", td_server_port(srv));
    td_chat_rt rt;
    td_rules *rules = NULL;
    td_plan *plan = NULL;
    td_srv_sched *sched = NULL;
    double load_delay = td_serve_test_delay("TANDEM_SERVE_TEST_LOAD_DELAY_MS");
    if (load_delay > 0) usleep((useconds_t)(load_delay * 1e6));
    st = td_chat_rt_open_model(&o.c, &rt);
    int64_t ctx = o.c.ctx;
    if (st == TD_OK && ctx == 0)
        ctx = rt.model->hp.max_position_embeddings < 4096 ? rt.model->hp.max_position_embeddings : 4096;
    if (st == TD_OK) {
        st = td_chat_rt_plan(&o.c, o.rules, &rt, ctx * o.parallel, &rules, &plan);
        if (st != TD_OK)
            td_err_context("%d slots x %lld positions of KV cache do not fit (lower --parallel or --ctx)", o.parallel,
                           (long long)ctx);
    }
    if (st == TD_OK) st = td_chat_rt_open_engine(&o.c, plan, &rt);
    if (st == TD_OK) {
        td_srv_sched_params sp = {.engine = rt.engine,
                                  .tok = rt.tok,
                                  .n_slots = o.parallel,
                                  .ctx = ctx,
                                  .kv_type = o.c.kv_type,
                                  .queue_cap = o.queue,
                                  .mtp = o.c.mtp_set ? o.c.mtp : TD_MTP_OFF,
                                  .mtp_k = o.c.mtp_k,
                                  .step_delay_s = td_serve_test_delay("TANDEM_SERVE_TEST_DELAY_MS"),
                                  .quiet = o.c.quiet};
        if (sp.mtp != TD_MTP_OFF && !rt.model->mtp) {
            if (!o.c.quiet) fprintf(stderr, "note: %s has no MTP block: decoding without MTP\n", rt.model->path);
            sp.mtp = TD_MTP_OFF;
        }
        st = td_srv_sched_create(&sp, &sched);
        if (st == TD_OK) {
            td_server_model m = {.id = rt.model_name,
                                 .model = rt.model,
                                 .tok = rt.tok,
                                 .tmpl = rt.tmpl,
                                 .tmpl_chosen = o.c.template_name && strcmp(o.c.template_name, "auto") != 0,
                                 .bos_text = rt.bos_text,
                                 .sched = sched,
                                 .mtp_mode = td_mtp_mode_name(sp.mtp)};
            td_server_ready(srv, &m);
            if (!o.c.quiet)
                fprintf(stderr,
                        "tandem serve: ready: model '%s' (%s), chat format %s (%s), %d slot%s x %lld positions, queue "
                        "%d, MTP %s%s\n",
                        rt.model_name, rt.model->path, td_template_name(rt.tmpl), rt.tmpl_why, o.parallel,
                        o.parallel == 1 ? "" : "s", (long long)ctx, o.queue, td_mtp_mode_name(sp.mtp),
                        o.api_key ? ", API key required" : "");
        }
    }
    if (st == TD_OK) {
        int sig = 0;
        sigwait(&sigs, &sig);
        if (!o.c.quiet) fprintf(stderr, "tandem serve: %s: draining\n", sig == SIGINT ? "interrupted" : "terminated");
        td_server_drain(srv, TD_SERVE_GRACE_S);
        rc = 0;
    } else {
        rc = td_cli_fail("serve", st);
    }
    td_server_stop(srv);
    td_srv_sched_free(sched);
    td_plan_free(plan);
    td_rules_free(rules);
    td_chat_rt_close(&rt);
    if (rc == 0 && !o.c.quiet) fprintf(stderr, "tandem serve: stopped\n");
    return rc;
}
