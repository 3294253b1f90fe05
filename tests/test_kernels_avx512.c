/* The AVX-512 kernels against the scalar reference (skipped on CPUs without AVX-512 BW/VNNI). */
#include "test_kernels_common.h"

int main(void)
{
    if (!td_cpu_has_isa(TD_ISA_AVX512)) return td_test_skip("this CPU (or its OS) has no AVX-512 BW/VNNI");
    tk_check_act(TD_ISA_AVX512);
    tk_check_table(td_kernels_avx512_float, 1 << 20);
    tk_check_table(td_kernels_avx512_quant, 1 << 20);
    return td_test_finish();
}
