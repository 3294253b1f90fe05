/* The AMX kernels with their tile instructions emulated in software (td_amx_emul.h), against the scalar
 * reference: checks the kernels' data layouts (weight panels, B tiles, output transposes) on any CPU with
 * AVX-512 BF16, so a layout mistake shows up here rather than only on an AMX host. */
#include "test_kernels_common.h"
#include "td_cpu_features.h"

extern const td_kernel td_kernels_amx_emul[];
void td_amx_pack_btiles_emul(const void *const *x, int cnt, int64_t kt0, int64_t kt1, uint8_t *dst);

int main(void)
{
    if (!td_cpu_has_isa(TD_ISA_AVX512) || !td_cpu_features_get()->avx512bf16)
        return td_test_skip("this CPU has no AVX-512 BF16 (the emulated AMX kernels still use it around the tiles)");
    (void)tk_check_act; /* the activation routines are the AVX-512 ones, checked by test_kernels_avx512 */
    tk_pack_btiles = td_amx_pack_btiles_emul;
    tk_check_table(td_kernels_amx_emul, 100);
    return td_test_finish();
}
