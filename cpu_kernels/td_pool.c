#include "td_pool.h"

#include "td_alloc.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define td_cpu_relax() _mm_pause()
#else
#define td_cpu_relax() ((void)0)
#endif

/* A futex word and the number of threads sleeping on it, on its own cache line. */
typedef struct td_signal {
    alignas(64) _Atomic uint32_t word;
    _Atomic int sleepers;
} td_signal;

struct td_pool {
    td_signal gen;      /* job generation: workers start a job when it changes */
    td_signal done;     /* workers that finished the current job */
    td_signal bar;      /* barrier phase */
    alignas(64) _Atomic uint32_t bar_count;
    alignas(64) td_pool_fn fn;
    void *arg;
    _Atomic bool stop;
    _Atomic int pin_failures;
    int n;
    int64_t spin_ns;
    bool pin;
    const td_topo *topo;
    td_thread_plan plan;
    td_pool_task *tasks;     /* [n] */
    pthread_t *threads;      /* [n]; [0] is the caller's slot and unused */
    int started;             /* worker threads created */
    pthread_t caller;        /* the last thread pinned as thread 0 */
    bool caller_set;
};

static long td_futex(_Atomic uint32_t *word, int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)word, op, val, NULL, NULL, 0);
}

static int64_t td_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits until s->word != old: spins for spin_ns, then sleeps. Returns the new value. */
static uint32_t td_signal_wait_change(td_signal *s, uint32_t old, int64_t spin_ns)
{
    uint32_t v;
    int64_t t0 = 0;
    for (unsigned k = 1;; k++) {
        if ((v = atomic_load_explicit(&s->word, memory_order_acquire)) != old) return v;
        td_cpu_relax();
        if ((k & 63) == 0) {
            int64_t t = td_now_ns();
            if (!t0) t0 = t;
            else if (t - t0 > spin_ns) break;
        }
    }
    atomic_fetch_add(&s->sleepers, 1);
    while ((v = atomic_load(&s->word)) == old) td_futex(&s->word, FUTEX_WAIT_PRIVATE, old);
    atomic_fetch_sub(&s->sleepers, 1);
    return v;
}

static void td_signal_wake(td_signal *s)
{
    if (atomic_load(&s->sleepers) > 0) td_futex(&s->word, FUTEX_WAKE_PRIVATE, INT_MAX);
}

static void td_pool_pin(td_pool *p, int ith)
{
    if (!p->pin) return;
    const td_thread_slot *s = &p->plan.slots[ith];
    if (!td_topo_bind_thread(p->topo, s->node, s->core)) atomic_fetch_add(&p->pin_failures, 1);
}

static void *td_pool_worker(void *arg)
{
    td_pool_task *task = arg;
    td_pool *p = task->pool;
    td_pool_pin(p, task->ith);
    uint32_t seen = 0;
    for (;;) {
        seen = td_signal_wait_change(&p->gen, seen, p->spin_ns);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        p->fn(task, p->arg);
        if (atomic_fetch_add(&p->done.word, 1) + 1 == (uint32_t)(p->n - 1)) td_signal_wake(&p->done);
    }
    return NULL;
}

td_status td_pool_create(const td_pool_params *params, td_pool **out)
{
    *out = NULL;
    td_pool *p = td_malloc_aligned(sizeof *p, 64);
    if (!p) return td_fail(TD_E_NOMEM, "out of memory creating the thread pool");
    *p = (td_pool){0};
    p->topo = params->topo;
    p->spin_ns = (int64_t)(params->spin_us > 0 ? params->spin_us : 200) * 1000;
    p->pin = params->pin && td_topo_is_this_system(params->topo);
    td_status st = td_thread_plan_make(params->topo, params->n_threads, &p->plan);
    if (st != TD_OK) {
        td_free(p);
        return st;
    }
    p->n = p->plan.n_threads;
    p->tasks = td_calloc((size_t)p->n, sizeof *p->tasks);
    p->threads = td_calloc((size_t)p->n, sizeof *p->threads);
    if (!p->tasks || !p->threads) {
        int n = p->n;
        td_pool_free(p);
        return td_fail(TD_E_NOMEM, "out of memory creating %d threads", n);
    }
    for (int i = 0; i < p->n; i++) {
        const td_thread_slot *s = &p->plan.slots[i];
        p->tasks[i] = (td_pool_task){.pool = p, .ith = i, .nth = p->n, .node = s->node, .node_ith = s->node_rank,
                                     .node_nth = p->plan.node_threads[s->node]};
    }
    for (int i = 1; i < p->n; i++) {
        if (pthread_create(&p->threads[i], NULL, td_pool_worker, &p->tasks[i]) != 0) {
            int n = p->n;
            td_pool_free(p);
            return td_fail(TD_E_NOMEM, "could not start worker thread %d of %d (lower --threads)", i, n);
        }
        p->started = i;
    }
    *out = p;
    return TD_OK;
}

void td_pool_free(td_pool *p)
{
    if (!p) return;
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->gen.word, 1);
    td_futex(&p->gen.word, FUTEX_WAKE_PRIVATE, INT_MAX);
    for (int i = 1; i <= p->started; i++) pthread_join(p->threads[i], NULL);
    td_thread_plan_free(&p->plan);
    td_free(p->tasks);
    td_free(p->threads);
    td_free(p);
}

void td_pool_run(td_pool *p, td_pool_fn fn, void *arg)
{
    if (!p->caller_set || !pthread_equal(p->caller, pthread_self())) {
        td_pool_pin(p, 0);
        p->caller = pthread_self();
        p->caller_set = true;
    }
    if (p->n == 1) {
        fn(&p->tasks[0], arg);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->done.word, 0);
    atomic_fetch_add(&p->gen.word, 1);
    td_signal_wake(&p->gen);
    fn(&p->tasks[0], arg);
    uint32_t d;
    while ((d = atomic_load_explicit(&p->done.word, memory_order_acquire)) != (uint32_t)(p->n - 1))
        td_signal_wait_change(&p->done, d, p->spin_ns);
}

void td_pool_barrier(const td_pool_task *t)
{
    td_pool *p = t->pool;
    if (t->nth == 1) return;
    uint32_t phase = atomic_load(&p->bar.word);
    if (atomic_fetch_add(&p->bar_count, 1) + 1 == (uint32_t)t->nth) {
        atomic_store(&p->bar_count, 0);
        atomic_fetch_add(&p->bar.word, 1);
        td_signal_wake(&p->bar);
    } else {
        td_signal_wait_change(&p->bar, phase, p->spin_ns);
    }
}

int td_pool_threads(const td_pool *p) { return p->n; }
const td_thread_plan *td_pool_plan(const td_pool *p) { return &p->plan; }
bool td_pool_pinned(const td_pool *p) { return p->pin && atomic_load(&p->pin_failures) == 0; }
