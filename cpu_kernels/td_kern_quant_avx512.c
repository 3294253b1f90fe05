#include "td_kern.h"
const td_kernel td_kernels_avx512_quant[] = {{0}};
