#include "td_kern.h"
const td_kernel td_kernels_amx[] = {{0}};
