// The context of the GPU operations: one device, one stream, one cuBLAS handle, device memory counted
// against a budget, copies, events and the error state.
#include "td_cuda_impl.cuh"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

static const char *td_cublas_status_name(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized (no usable device or driver)";
    case CUBLAS_STATUS_ALLOC_FAILED: return "out of device memory";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "the device lacks a feature this product needs";
    default: return "failed";
    }
}

extern "C" td_status td_cuda_create(int device, uint64_t budget, td_cuda **out)
{
    *out = nullptr;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        cudaError_t e = cudaGetLastError();
        return td_fail(TD_E_DEVICE, "cuda:%d: no CUDA device is usable here (%s)", device,
                       e == cudaSuccess ? "none found" : cudaGetErrorString(e));
    }
    if (device < 0 || device >= n)
        return td_fail(TD_E_DEVICE, "cuda:%d does not exist: this machine has %d CUDA device%s", device, n, n == 1 ? "" : "s");
    td_cuda *c = new (std::nothrow) td_cuda();
    if (!c) return td_fail(TD_E_NOMEM, "out of memory");
    c->device = device;
    c->budget = budget;
    c->n_sm = 1;
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        delete c;
        return td_fail(TD_E_DEVICE, "cuda:%d: cannot start (%s); is the driver older than this build's CUDA %d.%d?",
                       device, cudaGetErrorString(e), CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
    }
    cublasStatus_t bs = cublasCreate(&c->blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(c->blas, c->stream);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        cudaStreamDestroy(c->stream);
        delete c;
        return td_fail(TD_E_DEVICE, "cuda:%d: cuBLAS cannot start: %s", device, td_cublas_status_name(bs));
    }
    // fp32 products stay fp32 (no TF32): the exact path must be exact
    cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH);
    cudaDeviceGetAttribute(&c->n_sm, cudaDevAttrMultiProcessorCount, device);
    if (c->n_sm < 1) c->n_sm = 1;
    if (cudaEventCreate(&c->seg_start) != cudaSuccess || cudaEventCreate(&c->seg_end) != cudaSuccess) {
        cudaGetLastError();
        td_cuda_free(c);
        return td_fail(TD_E_DEVICE, "cuda:%d: cannot create CUDA events", device);
    }
    *out = c;
    return TD_OK;
}

extern "C" void td_cuda_free(td_cuda *c)
{
    if (!c) return;
    td_cuda_enter(c);
    cudaStreamSynchronize(c->stream);
    if (c->w_slab) td_cuda_release(c, c->w_slab);
    if (c->x_bf16) td_cuda_release(c, c->x_bf16);
    if (c->seg_start) cudaEventDestroy(c->seg_start);
    if (c->seg_end) cudaEventDestroy(c->seg_end);
    cublasDestroy(c->blas);
    cudaStreamDestroy(c->stream);
    delete c;
}

extern "C" int td_cuda_index(const td_cuda *c) { return c->device; }

void td_cuda_enter(const td_cuda *c)
{
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess || cur != c->device) cudaSetDevice(c->device);
}

void td_cuda_work(td_cuda *c)
{
    td_cuda_enter(c);
    if (c->seg_open) return;
    c->seg_open = cudaEventRecord(c->seg_start, c->stream) == cudaSuccess;
}

extern "C" double td_cuda_busy_seconds(const td_cuda *c) { return c->busy_s; }

// cudaFree is not told the size, so the budget's bookkeeping keeps a table of live allocations.
namespace {
struct td_alloc_rec {
    void *p;
    size_t bytes;
};
struct td_alloc_table {
    td_alloc_rec *v = nullptr;
    size_t n = 0, cap = 0;
};
td_alloc_table g_allocs; // all contexts of the process (looked up by pointer)
std::mutex g_allocs_mu;
} // namespace

static bool td_track(void *p, size_t bytes)
{
    std::lock_guard<std::mutex> lock(g_allocs_mu);
    if (g_allocs.n == g_allocs.cap) {
        size_t cap = g_allocs.cap ? 2 * g_allocs.cap : 256;
        td_alloc_rec *v = static_cast<td_alloc_rec *>(std::realloc(g_allocs.v, cap * sizeof *v));
        if (!v) return false;
        g_allocs.v = v;
        g_allocs.cap = cap;
    }
    g_allocs.v[g_allocs.n++] = {p, bytes};
    return true;
}

static size_t td_untrack(void *p)
{
    std::lock_guard<std::mutex> lock(g_allocs_mu);
    for (size_t i = g_allocs.n; i-- > 0;)
        if (g_allocs.v[i].p == p) {
            size_t b = g_allocs.v[i].bytes;
            g_allocs.v[i] = g_allocs.v[--g_allocs.n];
            return b;
        }
    return 0;
}

static const char *td_gib(uint64_t b, char *buf, size_t cap)
{
    if (b >= (1ull << 30)) std::snprintf(buf, cap, "%.2f GiB", (double)b / (double)(1ull << 30));
    else std::snprintf(buf, cap, "%.1f MiB", (double)b / (double)(1ull << 20));
    return buf;
}

extern "C" td_status td_cuda_alloc(td_cuda *c, size_t bytes, void **out)
{
    *out = nullptr;
    if (bytes == 0) bytes = 1;
    char a[32], b[32], d[32];
    if (c->budget && c->allocated + bytes > c->budget)
        return td_fail(TD_E_NOMEM,
                       "cuda:%d: %s more would exceed the plan's budget for this GPU (%s, %s in use): the plan does "
                       "not fit; move modules to the CPU in the rules, or give a larger --gpu-mem",
                       c->device, td_gib(bytes, a, sizeof a), td_gib(c->budget, b, sizeof b),
                       td_gib(c->allocated, d, sizeof d));
    td_cuda_enter(c);
    cudaError_t e = cudaMalloc(out, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError(); // an allocation failure is not sticky
        *out = nullptr;
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        return td_fail(TD_E_NOMEM, "cuda:%d: cannot allocate %s of device memory (%s free of %s): %s", c->device,
                       td_gib(bytes, a, sizeof a), td_gib(fr, b, sizeof b), td_gib(tot, d, sizeof d),
                       cudaGetErrorString(e));
    }
    if (!td_track(*out, bytes)) {
        cudaFree(*out);
        *out = nullptr;
        return td_fail(TD_E_NOMEM, "out of memory");
    }
    c->allocated += bytes;
    return TD_OK;
}

extern "C" void td_cuda_release(td_cuda *c, void *p)
{
    if (!p) return;
    c->allocated -= td_untrack(p);
    cudaFree(p);
}

extern "C" uint64_t td_cuda_allocated(const td_cuda *c) { return c->allocated; }
extern "C" uint64_t td_cuda_budget(const td_cuda *c) { return c->budget; }

extern "C" td_status td_cuda_mem_info(td_cuda *c, uint64_t *free_bytes, uint64_t *total_bytes)
{
    size_t f = 0, t = 0;
    td_cuda_enter(c);
    TD_CUDA_TRY(cudaMemGetInfo(&f, &t));
    *free_bytes = f;
    *total_bytes = t;
    return TD_OK;
}

extern "C" td_status td_cuda_host_alloc(size_t bytes, void **out)
{
    cudaError_t e = cudaHostAlloc(out, bytes ? bytes : 1, cudaHostAllocPortable);
    if (e != cudaSuccess) {
        cudaGetLastError();
        *out = nullptr;
        return td_fail(TD_E_NOMEM, "cannot allocate %zu bytes of page-locked host memory: %s", bytes,
                       cudaGetErrorString(e));
    }
    return TD_OK;
}

extern "C" void td_cuda_host_release(void *p)
{
    if (p) cudaFreeHost(p);
}

static td_status td_copy2d(td_cuda *c, void *dst, size_t dpitch, const void *src, size_t spitch, size_t row_bytes,
                           size_t rows, cudaMemcpyKind kind)
{
    if (!rows || !row_bytes) return TD_OK;
    td_cuda_work(c);
    if (rows == 1 || (dpitch == row_bytes && spitch == row_bytes))
        TD_CUDA_TRY(cudaMemcpyAsync(dst, src, row_bytes * rows, kind, c->stream));
    else
        TD_CUDA_TRY(cudaMemcpy2DAsync(dst, dpitch, src, spitch, row_bytes, rows, kind, c->stream));
    return TD_OK;
}

extern "C" td_status td_cuda_h2d(td_cuda *c, void *dst, size_t dpitch, const void *src, size_t spitch, size_t row_bytes,
                                 size_t rows)
{
    return td_copy2d(c, dst, dpitch, src, spitch, row_bytes, rows, cudaMemcpyHostToDevice);
}

extern "C" td_status td_cuda_d2h(td_cuda *c, void *dst, size_t dpitch, const void *src, size_t spitch, size_t row_bytes,
                                 size_t rows)
{
    return td_copy2d(c, dst, dpitch, src, spitch, row_bytes, rows, cudaMemcpyDeviceToHost);
}

extern "C" td_status td_cuda_d2d(td_cuda *c, void *dst, size_t dpitch, const void *src, size_t spitch, size_t row_bytes,
                                 size_t rows)
{
    return td_copy2d(c, dst, dpitch, src, spitch, row_bytes, rows, cudaMemcpyDeviceToDevice);
}

extern "C" td_status td_cuda_memset(td_cuda *c, void *dst, int value, size_t bytes)
{
    td_cuda_work(c);
    TD_CUDA_TRY(cudaMemsetAsync(dst, value, bytes, c->stream));
    return TD_OK;
}

extern "C" td_status td_cuda_upload(td_cuda *c, void *dst, const void *src, size_t bytes)
{
    td_cuda_enter(c);
    TD_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
    TD_CUDA_TRY(cudaStreamSynchronize(c->stream));
    return TD_OK;
}

extern "C" td_status td_cuda_sync(td_cuda *c)
{
    td_cuda_enter(c);
    bool timed = c->seg_open && cudaEventRecord(c->seg_end, c->stream) == cudaSuccess;
    cudaError_t e = cudaStreamSynchronize(c->stream);
    float ms = 0.0f;
    if (timed && e == cudaSuccess && cudaEventElapsedTime(&ms, c->seg_start, c->seg_end) == cudaSuccess)
        c->busy_s += ms * 1e-3;
    c->seg_open = false;
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess)
        return td_fail(TD_E_DEVICE, "cuda:%d: %s (%s)", c->device, cudaGetErrorString(e), cudaGetErrorName(e));
    return TD_OK;
}

extern "C" td_status td_cuda_check(td_cuda *c)
{
    td_cuda_enter(c);
    cudaError_t e = cudaPeekAtLastError();
    if (e == cudaSuccess) {
        e = cudaStreamQuery(c->stream);
        if (e == cudaErrorNotReady) e = cudaSuccess;
    }
    if (e != cudaSuccess)
        return td_fail(TD_E_DEVICE, "cuda:%d: %s (%s)", c->device, cudaGetErrorString(e), cudaGetErrorName(e));
    return TD_OK;
}

struct td_cuda_event {
    cudaEvent_t ev;
};

extern "C" td_status td_cuda_event_create(td_cuda *c, td_cuda_event **out)
{
    (void)c;
    td_cuda_event *e = new (std::nothrow) td_cuda_event();
    if (!e) return td_fail(TD_E_NOMEM, "out of memory");
    cudaError_t r = cudaEventCreateWithFlags(&e->ev, cudaEventDisableTiming);
    if (r != cudaSuccess) {
        delete e;
        return td_fail(TD_E_DEVICE, "cannot create a CUDA event: %s", cudaGetErrorString(r));
    }
    *out = e;
    return TD_OK;
}

extern "C" void td_cuda_event_free(td_cuda_event *e)
{
    if (!e) return;
    cudaEventDestroy(e->ev);
    delete e;
}

extern "C" td_status td_cuda_event_record(td_cuda *c, td_cuda_event *e)
{
    td_cuda_enter(c);
    TD_CUDA_TRY(cudaEventRecord(e->ev, c->stream));
    return TD_OK;
}

extern "C" td_status td_cuda_event_wait_host(td_cuda_event *e)
{
    TD_CUDA_TRY(cudaEventSynchronize(e->ev));
    return TD_OK;
}

__global__ void td_fault_kernel(int *p) { *p = 1; }

extern "C" td_status td_cuda_inject_fault(td_cuda *c)
{
    // a write far outside any allocation: an illegal address, raised when the kernel runs
    td_cuda_enter(c);
    td_fault_kernel<<<1, 1, 0, c->stream>>>(reinterpret_cast<int *>(static_cast<uintptr_t>(0x10)));
    TD_CUDA_LAUNCHED("fault");
    return TD_OK;
}
