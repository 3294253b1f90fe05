/* The thread pool: every thread runs every job once with the right (ith, nth) and node fields, barriers
 * separate phases, jobs right after each other and jobs after the workers went to sleep both work, and
 * oversubscription (more threads than cores) is allowed. */
#include "td_pool.h"
#include "td_test.h"
#include "td_topo.h"

#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define TP_MAX 64

typedef struct tp_job {
    _Atomic int ran[TP_MAX];
    _Atomic int counter;
    _Atomic int bad;
    int phases;
    int seen_nth[TP_MAX];
    int seen_node[TP_MAX];
} tp_job;

static void tp_task(const td_pool_task *t, void *arg)
{
    tp_job *j = arg;
    atomic_fetch_add(&j->ran[t->ith], 1);
    j->seen_nth[t->ith] = t->nth;
    j->seen_node[t->ith] = t->node;
    for (int p = 0; p < j->phases; p++) {
        atomic_fetch_add(&j->counter, 1);
        td_pool_barrier(t);
        /* after the barrier every thread has counted this phase, and nobody has counted the next */
        if (atomic_load(&j->counter) != t->nth * (p + 1)) atomic_fetch_add(&j->bad, 1);
        td_pool_barrier(t);
    }
}

static void tp_check(td_pool *pool, int phases, int rounds, int sleep_us)
{
    int n = td_pool_threads(pool);
    const td_thread_plan *plan = td_pool_plan(pool);
    for (int r = 0; r < rounds; r++) {
        tp_job j;
        memset(&j, 0, sizeof j);
        j.phases = phases;
        td_pool_run(pool, tp_task, &j);
        int ok = 1;
        for (int i = 0; i < n; i++)
            ok &= atomic_load(&j.ran[i]) == 1 && j.seen_nth[i] == n && j.seen_node[i] == plan->slots[i].node;
        TD_CHECKF(ok, "round %d: a thread missed the job or saw wrong fields (%d threads)", r, n);
        TD_CHECKF(atomic_load(&j.bad) == 0, "round %d: barrier let %d threads through early", r, atomic_load(&j.bad));
        if (sleep_us) {
            struct timespec ts = {0, sleep_us * 1000L};
            nanosleep(&ts, NULL);
        }
    }
}

int main(void)
{
    td_topo *topo = NULL;
    TD_CHECK(td_topo_load(NULL, &topo) == TD_OK);
    if (!topo) return td_test_finish();
    int cores = td_topo_cores(topo);
    int counts[] = {1, 2, 3, cores, cores + 3};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        if (counts[i] > TP_MAX) continue;
        td_pool *pool = NULL;
        td_pool_params pp = {.n_threads = counts[i], .topo = topo, .pin = true, .spin_us = 20};
        TD_CHECK(td_pool_create(&pp, &pool) == TD_OK);
        if (!pool) continue;
        TD_CHECK(td_pool_threads(pool) == counts[i]);
        tp_check(pool, 0, 2000, 0);   /* back to back: spinning hand-offs */
        tp_check(pool, 20, 50, 0);    /* barriers */
        tp_check(pool, 3, 5, 2000);   /* workers asleep (spin 20 us) between jobs: futex wake-ups */
        td_pool_free(pool);
    }
    /* the default is one thread per core */
    td_pool *pool = NULL;
    td_pool_params pp = {.topo = topo, .pin = false};
    TD_CHECK(td_pool_create(&pp, &pool) == TD_OK);
    if (pool) TD_CHECK(td_pool_threads(pool) == cores);
    td_pool_free(pool);
    pp.n_threads = -1;
    TD_CHECK(td_pool_create(&pp, &pool) == TD_E_ARG && pool == NULL);
    td_topo_free(topo);
    return td_test_finish();
}
