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

td_status td_cuda_dequant_rows(int type, const void *host_src, size_t src_bytes, int64_t n_rows, int64_t cols,
                               float *host_dst)
{
    (void)type, (void)host_src, (void)src_bytes, (void)n_rows, (void)cols, (void)host_dst;
    return td_fail(TD_E_DEVICE, "this tandem was built without CUDA");
}

td_status td_cuda_gemv(int type, const void *host_w, size_t w_bytes, int64_t rows, int64_t cols, const float *host_x,
                       float *host_y)
{
    (void)type, (void)host_w, (void)w_bytes, (void)rows, (void)cols, (void)host_x, (void)host_y;
    return td_fail(TD_E_DEVICE, "this tandem was built without CUDA");
}
