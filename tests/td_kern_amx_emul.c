/* td_kern_amx.c compiled with its tile instructions emulated in software (td_amx_emul.h), for
 * test_kernels_amx_emul on machines without AMX. */
#ifndef TD_AMX_EMULATE
#define TD_AMX_EMULATE 1
#endif
#include "../cpu_kernels/td_kern_amx.c"
