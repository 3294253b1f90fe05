// MLA attention in the absorbed form over the latent cache, split over the context (flash-decoding).
// Two kernels: fp32 on CUDA cores (exact products, either cache type), and bf16 tensor cores for a
// bf16 cache (td_mla_tc_kernel, further down).
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
constexpr int TD_MLA_MAX_SPLITS = 32;   // for 8 rows; fewer rows may take more (the scratch is the same)
constexpr int TD_MLA_SPLITS_CAP = 256;
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
        const int n_el = nk * (int)rw, rw32 = (int)rw, r32 = (int)r;
        for (int base = threadIdx.x; base < n_el; base += 8 * 256) { // 8 loads in flight per thread
            KV v[8];
#pragma unroll
            for (int u = 0; u < 8; u++) {
                int id = base + u * 256, j = id / rw32, e = id - j * rw32;
                if (id < n_el) v[u] = e < r32 ? ckv[(kb + j) * r + e] : krope[(kb + j) * dr + (e - r32)];
            }
#pragma unroll
            for (int u = 0; u < 8; u++)
                if (base + u * 256 < n_el) tile[base + u * 256] = v[u];
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
    __shared__ float wsplit[TD_MLA_SPLITS_CAP];
    __shared__ float inv_l;
    const int64_t h = blockIdx.x, t = blockIdx.y, r = a.kv.r;
    const float *pp = a.part + ((t * a.nh + h) * splits) * (r + 2);
    if (threadIdx.x < 32) { // the first warp: the splits' maxima and sums, a lane per split in turn
        float mx = -INFINITY;
        for (int s = threadIdx.x; s < splits; s += 32) mx = fmaxf(mx, pp[s * (r + 2)]);
        mx = td_warp_max(mx);
        float L = 0.0f;
        for (int s = threadIdx.x; s < splits; s += 32) {
            float ms = pp[s * (r + 2)];
            float w = ms == -INFINITY ? 0.0f : expf(ms - mx);
            wsplit[s] = w;
            L += pp[s * (r + 2) + 1] * w;
        }
        L = td_warp_sum(L);
        if (threadIdx.x == 0) inv_l = 1.0f / L;
    }
    __syncthreads();
    float *out = a.olat + t * a.ldol + h * r;
    for (int64_t e = threadIdx.x; e < r; e += blockDim.x) {
        float o = 0.0f;
#pragma unroll 8
        for (int s = 0; s < splits; s++) o = fmaf(pp[s * (r + 2) + 2 + e], wsplit[s], o);
        out[e] = o * inv_l;
    }
}


// ------------------------------------------------------------------ bf16 tensor cores
//
// A block takes 32 heads (two 16-row tiles of mma.m16n8k16) of one query row over one split of the
// context, 32 keys at a time. The queries of its heads (latent and rope parts, rounded to bf16) stay in
// shared memory; each tile of keys is read once into shared memory for all 32 heads:
//   scores S[32 heads][32 keys] = Q K^T: warp w computes the 16x8 tile (w & 1, w >> 1), 36 k-steps;
//   the softmax's running maximum and sum per head (fp32), and P = exp(S - max) in bf16;
//   O[32][r] += P V: warp w owns heads (w & 1) x a quarter of the latent's columns, in registers.
// Rows of shared memory are padded by 8 values so that the fragment loads of 8 rows hit distinct banks.

constexpr int TD_TC_HEADS = 32, TD_TC_KT = 32, TD_TC_SROW = TD_TC_KT + 1, TD_TC_PROW = TD_TC_KT + 8;
constexpr int TD_TC_MAX_NT = TD_CUDA_MLA_MAX_R / 4 / 8; // n-tiles of 8 columns a warp owns at most

__device__ __forceinline__ void td_mma_bf16(float *d, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                            uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t td_ld32(const __nv_bfloat16 *p) { return *reinterpret_cast<const uint32_t *>(p); }
__device__ __forceinline__ uint32_t td_pack(const __nv_bfloat16 *lo, const __nv_bfloat16 *hi)
{
    return (uint32_t)*reinterpret_cast<const uint16_t *>(lo) | (uint32_t)*reinterpret_cast<const uint16_t *>(hi) << 16;
}

size_t td_mla_tc_smem(int64_t rw)
{
    int64_t st = rw + 8;
    return (size_t)(2 * TD_TC_HEADS * st) * sizeof(__nv_bfloat16) + (size_t)(TD_TC_HEADS * TD_TC_SROW) * sizeof(float) +
           (size_t)(TD_TC_HEADS * TD_TC_PROW) * sizeof(__nv_bfloat16) + (size_t)(3 * TD_TC_HEADS) * sizeof(float);
}

__global__ void __launch_bounds__(256) td_mla_tc_kernel(td_cuda_mla a, int64_t split_len, int splits)
{
    extern __shared__ __align__(16) unsigned char smem[];
    const int64_t r = a.kv.r, dr = a.kv.dr, rw = r + dr, st = rw + 8, nh = a.nh;
    __nv_bfloat16 *Qs = reinterpret_cast<__nv_bfloat16 *>(smem), *Ks = Qs + TD_TC_HEADS * st;
    float *S = reinterpret_cast<float *>(Ks + TD_TC_HEADS * st);
    __nv_bfloat16 *P = reinterpret_cast<__nv_bfloat16 *>(S + TD_TC_HEADS * TD_TC_SROW);
    float *mrow = reinterpret_cast<float *>(P + TD_TC_HEADS * TD_TC_PROW), *lrow = mrow + TD_TC_HEADS,
          *crow = lrow + TD_TC_HEADS;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3, s = blockIdx.y;
    const int64_t t = blockIdx.z, h0 = (int64_t)blockIdx.x * TD_TC_HEADS;
    const int64_t len = a.pos0 + t + 1, k0 = (int64_t)s * split_len;
    const int64_t k1 = k0 + split_len < len ? k0 + split_len : len;
    const __nv_bfloat16 *ckv = static_cast<const __nv_bfloat16 *>(a.kv.ckv), *krope = static_cast<const __nv_bfloat16 *>(a.kv.krope);
    const int rw32 = (int)rw, r32 = (int)r, total = TD_TC_HEADS * rw32;
    constexpr int QB = 24; // loads in flight per thread: the queries arrive in a few round trips, not 72
    for (int base = threadIdx.x; base < total; base += QB * 256) {
        float v[QB];
#pragma unroll
        for (int u = 0; u < QB; u++) {
            int id = base + u * 256, hh = id / rw32, e = id - hh * rw32;
            int64_t h = h0 + hh;
            v[u] = 0.0f;
            if (id < total && h < nh)
                v[u] = e < r32 ? a.qlat[t * a.ldql + h * r + e] : a.q[t * a.ldq + h * a.q_hstride + a.q_rope_off + (e - r32)];
        }
#pragma unroll
        for (int u = 0; u < QB; u++) {
            int id = base + u * 256, hh = id / rw32, e = id - hh * rw32;
            if (id < total) Qs[hh * st + e] = __float2bfloat16_rn(v[u]);
        }
    }
    if (threadIdx.x < TD_TC_HEADS) {
        mrow[threadIdx.x] = -INFINITY;
        lrow[threadIdx.x] = 0.0f;
    }
    const int mt = warp & 1, quarter = warp >> 1;
    const int64_t dims = r / 4, nt_n = dims / 8, col0 = quarter * dims;
    float o[TD_TC_MAX_NT][4];
#pragma unroll
    for (int nt = 0; nt < TD_TC_MAX_NT; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
    // the next tile's keys travel into registers while this one is computed on
    const int chunks = rw32 / 8, per = TD_TC_KT * chunks;
    constexpr int PF = (TD_TC_KT * (TD_CUDA_MLA_MAX_R + TD_CUDA_MLA_MAX_DR) / 8 + 255) / 256;
    uint4 pf[PF];
    auto fetch = [&](int64_t kb) {
#pragma unroll
        for (int i = 0; i < PF; i++) {
            int id = threadIdx.x + i * 256, j = id / chunks, e = (id - j * chunks) * 8;
            pf[i] = make_uint4(0, 0, 0, 0);
            if (id < per && kb + j < k1)
                pf[i] = e < r32 ? *reinterpret_cast<const uint4 *>(ckv + (kb + j) * r + e)
                                : *reinterpret_cast<const uint4 *>(krope + (kb + j) * dr + (e - r32));
        }
    };
    if (k0 < k1) fetch(k0);
    for (int64_t kb = k0; kb < k1; kb += TD_TC_KT) {
        const int nk = (int)(k1 - kb < TD_TC_KT ? k1 - kb : TD_TC_KT);
        __syncthreads(); // the last tile is no longer read
#pragma unroll
        for (int i = 0; i < PF; i++) {
            int id = threadIdx.x + i * 256, j = id / chunks, e = (id - j * chunks) * 8;
            if (id < per) *reinterpret_cast<uint4 *>(Ks + j * st + e) = pf[i];
        }
        __syncthreads();
        if (kb + TD_TC_KT < k1) fetch(kb + TD_TC_KT);
        { // scores: this warp's 16 heads x 8 keys, two chains of products for the pipeline
            const int m = warp & 1, nb = (warp >> 1) * 8;
            float c[4] = {0.0f, 0.0f, 0.0f, 0.0f}, d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            const __nv_bfloat16 *qa = Qs + (m * 16 + g) * st + tig * 2, *kp = Ks + (nb + g) * st + tig * 2;
            int k = 0;
            for (; k + 16 < rw32; k += 32) {
                td_mma_bf16(c, td_ld32(qa + k), td_ld32(qa + 8 * st + k), td_ld32(qa + k + 8), td_ld32(qa + 8 * st + k + 8),
                            td_ld32(kp + k), td_ld32(kp + k + 8));
                td_mma_bf16(d, td_ld32(qa + k + 16), td_ld32(qa + 8 * st + k + 16), td_ld32(qa + k + 24),
                            td_ld32(qa + 8 * st + k + 24), td_ld32(kp + k + 16), td_ld32(kp + k + 24));
            }
            if (k < rw32)
                td_mma_bf16(c, td_ld32(qa + k), td_ld32(qa + 8 * st + k), td_ld32(qa + k + 8), td_ld32(qa + 8 * st + k + 8),
                            td_ld32(kp + k), td_ld32(kp + k + 8));
            float *s0 = S + (m * 16 + g) * TD_TC_SROW + nb + tig * 2, *s1 = s0 + 8 * TD_TC_SROW;
            s0[0] = c[0] + d[0], s0[1] = c[1] + d[1], s1[0] = c[2] + d[2], s1[1] = c[3] + d[3];
        }
        __syncthreads();
        for (int i = 0; i < TD_TC_HEADS / 8; i++) { // the softmax: warp w takes heads 4w..4w+3, lane j key j
            int row = warp * (TD_TC_HEADS / 8) + i;
            float sv = lane < nk && h0 + row < nh ? S[row * TD_TC_SROW + lane] * a.scale : -INFINITY;
            float mold = mrow[row], mnew = fmaxf(mold, td_warp_max(sv));
            float p = sv == -INFINITY ? 0.0f : expf(sv - mnew);
            float corr = mold == -INFINITY ? (mnew == -INFINITY ? 1.0f : 0.0f) : expf(mold - mnew);
            float psum = td_warp_sum(p);
            P[row * TD_TC_PROW + lane] = __float2bfloat16_rn(p);
            if (lane == 0) {
                lrow[row] = lrow[row] * corr + psum;
                mrow[row] = mnew;
                crow[row] = corr;
            }
        }
        __syncthreads();
        { // O += P V for this warp's heads and columns
            float clo = crow[mt * 16 + g], chi = crow[mt * 16 + g + 8];
#pragma unroll
            for (int nt = 0; nt < TD_TC_MAX_NT; nt++) {
                o[nt][0] *= clo, o[nt][1] *= clo, o[nt][2] *= chi, o[nt][3] *= chi;
            }
#pragma unroll
            for (int kk = 0; kk < TD_TC_KT; kk += 16) {
                const __nv_bfloat16 *pa = P + (mt * 16 + g) * TD_TC_PROW + kk + tig * 2;
                uint32_t a0 = td_ld32(pa), a1 = td_ld32(pa + 8 * TD_TC_PROW), a2 = td_ld32(pa + 8),
                         a3 = td_ld32(pa + 8 * TD_TC_PROW + 8);
                const __nv_bfloat16 *vb = Ks + (kk + tig * 2) * st + col0 + g;
#pragma unroll
                for (int nt = 0; nt < TD_TC_MAX_NT; nt++) {
                    if (nt < nt_n) {
                        const __nv_bfloat16 *v = vb + nt * 8;
                        td_mma_bf16(o[nt], a0, a1, a2, a3, td_pack(v, v + st), td_pack(v + 8 * st, v + 9 * st));
                    }
                }
            }
        }
    }
    __syncthreads();
    const int64_t hlo = h0 + mt * 16 + g, hhi = hlo + 8;
#pragma unroll
    for (int nt = 0; nt < TD_TC_MAX_NT; nt++) {
        if (nt >= nt_n) continue;
        int64_t col = col0 + nt * 8 + tig * 2;
        if (hlo < nh) {
            float *pp = a.part + ((t * nh + hlo) * splits + s) * (r + 2) + 2 + col;
            pp[0] = o[nt][0], pp[1] = o[nt][1];
        }
        if (hhi < nh) {
            float *pp = a.part + ((t * nh + hhi) * splits + s) * (r + 2) + 2 + col;
            pp[0] = o[nt][2], pp[1] = o[nt][3];
        }
    }
    if (threadIdx.x < TD_TC_HEADS && h0 + threadIdx.x < nh) {
        float *pp = a.part + ((t * nh + h0 + threadIdx.x) * splits + s) * (r + 2);
        pp[0] = mrow[threadIdx.x], pp[1] = lrow[threadIdx.x];
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
    (void)n; /* fewer rows take more splits: 8 rows' worth serves any n <= 8 */
    return 8 * nh * TD_MLA_MAX_SPLITS * (r + 2);
}

extern "C" td_status td_cuda_mla_attend(td_cuda *c, const td_cuda_mla *a)
{
    td_cuda_work(c);
    if (a->n <= 0) return TD_OK;
    if (a->n > 8) return td_fail(TD_E_ARG, "td_cuda_mla_attend: %d rows at once (at most 8)", a->n);
    if (a->kv.r > TD_CUDA_MLA_MAX_R || a->kv.dr > TD_CUDA_MLA_MAX_DR || a->kv.dr % 2)
        return td_fail(TD_E_UNSUPPORTED, "MLA on the GPU holds a latent of up to %d and a rope key of up to %d (even); "
                                         "this model has %lld and %lld",
                       TD_CUDA_MLA_MAX_R, TD_CUDA_MLA_MAX_DR, (long long)a->kv.r, (long long)a->kv.dr);
    int64_t max_len = a->pos0 + a->n, rw = a->kv.r + a->kv.dr;
    int splits;
    if (a->tensor_cores && a->kv.bf16 && a->kv.r % 32 == 0 && a->kv.dr % 8 == 0 && rw % 16 == 0) {
        // about one block per multiprocessor: every split adds its partial sums (nh x r floats) to the traffic
        int64_t groups = (a->nh + TD_TC_HEADS - 1) / TD_TC_HEADS, want = (c->n_sm + groups * a->n - 1) / (groups * a->n);
        int64_t cap = (int64_t)TD_MLA_MAX_SPLITS * 8 / a->n, split_len = (max_len + want - 1) / want;
        if (want > cap) split_len = (max_len + cap - 1) / cap;
        if (split_len < 2 * TD_TC_KT) split_len = 2 * TD_TC_KT;
        split_len = (split_len + TD_TC_KT - 1) / TD_TC_KT * TD_TC_KT;
        splits = (int)((max_len + split_len - 1) / split_len);
        size_t smem = td_mla_tc_smem(rw);
        if (!c->mla_smem_set) {
            TD_CUDA_TRY(cudaFuncSetAttribute(td_mla_tc_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)td_mla_tc_smem(TD_CUDA_MLA_MAX_R + TD_CUDA_MLA_MAX_DR)));
            c->mla_smem_set = true;
        }
        dim3 grid((unsigned)groups, (unsigned)splits, (unsigned)a->n);
        td_mla_tc_kernel<<<grid, 256, smem, c->stream>>>(*a, split_len, splits);
    } else {
        const int kt = a->kv.bf16 ? 32 : 16;
        int64_t split_len = td_mla_split_len(max_len, kt);
        splits = (int)((max_len + split_len - 1) / split_len);
        dim3 grid((unsigned)splits, td_blocks_for(a->nh, TD_MLA_HEADS), (unsigned)a->n);
        if (a->kv.bf16) td_mla_kernel<__nv_bfloat16, 32><<<grid, 256, 0, c->stream>>>(*a, split_len, splits);
        else td_mla_kernel<float, 16><<<grid, 256, 0, c->stream>>>(*a, split_len, splits);
    }
    TD_CUDA_LAUNCHED("mla");
    td_mla_combine_kernel<<<dim3((unsigned)a->nh, (unsigned)a->n), 128, 0, c->stream>>>(*a, splits);
    TD_CUDA_LAUNCHED("mla_combine");
    return TD_OK;
}
