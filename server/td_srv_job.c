#include "td_srv_job.h"

#include "td_alloc.h"
#include "td_clock.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

td_status td_srv_job_create(td_srv_job **out)
{
    td_srv_job *j = td_calloc(1, sizeof *j);
    if (!j) return td_fail(TD_E_NOMEM, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&j->cancel, 0);
    j->sampling = td_sampler_greedy();
    j->slot = -1;
    *out = j;
    return TD_OK;
}

void td_srv_job_free(td_srv_job *j)
{
    if (!j) return;
    td_tokens_free(&j->prompt);
    for (int i = 0; i < j->n_stop; i++) td_free(j->stop[i]);
    td_strbuf_free(&j->events);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    td_free(j);
}

static void td_put_piece(td_strbuf *b, td_gen_piece kind, const char *text, size_t len)
{
    unsigned char head[5] = {(unsigned char)kind, (unsigned char)(len & 0xff), (unsigned char)((len >> 8) & 0xff),
                             (unsigned char)((len >> 16) & 0xff), (unsigned char)((len >> 24) & 0xff)};
    td_strbuf_put(b, (const char *)head, sizeof head);
    td_strbuf_put(b, text, len);
}

void td_srv_job_put(td_srv_job *j, td_gen_piece kind, const char *text, size_t len)
{
    if (len == 0) return;
    pthread_mutex_lock(&j->mu);
    td_put_piece(&j->events, kind, text, len);
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

void td_srv_job_finish(td_srv_job *j, td_gen_stop stop, int status, const char *error)
{
    pthread_mutex_lock(&j->mu);
    j->stop_reason = stop;
    j->status = status;
    if (error) snprintf(j->error, sizeof j->error, "%s", error);
    if (!status && j->events.oom) {
        j->status = 500;
        snprintf(j->error, sizeof j->error, "out of memory for the generated text");
    }
    j->t_end = td_now();
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

bool td_srv_job_wait(td_srv_job *j, double timeout_s, td_strbuf *out)
{
    pthread_mutex_lock(&j->mu);
    if (!j->done && j->events.n == 0 && timeout_s > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double whole = floor(timeout_s);
        ts.tv_sec += (time_t)whole;
        ts.tv_nsec += (long)((timeout_s - whole) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!j->done && j->events.n == 0)
            if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) == ETIMEDOUT) break;
    }
    if (j->events.n) {
        td_strbuf_put(out, j->events.p, j->events.n);
        j->events.n = 0;
    }
    bool done = j->done;
    pthread_mutex_unlock(&j->mu);
    return done;
}

bool td_srv_job_next_piece(const td_strbuf *b, size_t *at, td_gen_piece *kind, const char **text, size_t *len)
{
    if (*at + 5 > b->n) return false;
    const unsigned char *h = (const unsigned char *)b->p + *at;
    size_t n = (size_t)h[1] | (size_t)h[2] << 8 | (size_t)h[3] << 16 | (size_t)h[4] << 24;
    if (*at + 5 + n > b->n) return false;
    *kind = (td_gen_piece)h[0];
    *text = b->p + *at + 5;
    *len = n;
    *at += 5 + n;
    return true;
}
