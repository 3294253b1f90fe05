/* The AVX2 kernels against the scalar reference (skipped on CPUs without AVX2). */
#include "test_kernels_common.h"

int main(void)
{
    if (!td_cpu_has_isa(TD_ISA_AVX2)) return td_test_skip("this CPU has no AVX2");
    tk_check_act(TD_ISA_AVX2);
    tk_check_table(td_kernels_avx2_float, 1 << 20);
    tk_check_table(td_kernels_avx2_quant, 1 << 20);
    return td_test_finish();
}
