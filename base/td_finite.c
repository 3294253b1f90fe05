#include "td_finite.h"

#include <math.h>
#include <stdbool.h>

typedef uint32_t td_u32_alias __attribute__((may_alias));

/* Whether any of x[0..n) has an all-ones exponent (NaN or Inf): (e & mask) + 1 carries into bit 31
 * exactly then. A loop the compiler vectorizes when n is a constant. */
static inline bool td_any_nonfinite(const float *x, int n)
{
    const td_u32_alias *u = (const td_u32_alias *)x;
    uint32_t hit = 0;
    for (int i = 0; i < n; i++) hit |= (u[i] & 0x7f800000u) + 0x00800000u;
    return hit >> 31;
}

int64_t td_first_nonfinite(const float *x, int64_t n)
{
    enum { BLOCK = 512 };
    for (int64_t b0 = 0; b0 < n; b0 += BLOCK) {
        int len = n - b0 < BLOCK ? (int)(n - b0) : BLOCK;
        if (len == BLOCK ? !td_any_nonfinite(x + b0, BLOCK) : !td_any_nonfinite(x + b0, len)) continue;
        for (int i = 0; i < len; i++) /* the block that trips: where */
            if (!isfinite(x[b0 + i])) return b0 + i;
    }
    return -1;
}
