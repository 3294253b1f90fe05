// Row operations: RMSNorm, SiLU-mul, residual add, the routed experts' weighted sum, the MoE router, and
// the cache rows of MLA (normed latent, roped key, roped query tails). Each follows the CPU reference's
// formula (cpu_kernels/td_ops.c, runtime/td_router.c, runtime/td_rope.c) in the same float operations.
#include "td_cuda_impl.cuh"

#include <cuda_bf16.h>

namespace {

constexpr int TD_ROW_THREADS = 256;

// The sum of squares of n values in double (each thread a stride, then the block).
__device__ double td_block_sumsq(const float *x, int64_t n)
{
    __shared__ double part[TD_ROW_THREADS / 32];
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += (double)x[i] * x[i];
    s = td_warp_sum_d(s);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;
    __syncthreads();
    double total = 0.0;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) total += part[w];
    __syncthreads(); // part may be reused by the caller's next reduction
    return total;
}

__global__ void td_rmsnorm_kernel(const float *x, int64_t ldx, const float *w, float *y, int64_t ldy, int64_t width,
                                  double eps)
{
    const float *xr = x + blockIdx.x * ldx;
    float *yr = y + blockIdx.x * ldy;
    double ss = td_block_sumsq(xr, width);
    float inv = (float)(1.0 / sqrt(ss / (double)width + eps));
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) yr[i] = __fmul_rn(__fmul_rn(xr[i], inv), w[i]);
}

__global__ void td_silu_mul_kernel(float *g, const float *u, int64_t ld, int64_t n, int64_t width)
{
    int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= n * width) return;
    int64_t t = id / width, i = id - t * width;
    float v = g[t * ld + i];
    g[t * ld + i] = __fmul_rn(__fdiv_rn(v, __fadd_rn(1.0f, expf(-v))), u[t * ld + i]);
}

__global__ void td_add_kernel(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t n, int64_t width)
{
    int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= n * width) return;
    int64_t t = id / width, i = id - t * width;
    dst[t * ldd + i] = __fadd_rn(dst[t * ldd + i], src[t * lds + i]);
}

__global__ void td_moe_combine_kernel(const float *y, const float *w, int64_t ldw, float *out, int64_t ldo, int64_t n,
                                      int k, int64_t H)
{
    int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= n * H) return;
    int64_t t = id / H, i = id - t * H;
    float acc = 0.0f;
    for (int j = 0; j < k; j++) acc = fmaf(w[t * ldw + j], y[(t * k + j) * H + i], acc);
    out[t * ldo + i] = acc;
}

// ------------------------------------------------------------------ router

// The largest v[e] (e < n) not yet taken, ties to the lower index (td_router.c's td_topk); -1 if none.
__device__ int td_warp_argmax(const float *v, const int *taken, int n)
{
    int lane = threadIdx.x & 31, bi = -1;
    float bv = 0.0f;
    for (int e = lane; e < n; e += 32) {
        if (taken[e]) continue;
        if (bi < 0 || v[e] > bv) bv = v[e], bi = e;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, off);
        int oi = __shfl_xor_sync(0xffffffffu, bi, off);
        if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) bv = ov, bi = oi;
    }
    return bi;
}

// One warp per row. Shared: scores [E], choice [E], taken [E], group scores [G], groups taken [G].
__global__ void td_route_kernel(td_cuda_router p, const float *logits, int64_t ld, int32_t *ids, int64_t ldi,
                                float *weights, int64_t ldw)
{
    extern __shared__ float sh[];
    const int E = p.n_experts, G = p.n_group, lane = threadIdx.x;
    float *sc = sh, *ch = sc + E, *gs = ch + E;
    int *taken = reinterpret_cast<int *>(gs + G), *gtaken = taken + E;
    const float *lg = logits + blockIdx.x * ld;
    if (p.scoring == 0) {
        for (int e = lane; e < E; e += 32) sc[e] = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-lg[e])));
    } else {
        float mx = -INFINITY;
        for (int e = lane; e < E; e += 32) mx = fmaxf(mx, lg[e]);
        mx = td_warp_max(mx);
        double sum = 0.0;
        for (int e = lane; e < E; e += 32) {
            sc[e] = expf(__fsub_rn(lg[e], mx));
            sum += sc[e];
        }
        float inv = (float)(1.0 / td_warp_sum_d(sum));
        for (int e = lane; e < E; e += 32) sc[e] = __fmul_rn(sc[e], inv);
    }
    for (int e = lane; e < E; e += 32) {
        ch[e] = p.bias ? __fadd_rn(sc[e], p.bias[e]) : sc[e];
        taken[e] = 0;
    }
    __syncwarp();
    if (p.method != 2 && G > 1) {
        int per = E / G;
        for (int g = lane; g < G; g += 32) {
            const float *c = (p.method == 0 ? ch : sc) + g * per;
            if (p.method == 0) { // the sum of the group's two best choices (the first of equals first)
                int b0 = 0;
                for (int i = 1; i < per; i++)
                    if (c[i] > c[b0]) b0 = i;
                int b1 = -1;
                for (int i = 0; i < per; i++)
                    if (i != b0 && (b1 < 0 || c[i] > c[b1])) b1 = i;
                gs[g] = b1 < 0 ? c[b0] : __fadd_rn(c[b0], c[b1]);
            } else {
                float mx = c[0];
                for (int i = 1; i < per; i++) mx = c[i] > mx ? c[i] : mx;
                gs[g] = mx;
            }
            gtaken[g] = 0;
        }
        __syncwarp();
        for (int q = 0; q < p.topk_group; q++) {
            int g = td_warp_argmax(gs, gtaken, G);
            if (lane == 0 && g >= 0) gtaken[g] = 1;
            __syncwarp();
        }
        for (int e = lane; e < E; e += 32)
            if (!gtaken[e / per]) ch[e] = -INFINITY;
        __syncwarp();
    }
    int32_t *id_row = ids + blockIdx.x * ldi;
    for (int j = 0; j < p.k; j++) {
        int e = td_warp_argmax(ch, taken, E);
        if (lane == 0) {
            taken[e] = 1;
            id_row[j] = e;
        }
        __syncwarp();
    }
    if (lane == 0) {
        float *w = weights + blockIdx.x * ldw;
        double sum = 0.0;
        for (int j = 0; j < p.k; j++) sum += sc[id_row[j]];
        for (int j = 0; j < p.k; j++) {
            double v = sc[id_row[j]];
            if (p.norm_topk) v /= sum + 1e-20;
            w[j] = (float)(v * p.scaling);
        }
    }
}

// ------------------------------------------------------------------ MLA cache rows

__device__ __forceinline__ void td_rope_pair(float *a, float *b, float c, float s)
{
    float x0 = *a, x1 = *b;
    *a = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
    *b = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
}

__global__ void td_kv_store_kernel(td_cuda_kv kv, const float *kva, int64_t ldkva, const float *a_norm, double eps,
                                   const float *cos_t, const float *sin_t, int64_t pos0, float *q, int64_t ldq,
                                   int64_t nh, int64_t q_hstride, int64_t q_rope_off)
{
    const int64_t t = blockIdx.x, pos = pos0 + t, r = kv.r, dr = kv.dr, half = dr / 2;
    const float *row = kva + t * ldkva;
    const float *cs = cos_t + pos * half, *sn = sin_t + pos * half;
    double ss = td_block_sumsq(row, r);
    float inv = (float)(1.0 / sqrt(ss / (double)r + eps));
    for (int64_t i = threadIdx.x; i < r; i += blockDim.x) {
        float v = __fmul_rn(__fmul_rn(row[i], inv), a_norm[i]);
        if (kv.bf16) static_cast<__nv_bfloat16 *>(kv.ckv)[pos * r + i] = __float2bfloat16_rn(v);
        else static_cast<float *>(kv.ckv)[pos * r + i] = v;
    }
    for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
        float a = row[r + 2 * i], b = row[r + 2 * i + 1];
        td_rope_pair(&a, &b, cs[i], sn[i]);
        if (kv.bf16) {
            __nv_bfloat16 *kr = static_cast<__nv_bfloat16 *>(kv.krope) + pos * dr;
            kr[2 * i] = __float2bfloat16_rn(a);
            kr[2 * i + 1] = __float2bfloat16_rn(b);
        } else {
            float *kr = static_cast<float *>(kv.krope) + pos * dr;
            kr[2 * i] = a;
            kr[2 * i + 1] = b;
        }
    }
    for (int64_t id = threadIdx.x; id < nh * half; id += blockDim.x) {
        int64_t h = id / half, i = id - h * half;
        float *qq = q + t * ldq + h * q_hstride + q_rope_off;
        td_rope_pair(&qq[2 * i], &qq[2 * i + 1], cs[i], sn[i]);
    }
}

} // namespace

extern "C" td_status td_cuda_rmsnorm(td_cuda *c, const float *x, int64_t ldx, const float *w, float *y, int64_t ldy,
                                     int64_t n, int64_t width, double eps)
{
    td_cuda_work(c);
    if (n <= 0) return TD_OK;
    td_rmsnorm_kernel<<<(unsigned)n, TD_ROW_THREADS, 0, c->stream>>>(x, ldx, w, y, ldy, width, eps);
    TD_CUDA_LAUNCHED("rmsnorm");
    return TD_OK;
}

extern "C" td_status td_cuda_silu_mul(td_cuda *c, float *g, const float *u, int64_t ld, int64_t n, int64_t width)
{
    td_cuda_work(c);
    if (n * width <= 0) return TD_OK;
    td_silu_mul_kernel<<<td_blocks_for(n * width, 256), 256, 0, c->stream>>>(g, u, ld, n, width);
    TD_CUDA_LAUNCHED("silu_mul");
    return TD_OK;
}

extern "C" td_status td_cuda_add(td_cuda *c, float *dst, int64_t ldd, const float *src, int64_t lds, int64_t n,
                                 int64_t width)
{
    td_cuda_work(c);
    if (n * width <= 0) return TD_OK;
    td_add_kernel<<<td_blocks_for(n * width, 256), 256, 0, c->stream>>>(dst, ldd, src, lds, n, width);
    TD_CUDA_LAUNCHED("add");
    return TD_OK;
}

extern "C" td_status td_cuda_moe_combine(td_cuda *c, const float *y, const float *w, int64_t ldw, float *out,
                                         int64_t ldo, int64_t n, int k, int64_t H)
{
    td_cuda_work(c);
    if (n * H <= 0) return TD_OK;
    td_moe_combine_kernel<<<td_blocks_for(n * H, 256), 256, 0, c->stream>>>(y, w, ldw, out, ldo, n, k, H);
    TD_CUDA_LAUNCHED("moe_combine");
    return TD_OK;
}

extern "C" td_status td_cuda_route(td_cuda *c, const td_cuda_router *r, const float *logits, int64_t ld, int64_t n,
                                   int32_t *ids, int64_t ldi, float *weights, int64_t ldw)
{
    td_cuda_work(c);
    if (n <= 0) return TD_OK;
    int G = r->n_group > 1 ? r->n_group : 1;
    if (r->k < 1 || r->k > r->n_experts || (r->method != 2 && r->n_group > 1 && r->n_experts % r->n_group) ||
        r->topk_group > G)
        return td_fail(TD_E_ARG, "td_cuda_route: %d experts, top-%d, %d groups keeping %d is not a valid routing",
                       r->n_experts, r->k, r->n_group, r->topk_group);
    size_t shared = (size_t)(2 * r->n_experts + G) * sizeof(float) + (size_t)(r->n_experts + G) * sizeof(int);
    if (shared > 48 * 1024) return td_fail(TD_E_UNSUPPORTED, "td_cuda_route: %d experts are too many", r->n_experts);
    td_route_kernel<<<(unsigned)n, 32, shared, c->stream>>>(*r, logits, ld, ids, ldi, weights, ldw);
    TD_CUDA_LAUNCHED("route");
    return TD_OK;
}

extern "C" td_status td_cuda_kv_store(td_cuda *c, const td_cuda_kv *kv, const float *kva, int64_t ldkva,
                                      const float *a_norm, double eps, const float *cos_t, const float *sin_t,
                                      int64_t pos0, int64_t n, float *q, int64_t ldq, int64_t nh, int64_t q_hstride,
                                      int64_t q_rope_off)
{
    td_cuda_work(c);
    if (n <= 0) return TD_OK;
    td_kv_store_kernel<<<(unsigned)n, TD_ROW_THREADS, 0, c->stream>>>(*kv, kva, ldkva, a_norm, eps, cos_t, sin_t, pos0, q,
                                                                       ldq, nh, q_hstride, q_rope_off);
    TD_CUDA_LAUNCHED("kv_store");
    return TD_OK;
}
