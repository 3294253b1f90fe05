#include "td_par.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

typedef struct td_par_part {
    td_par_fn fn;
    void *ctx;
    int part, n;
    td_status st;
    char msg[512]; /* a failing part's own message */
} td_par_part;

static void *td_par_part_run(void *arg)
{
    td_par_part *p = arg;
    p->st = p->fn(p->ctx, p->part, p->n);
    if (p->st != TD_OK) snprintf(p->msg, sizeof p->msg, "%s", td_errmsg());
    return NULL;
}

td_status td_par_run(int n, td_par_fn fn, void *ctx)
{
    TD_ASSERT(n >= 1 && n <= TD_PAR_MAX);
    td_par_part parts[TD_PAR_MAX];
    pthread_t tid[TD_PAR_MAX];
    bool started[TD_PAR_MAX] = {false};
    for (int i = 0; i < n; i++) {
        parts[i] = (td_par_part){.fn = fn, .ctx = ctx, .part = i, .n = n};
        if (i > 0) started[i] = pthread_create(&tid[i], NULL, td_par_part_run, &parts[i]) == 0;
    }
    for (int i = 1; i < n; i++)
        if (!started[i]) td_par_part_run(&parts[i]);
    td_par_part_run(&parts[0]);
    for (int i = 1; i < n; i++)
        if (started[i]) pthread_join(tid[i], NULL);
    for (int i = 0; i < n; i++)
        if (parts[i].st != TD_OK) return td_fail(parts[i].st, "%s", parts[i].msg);
    return TD_OK;
}
