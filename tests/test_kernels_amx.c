/* The AMX kernels against the scalar reference (skipped where the CPU lacks AMX or the kernel refuses
 * the tile state). */
#include "test_kernels_common.h"

int main(void)
{
    if (!td_cpu_has_isa(TD_ISA_AMX)) return td_test_skip("this CPU has no AMX (or the kernel refused the tile state)");
    tk_check_act(TD_ISA_AMX);
    tk_pack_btiles = td_amx_pack_btiles;
    tk_check_table(td_kernels_amx, 1 << 20);
    return td_test_finish();
}
