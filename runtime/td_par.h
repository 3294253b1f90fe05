/* td_par: a piece of work split in parts over short-lived threads, for jobs that run a few times per
 * second at most (quantizing a chunk of a file being written), where a pinned pool would be overkill.
 * Part 0 runs on the calling thread; a thread that cannot start has its part run there too. Each part
 * reports its own status; the first failing part's message is kept (messages are per thread). */
#ifndef TD_PAR_H
#define TD_PAR_H

#include "td_status.h"

#define TD_PAR_MAX 256

typedef td_status (*td_par_fn)(void *ctx, int part, int n_parts);

/* Runs fn(ctx, i, n) for every part i in [0, n), n <= TD_PAR_MAX, and returns the first failure. */
td_status td_par_run(int n, td_par_fn fn, void *ctx);

#endif
