/* td_clock: monotonic wall time in seconds, for timing runs and benchmarks (one definition, not one per
 * file). */
#ifndef TD_CLOCK_H
#define TD_CLOCK_H

#include <time.h>

static inline double td_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
