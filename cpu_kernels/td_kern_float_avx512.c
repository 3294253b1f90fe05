#include "td_kern.h"
const td_kernel td_kernels_avx512_float[] = {{0}};
