// Device discovery and the test entry points of the CUDA kernels.
#include "td_cuda.h"
#include "td_cuda_check.h"

#include <cstdio>
#include <cstring>

extern "C" bool td_cuda_compiled(void) { return true; }

extern "C" int td_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // no driver or no device: not an error, just no GPU
        return 0;
    }
    return n;
}

extern "C" td_status td_cuda_device_query(int index, td_cuda_device_info *out)
{
    std::memset(out, 0, sizeof *out);
    int n = td_cuda_device_count();
    if (index < 0 || index >= n)
        return td_fail(TD_E_DEVICE, "cuda:%d does not exist (this machine has %d CUDA device%s)", index, n,
                       n == 1 ? "" : "s");
    cudaDeviceProp p;
    TD_CUDA_TRY(cudaGetDeviceProperties(&p, index));
    TD_CUDA_TRY(cudaSetDevice(index));
    size_t free_b = 0, total_b = 0;
    TD_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
    int clock_khz = 0, bus_bits = 0;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, index);
    cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, index);
    out->index = index;
    std::snprintf(out->name, sizeof out->name, "%s", p.name);
    out->sm_major = p.major;
    out->sm_minor = p.minor;
    out->total_bytes = total_b;
    out->free_bytes = free_b;
    // double data rate: two transfers per clock
    out->mem_bandwidth_gbps = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
    return TD_OK;
}
