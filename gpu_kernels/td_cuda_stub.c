/* Linked when tandem is built without CUDA: every GPU entry point says so. */
#include "td_cuda.h"

bool td_cuda_compiled(void) { return false; }
int td_cuda_device_count(void) { return 0; }

td_status td_cuda_device_query(int index, td_cuda_device_info *out)
{
    (void)out;
    return td_fail(TD_E_DEVICE, "cuda:%d: this tandem was built without CUDA (install the CUDA toolkit and rebuild)",
                   index);
}
