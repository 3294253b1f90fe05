/* GET /metrics: Prometheus text format (version 0.0.4). */
#include "td_srv_impl.h"

#include "td_alloc.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

static const char *const td_route_names[TD_ROUTE_COUNT] = {
    "/", "/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions", "/api/chat",
    "/api/generate", "/api/tags", "/api/show", "/api/version", "other",
};

static void td_line(td_strbuf *b, const char *fmt, ...) TD_PRINTF(2, 3);
static void td_line(td_strbuf *b, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    td_strbuf_puts(b, buf);
}

static void td_metric(td_strbuf *b, const char *name, const char *type, const char *help, double v)
{
    char num[40];
    if (isnan(v))
        snprintf(num, sizeof num, "NaN");
    else
        snprintf(num, sizeof num, "%.17g", v);
    td_line(b, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name, type, name, num);
}

static double td_ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

enum MHD_Result td_route_metrics(td_conn *cn)
{
    td_server *s = cn->srv;
    td_strbuf b = {0};
    td_line(&b, "# HELP tandem_requests_total HTTP requests answered, by route and status\n"
                "# TYPE tandem_requests_total counter\n");
    for (int r = 0; r < TD_ROUTE_COUNT; r++)
        for (int c = 0; c < TD_SRV_N_CODES; c++) {
            long long n = atomic_load(&s->requests[r][c]);
            if (n) td_line(&b, "tandem_requests_total{route=\"%s\",code=\"%d\"} %lld\n", td_route_names[r], td_srv_codes[c], n);
        }
    td_metric(&b, "tandem_up", "gauge", "1 when the model is loaded and requests are served",
              atomic_load(&s->state) == TD_SRV_READY);
    td_metric(&b, "tandem_requests_in_flight", "gauge", "HTTP requests being answered", atomic_load(&s->active));
    long long tn = atomic_load(&s->ttft_count), tus = atomic_load(&s->ttft_us_sum);
    td_line(&b, "# HELP tandem_time_to_first_token_seconds time from a request's arrival to its first token\n"
                "# TYPE tandem_time_to_first_token_seconds summary\n"
                "tandem_time_to_first_token_seconds_sum %.6f\ntandem_time_to_first_token_seconds_count %lld\n",
            (double)tus * 1e-6, tn);
    if (s->m.sched) {
        td_srv_stats t;
        td_srv_sched_stats(s->m.sched, &t);
        td_metric(&b, "tandem_slots", "gauge", "generation slots (--parallel)", t.n_slots);
        td_metric(&b, "tandem_slots_busy", "gauge", "slots generating now", t.active);
        td_metric(&b, "tandem_queue_depth", "gauge", "requests waiting for a slot", t.queued);
        td_metric(&b, "tandem_queue_capacity", "gauge", "requests that may wait (--queue)", t.queue_cap);
        td_metric(&b, "tandem_generations_total", "counter", "generations finished normally", (double)t.jobs_done);
        td_metric(&b, "tandem_generations_cancelled_total", "counter", "generations cut (client gone, drain)",
                  (double)t.jobs_cancelled);
        td_metric(&b, "tandem_generations_failed_total", "counter", "generations that failed", (double)t.jobs_failed);
        td_metric(&b, "tandem_prompt_tokens_total", "counter", "prompt tokens prefilled", (double)t.prompt_tokens);
        td_metric(&b, "tandem_prompt_tokens_reused_total", "counter",
                  "prompt tokens found in a slot's cache (not prefilled again)", (double)t.reused_tokens);
        td_metric(&b, "tandem_generated_tokens_total", "counter", "tokens generated", (double)t.gen_tokens);
        td_metric(&b, "tandem_forward_steps_total", "counter", "batched forward calls", (double)t.steps);
        td_metric(&b, "tandem_forward_rows_total", "counter", "token rows in those calls", (double)t.rows);
        td_metric(&b, "tandem_decode_steps_total", "counter", "batched forward calls without prompt rows",
                  (double)t.decode_steps);
        td_metric(&b, "tandem_decode_tokens_total", "counter", "tokens chosen in those calls", (double)t.decode_tokens);
        td_metric(&b, "tandem_prompt_seconds_total", "counter", "seconds of steps with prompt rows", t.prompt_s);
        td_metric(&b, "tandem_decode_seconds_total", "counter", "seconds of steps with decode rows only", t.decode_s);
        td_metric(&b, "tandem_prompt_tokens_per_second", "gauge", "prompt tokens per second of prompt steps",
                  td_ratio((double)t.prompt_tokens, t.prompt_s));
        td_metric(&b, "tandem_decode_tokens_per_second", "gauge",
                  "tokens generated per second of decode-only steps, all slots together",
                  td_ratio((double)t.decode_tokens, t.decode_s));
        td_metric(&b, "tandem_kv_positions_used", "gauge", "KV cache positions holding tokens, all slots",
                  (double)t.kv_used);
        td_metric(&b, "tandem_kv_positions", "gauge", "KV cache positions, all slots (--parallel x --ctx)",
                  (double)(t.ctx * t.n_slots));
        td_metric(&b, "tandem_kv_bytes_used", "gauge", "KV cache bytes holding tokens, main layers",
                  (double)(t.kv_used * t.kv_bytes_per_token));
        td_metric(&b, "tandem_kv_use_ratio", "gauge", "KV positions used / positions",
                  td_ratio((double)t.kv_used, (double)(t.ctx * t.n_slots)));
        td_metric(&b, "tandem_mtp_drafted_total", "counter", "MTP draft tokens verified", (double)t.mtp_drafted);
        td_metric(&b, "tandem_mtp_accepted_total", "counter", "MTP draft tokens accepted", (double)t.mtp_accepted);
        td_metric(&b, "tandem_mtp_acceptance", "gauge", "MTP accepted / drafted (NaN before any draft)",
                  t.mtp_drafted ? (double)t.mtp_accepted / (double)t.mtp_drafted : NAN);
    }
    if (b.oom) {
        td_strbuf_free(&b);
        return td_http_error(cn, 500, "", "out of memory");
    }
    enum MHD_Result r = td_http_send(cn, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.n);
    td_strbuf_free(&b);
    return r;
}
