// MLA attention in the absorbed form over the latent cache, split over the context (flash-decoding).
//
// A block takes one split of the context for one query row and 16 heads (8 warps, two heads each). It
// walks its keys in tiles held in shared memory, each key a cache row of c_kv [r] and the roped key
// [dr], read once for all 16 heads. For each tile a warp scores its heads against the tile's keys (lane j
// keeps key j's score), then updates the running maximum, the sum of exponentials and the weighted sum
// of c_kv (lane i owns elements i, i+32, ...) in one rescale per tile. A second kernel combines the
// splits. Memory is the partial sums, independent of the context's square; the same kernel serves
// prefill (rows in groups of 8), where the decompressed form would need K and V of every position for
// every head (128 KB a position for DeepSeek-V3 in fp32: 4 GiB at 32K).
#include "td_cuda_impl.cuh"

#include <cuda_bf16.h>

namespace {

constexpr int TD_MLA_HEADS = 16;  // heads per block
constexpr int TD_MLA_MAX_SPLITS = 32;
constexpr int TD_MLA_RL = TD_CUDA_MLA_MAX_R / 32;   // c_kv elements per lane
constexpr int TD_MLA_DL = TD_CUDA_MLA_MAX_DR / 32;  // rope elements per lane
constexpr int TD_MLA_ROW = TD_CUDA_MLA_MAX_R + TD_CUDA_MLA_MAX_DR;

__device__ __forceinline__ float td_f(float v) { return v; }
__device__ __forceinline__ float td_f(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class KV, int KT> __global__ void __launch_bounds__(256) td_mla_kernel(td_cuda_mla a, int64_t split_len, int splits)
{
    __shared__ KV tile[KT * TD_MLA_ROW];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, s = blockIdx.x;
    const int64_t t = blockIdx.z, r = a.kv.r, dr = a.kv.dr, rw = r + dr, nh = a.nh;
    const int64_t len = a.pos0 + t + 1, k0 = (int64_t)s * split_len;
    const int64_t k1 = k0 + split_len < len ? k0 + split_len : len;
    const KV *ckv = static_cast<const KV *>(a.kv.ckv), *krope = static_cast<const KV *>(a.kv.krope);
    float ql[2][TD_MLA_RL], qr[2][TD_MLA_DL], acc[2][TD_MLA_RL], m[2], l[2];
    int64_t h[2];
    bool hv[2];
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        h[hh] = (int64_t)blockIdx.y * TD_MLA_HEADS + warp * 2 + hh;
        hv[hh] = h[hh] < nh;
        m[hh] = -INFINITY;
        l[hh] = 0.0f;
        const float *qlh = a.qlat + t * a.ldql + h[hh] * r;
        const float *qrh = a.q + t * a.ldq + h[hh] * a.q_hstride + a.q_rope_off;
#pragma unroll
        for (int i = 0; i < TD_MLA_RL; i++) {
            int64_t e = lane + 32 * i;
            ql[hh][i] = hv[hh] && e < r ? qlh[e] : 0.0f;
            acc[hh][i] = 0.0f;
        }
#pragma unroll
        for (int i = 0; i < TD_MLA_DL; i++) {
            int64_t e = lane + 32 * i;
            qr[hh][i] = hv[hh] && e < dr ? qrh[e] : 0.0f;
        }
    }
    for (int64_t kb = k0; kb < k1; kb += KT) {
        const int nk = (int)(k1 - kb < KT ? k1 - kb : KT);
        __syncthreads(); // the previous tile is no longer read
        for (int64_t id = threadIdx.x; id < nk * rw; id += blockDim.x) {
            int64_t j = id / rw, e = id - j * rw;
            tile[j * rw + e] = e < r ? ckv[(kb + j) * r + e] : krope[(kb + j) * dr + (e - r)];
        }
        __syncthreads();
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            if (!hv[hh]) continue; // uniform in the warp
            float sj = -INFINITY;
            for (int j = 0; j < nk; j++) {
                const KV *kr = tile + j * rw;
                float p = 0.0f;
#pragma unroll
                for (int i = 0; i < TD_MLA_RL; i++) {
                    int64_t e = lane + 32 * i;
                    if (e < r) p = fmaf(ql[hh][i], td_f(kr[e]), p);
                }
#pragma unroll
                for (int i = 0; i < TD_MLA_DL; i++) {
                    int64_t e = lane + 32 * i;
                    if (e < dr) p = fmaf(qr[hh][i], td_f(kr[r + e]), p);
                }
                p = td_warp_sum(p) * a.scale;
                if (lane == j) sj = p;
            }
            float mnew = fmaxf(m[hh], td_warp_max(sj));
            float corr = expf(m[hh] - mnew);
            float pj = lane < nk ? expf(sj - mnew) : 0.0f;
            l[hh] = l[hh] * corr + td_warp_sum(pj);
#pragma unroll
            for (int i = 0; i < TD_MLA_RL; i++) acc[hh][i] *= corr;
            for (int j = 0; j < nk; j++) {
                float pb = __shfl_sync(0xffffffffu, pj, j);
                const KV *kr = tile + j * rw;
#pragma unroll
                for (int i = 0; i < TD_MLA_RL; i++) {
                    int64_t e = lane + 32 * i;
                    if (e < r) acc[hh][i] = fmaf(pb, td_f(kr[e]), acc[hh][i]);
                }
            }
            m[hh] = mnew;
        }
    }
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        if (!hv[hh]) continue;
        float *pp = a.part + ((t * nh + h[hh]) * splits + s) * (r + 2);
        if (lane == 0) {
            pp[0] = m[hh];
            pp[1] = l[hh];
        }
#pragma unroll
        for (int i = 0; i < TD_MLA_RL; i++) {
            int64_t e = lane + 32 * i;
            if (e < r) pp[2 + e] = acc[hh][i];
        }
    }
}

// One block per (head, row): the splits' partial sums rescaled to their common maximum.
__global__ void td_mla_combine_kernel(td_cuda_mla a, int splits)
{
    __shared__ float wsplit[TD_MLA_MAX_SPLITS];
    __shared__ float inv_l;
    const int64_t h = blockIdx.x, t = blockIdx.y, r = a.kv.r;
    const float *pp = a.part + ((t * a.nh + h) * splits) * (r + 2);
    if (threadIdx.x == 0) {
        float mx = -INFINITY;
        for (int s = 0; s < splits; s++) mx = fmaxf(mx, pp[s * (r + 2)]);
        float L = 0.0f;
        for (int s = 0; s < splits; s++) {
            float ms = pp[s * (r + 2)];
            float w = ms == -INFINITY ? 0.0f : expf(ms - mx);
            wsplit[s] = w;
            L += pp[s * (r + 2) + 1] * w;
        }
        inv_l = 1.0f / L;
    }
    __syncthreads();
    float *out = a.olat + t * a.ldol + h * r;
    for (int64_t e = threadIdx.x; e < r; e += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < splits; s++) o = fmaf(pp[s * (r + 2) + 2 + e], wsplit[s], o);
        out[e] = o * inv_l;
    }
}

int64_t td_mla_split_len(int64_t max_len, int kt)
{
    int64_t len = (max_len + TD_MLA_MAX_SPLITS - 1) / TD_MLA_MAX_SPLITS;
    if (len < 4 * kt) len = 4 * kt;
    return (len + kt - 1) / kt * kt;
}

} // namespace

extern "C" int64_t td_cuda_mla_part_floats(int64_t n, int64_t nh, int64_t r)
{
    return n * nh * TD_MLA_MAX_SPLITS * (r + 2);
}

extern "C" td_status td_cuda_mla_attend(td_cuda *c, const td_cuda_mla *a)
{
    td_cuda_enter(c);
    if (a->n <= 0) return TD_OK;
    if (a->n > 8) return td_fail(TD_E_ARG, "td_cuda_mla_attend: %d rows at once (at most 8)", a->n);
    if (a->kv.r > TD_CUDA_MLA_MAX_R || a->kv.dr > TD_CUDA_MLA_MAX_DR || a->kv.dr % 2)
        return td_fail(TD_E_UNSUPPORTED, "MLA on the GPU holds a latent of up to %d and a rope key of up to %d (even); "
                                         "this model has %lld and %lld",
                       TD_CUDA_MLA_MAX_R, TD_CUDA_MLA_MAX_DR, (long long)a->kv.r, (long long)a->kv.dr);
    const int kt = a->kv.bf16 ? 32 : 16;
    int64_t max_len = a->pos0 + a->n, split_len = td_mla_split_len(max_len, kt);
    int splits = (int)((max_len + split_len - 1) / split_len);
    dim3 grid((unsigned)splits, td_blocks_for(a->nh, TD_MLA_HEADS), (unsigned)a->n);
    if (a->kv.bf16) td_mla_kernel<__nv_bfloat16, 32><<<grid, 256, 0, c->stream>>>(*a, split_len, splits);
    else td_mla_kernel<float, 16><<<grid, 256, 0, c->stream>>>(*a, split_len, splits);
    TD_CUDA_LAUNCHED("mla");
    td_mla_combine_kernel<<<dim3((unsigned)a->nh, (unsigned)a->n), 128, 0, c->stream>>>(*a, splits);
    TD_CUDA_LAUNCHED("mla_combine");
    return TD_OK;
}
