/* td_pool: persistent worker threads, pinned one per core with hwloc, grouped by NUMA node.
 * td_pool_run(fn) runs fn on every thread at once (the caller is thread 0) and returns when all are
 * done; the work is split by (ith, nth) inside fn, and td_pool_barrier() separates phases. Idle workers
 * spin for a short while (a new job usually follows within microseconds) and then sleep on a futex.
 * Only C11 atomics and futexes synchronize, so ThreadSanitizer understands every hand-off; nothing on
 * the run path allocates. */
#ifndef TD_POOL_H
#define TD_POOL_H

#include "td_status.h"
#include "td_topo.h"

#include <stdbool.h>

typedef struct td_pool td_pool;

typedef struct td_pool_task {
    td_pool *pool;
    int ith, nth;            /* this thread among all */
    int node;                /* its NUMA node (index in the plan) */
    int node_ith, node_nth;  /* this thread among its node's threads */
} td_pool_task;

typedef void (*td_pool_fn)(const td_pool_task *task, void *arg);

typedef struct td_pool_params {
    int n_threads;       /* 0: one per core */
    const td_topo *topo; /* borrowed; must outlive the pool */
    bool pin;            /* bind threads to cores (ignored for synthetic topologies) */
    int spin_us;         /* how long an idle worker spins before sleeping (0: default 200 us) */
} td_pool_params;

td_status td_pool_create(const td_pool_params *p, td_pool **out);
void td_pool_free(td_pool *pool);

/* Runs fn(task, arg) on all threads and waits for them. Not reentrant: one job at a time. */
void td_pool_run(td_pool *pool, td_pool_fn fn, void *arg);
/* All threads of the current job wait for each other. */
void td_pool_barrier(const td_pool_task *task);

int td_pool_threads(const td_pool *pool);
const td_thread_plan *td_pool_plan(const td_pool *pool);
/* Whether every thread was bound to its core as planned. */
bool td_pool_pinned(const td_pool *pool);

#endif
