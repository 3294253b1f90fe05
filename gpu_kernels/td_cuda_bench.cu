// Measurements the reports and the choice of mechanisms rest on: the device's copy bandwidth, and what a
// handoff to the host costs (the GPU finishes a piece of work, the host must see its result).
#include "td_cuda_impl.cuh"

#include <atomic>
#include <chrono>

namespace {

double td_seconds()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Stand-in for the work before a handoff: one pass over the values to hand over.
__global__ void td_touch_kernel(float *p, int n)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) p[i] += 1.0f;
}

// The values written straight into mapped host memory, then a flag the host spins on.
__global__ void td_copy_flag_kernel(const float *src, float *dst, int n, volatile unsigned *flag, unsigned seq)
{
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
    __threadfence_system();
    __syncthreads();
    if (threadIdx.x == 0) *flag = seq;
}

void CUDART_CB td_host_flag(void *p) { static_cast<std::atomic<unsigned> *>(p)->fetch_add(1, std::memory_order_release); }

} // namespace

extern "C" td_status td_cuda_copy_bandwidth(td_cuda *c, size_t bytes, double *gbps)
{
    td_cuda_enter(c);
    void *a = nullptr, *b = nullptr;
    TD_TRY(td_cuda_alloc(c, bytes, &a));
    td_status st = td_cuda_alloc(c, bytes, &b);
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    if (st == TD_OK && (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess))
        st = td_fail(TD_E_DEVICE, "cannot create CUDA events");
    float ms = 0.0f;
    const int reps = 10;
    if (st == TD_OK) {
        cudaMemsetAsync(a, 1, bytes, c->stream);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream); // warm-up
        cudaEventRecord(e0, c->stream);
        for (int i = 0; i < reps; i++) cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream);
        cudaEventRecord(e1, c->stream);
        if (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
            st = td_fail(TD_E_DEVICE, "the bandwidth copy failed: %s", cudaGetErrorString(cudaGetLastError()));
    }
    // a copy reads and writes every byte
    if (st == TD_OK) *gbps = 2.0 * (double)bytes * reps / (ms * 1e-3) / 1e9;
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    td_cuda_release(c, a);
    td_cuda_release(c, b);
    return st;
}

extern "C" td_status td_cuda_handoff_bench(td_cuda *c, int method, int iters, size_t bytes, double *us)
{
    td_cuda_enter(c);
    int n = (int)(bytes / sizeof(float));
    float *dev = nullptr, *host = nullptr;
    unsigned *flag = nullptr;
    cudaEvent_t ev = nullptr;
    std::atomic<unsigned> done{0};
    TD_TRY(td_cuda_alloc(c, bytes, reinterpret_cast<void **>(&dev)));
    td_status st = TD_OK;
    if (cudaHostAlloc(reinterpret_cast<void **>(&host), bytes, cudaHostAllocMapped | cudaHostAllocPortable) != cudaSuccess ||
        cudaHostAlloc(reinterpret_cast<void **>(&flag), 64, cudaHostAllocMapped | cudaHostAllocPortable) != cudaSuccess ||
        cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess)
        st = td_fail(TD_E_DEVICE, "handoff bench: %s", cudaGetErrorString(cudaGetLastError()));
    if (st == TD_OK) {
        *flag = 0;
        cudaMemsetAsync(dev, 0, bytes, c->stream);
        cudaStreamSynchronize(c->stream);
        double t0 = 0.0;
        for (int i = -200; i < iters; i++) { // 200 rounds of warm-up (clocks)
            if (i == 0) t0 = td_seconds();
            td_touch_kernel<<<8, 256, 0, c->stream>>>(dev, n);
            switch (method) {
            case 0: // copy, then wait for the stream
                cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, c->stream);
                cudaStreamSynchronize(c->stream);
                break;
            case 1: // copy, then wait for an event after it
                cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, c->stream);
                cudaEventRecord(ev, c->stream);
                cudaEventSynchronize(ev);
                break;
            case 2: { // a kernel writes the values and a flag into mapped memory; the host spins
                unsigned seq = (unsigned)(i + 100);
                td_copy_flag_kernel<<<1, 256, 0, c->stream>>>(dev, host, n, flag, seq);
                while (*reinterpret_cast<volatile unsigned *>(flag) != seq) {
                }
                break;
            }
            default: { // copy, then a host function on the stream raises a flag; the host spins
                unsigned want = done.load() + 1;
                cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, c->stream);
                cudaLaunchHostFunc(c->stream, td_host_flag, &done);
                while (done.load(std::memory_order_acquire) != want) {
                }
            }
            }
        }
        *us = (td_seconds() - t0) / iters * 1e6;
        if (cudaStreamSynchronize(c->stream) != cudaSuccess)
            st = td_fail(TD_E_DEVICE, "handoff bench: %s", cudaGetErrorString(cudaGetLastError()));
    }
    if (ev) cudaEventDestroy(ev);
    if (host) cudaFreeHost(host);
    if (flag) cudaFreeHost(flag);
    td_cuda_release(c, dev);
    return st;
}
