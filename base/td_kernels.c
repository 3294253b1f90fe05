#include "td_kernels.h"

#include <strings.h>

static const char *const td_kernel_names[TD_KERNELS_COUNT] = {"auto", "ref", "avx2", "avx512", "amx"};

const char *td_kernels_name(td_kernels k) { return (k >= 0 && k < TD_KERNELS_COUNT) ? td_kernel_names[k] : "?"; }

bool td_kernels_from_name(const char *name, td_kernels *out)
{
    for (int k = 0; k < TD_KERNELS_COUNT; k++) {
        if (strcasecmp(name, td_kernel_names[k]) == 0) {
            *out = (td_kernels)k;
            return true;
        }
    }
    return false;
}
