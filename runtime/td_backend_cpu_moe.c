/* The routed experts on the CPU backend. moe_submit hands the batch to a driver thread, which runs the
 * pool (td_cpu_moe) while the caller goes on with another backend's work; moe_wait, or any later
 * operation of this backend, joins it. Without a driver (moe_async off: nothing could overlap the
 * experts, so a handoff would only cost time) the experts run inside moe_submit, on the caller.
 *
 * The handoff: the driver spins briefly for a job, then sleeps on a condition variable; the caller
 * spins briefly for the result, then sleeps likewise. Its cost is booked in td_backend_stats. */
#include "td_backend_cpu_impl.h"
#include "td_clock.h"

#include <stdio.h>
#include <string.h>

#define TD_MOE_SPIN_S 50e-6 /* how long either side spins before it sleeps */

static inline void td_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void td_moe_run_job(td_cpu_backend *c, const td_moe_job *j)
{
    const td_hparams *hp = c->hp;
    int64_t H = hp->hidden_size;
    memset(j->out, 0, (size_t)(j->n * H) * sizeof(float));
    td_moe_batch mb = {.n_tok = j->n, .k = hp->n_experts_per_tok, .ids = j->ids, .weights = j->weights, .x = j->xn,
                       .out = j->out};
    td_cpu_moe(c->cpu, j->moe->experts, hp->n_routed_experts, &mb);
}

/* Waits until d->state is one of the states in `want` (a bit mask), spinning first; returns it. */
static uint32_t td_moe_wait_for(td_moe_driver *d, pthread_cond_t *cv, unsigned want)
{
    double t0 = td_now();
    uint32_t s;
    while (!((1u << (s = atomic_load_explicit(&d->state, memory_order_acquire))) & want)) {
        if (td_now() - t0 > TD_MOE_SPIN_S) {
            pthread_mutex_lock(&d->mu);
            while (!((1u << (s = atomic_load_explicit(&d->state, memory_order_acquire))) & want))
                pthread_cond_wait(cv, &d->mu);
            pthread_mutex_unlock(&d->mu);
            return s;
        }
        td_cpu_relax();
    }
    return s;
}

static void *td_moe_driver_main(void *arg)
{
    td_cpu_backend *c = arg;
    td_moe_driver *d = &c->drv;
    for (;;) {
        uint32_t s = td_moe_wait_for(d, &d->job_cv, 1u << TD_MOE_SUBMITTED | 1u << TD_MOE_QUIT);
        if (s == TD_MOE_QUIT) return NULL;
        d->started_at = td_now();
        td_moe_run_job(c, &d->job);
        d->status = TD_OK;
        d->done_at = td_now();
        pthread_mutex_lock(&d->mu);
        atomic_store_explicit(&d->state, TD_MOE_DONE, memory_order_release);
        pthread_cond_broadcast(&d->done_cv);
        pthread_mutex_unlock(&d->mu);
    }
}

td_status td_cpu_be_driver_start(td_cpu_backend *c)
{
    td_moe_driver *d = &c->drv;
    atomic_store(&d->state, TD_MOE_IDLE);
    if (pthread_mutex_init(&d->mu, NULL) != 0) return td_fail(TD_E_NOMEM, "cannot create the MoE driver's mutex");
    pthread_cond_init(&d->job_cv, NULL);
    pthread_cond_init(&d->done_cv, NULL);
    if (pthread_create(&d->thread, NULL, td_moe_driver_main, c) != 0) {
        pthread_cond_destroy(&d->job_cv);
        pthread_cond_destroy(&d->done_cv);
        pthread_mutex_destroy(&d->mu);
        return td_fail(TD_E_NOMEM, "cannot start the thread that drives the routed experts");
    }
    d->started = true;
    return TD_OK;
}

void td_cpu_be_driver_stop(td_cpu_backend *c)
{
    td_moe_driver *d = &c->drv;
    if (!d->started) return;
    (void)td_cpu_be_join(c);
    pthread_mutex_lock(&d->mu);
    atomic_store_explicit(&d->state, TD_MOE_QUIT, memory_order_release);
    pthread_cond_broadcast(&d->job_cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    pthread_cond_destroy(&d->job_cv);
    pthread_cond_destroy(&d->done_cv);
    pthread_mutex_destroy(&d->mu);
    d->started = false;
}

td_status td_cpu_be_join(td_cpu_backend *c)
{
    if (!c->moe_pending) return TD_OK;
    c->moe_pending = false;
    td_moe_driver *d = &c->drv;
    double t0 = td_now();
    td_moe_wait_for(d, &d->done_cv, 1u << TD_MOE_DONE);
    double t1 = td_now();
    atomic_store_explicit(&d->state, TD_MOE_IDLE, memory_order_relaxed);
    c->stats.moe_wait_s += t1 - t0;
    c->stats.moe_busy_s += d->done_at - d->started_at;
    /* the driver's pickup, and its result's trip back to a caller that was already waiting */
    c->stats.moe_handoff_s += (d->started_at - d->submitted_at) + (t0 < d->done_at ? t1 - d->done_at : 0.0);
    if (d->status != TD_OK) return td_fail(d->status, "%s", d->msg);
    return TD_OK;
}

td_status td_cpu_be_moe_submit(td_backend *b, const td_moe_weights *moe, td_view xn, td_view ids, td_view weights,
                               td_view out, int64_t n)
{
    td_cpu_backend *c = td_cpu_be(b);
    TD_TRY(td_cpu_be_join(c));
    int k = c->hp->n_experts_per_tok;
    int64_t H = c->hp->hidden_size;
    TD_ASSERT(xn.stride == H && out.stride == H && ids.stride == k && weights.stride == k && n <= c->max_rows);
    td_moe_job j = {.moe = moe, .xn = td_cpu_row(xn, 0), .ids = (const int32_t *)td_cpu_row(ids, 0),
                    .weights = td_cpu_row(weights, 0), .out = td_cpu_row(out, 0), .n = n};
    c->stats.moe_submits++;
    if (!c->drv.started) {
        double t0 = td_now();
        td_moe_run_job(c, &j);
        c->stats.moe_busy_s += td_now() - t0;
        return TD_OK;
    }
    td_moe_driver *d = &c->drv;
    d->job = j;
    d->submitted_at = td_now();
    c->moe_pending = true;
    pthread_mutex_lock(&d->mu);
    atomic_store_explicit(&d->state, TD_MOE_SUBMITTED, memory_order_release);
    pthread_cond_signal(&d->job_cv);
    pthread_mutex_unlock(&d->mu);
    return TD_OK;
}

td_status td_cpu_be_moe_wait(td_backend *b) { return td_cpu_be_join(td_cpu_be(b)); }
