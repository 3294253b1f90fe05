// Dequantization of 8 consecutive weights of a row, in registers, for every type the GPU reads in
// place. The values are the CPU reference's (cpu_kernels/td_quant_ref.c) bit for bit: the float
// operations happen in the same order, and the _rn intrinsics keep nvcc from fusing a multiply and a
// subtraction into one rounding. Layouts: td_blocks.h.
#ifndef TD_CUDA_QUANT_CUH
#define TD_CUDA_QUANT_CUH

#include "td_blocks.h"
#include "td_types.h"

#include <cuda_fp16.h>
#include <stdint.h>

__device__ __forceinline__ float td_dh(const uint8_t *p) // an f16 stored at a 2-byte aligned address
{
    return __half2float(__ushort_as_half(*reinterpret_cast<const uint16_t *>(p)));
}

__device__ __forceinline__ float td_de4m3(uint32_t b)
{
    uint32_t sign = (b & 0x80u) << 24, exp = (b >> 3) & 0xfu, man = b & 0x7u;
    if (exp == 0xf && man == 0x7) return __uint_as_float(sign | 0x7fc00000u);
    if (exp == 0) {
        float v = __fmul_rn((float)man, 1.0f / 512.0f);
        return sign ? -v : v;
    }
    return __uint_as_float(sign | ((exp + 120u) << 23) | (man << 20));
}

// Q4_K / Q5_K: the 6-bit scale and min of group g.
__device__ __forceinline__ void td_k4_sm(const uint8_t *s, int g, int *sc, int *m)
{
    if (g < 4) {
        *sc = s[g] & 63;
        *m = s[g + 4] & 63;
    } else {
        *sc = (s[g + 4] & 0x0f) | (s[g - 4] >> 6) << 4;
        *m = (s[g + 4] >> 4) | (s[g] >> 6) << 4;
    }
}

// Weights 8*c8 .. 8*c8+7 of a row. srow: the FP8 scale row of this weight row, sbc its block width.
template <int T>
__device__ __forceinline__ void td_deq8(const uint8_t *row, int64_t c8, float *o, const float *srow, int sbc)
{
    if constexpr (T == TD_TYPE_F32) {
        const float4 *p = reinterpret_cast<const float4 *>(row) + 2 * c8;
        float4 a = p[0], b = p[1];
        o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
    } else if constexpr (T == TD_TYPE_F16 || T == TD_TYPE_BF16) {
        uint4 v = reinterpret_cast<const uint4 *>(row)[c8];
        uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t lo = w[i] & 0xffffu, hi = w[i] >> 16;
            if constexpr (T == TD_TYPE_BF16) {
                o[2 * i] = __uint_as_float(lo << 16);
                o[2 * i + 1] = __uint_as_float(hi << 16);
            } else {
                o[2 * i] = __half2float(__ushort_as_half((unsigned short)lo));
                o[2 * i + 1] = __half2float(__ushort_as_half((unsigned short)hi));
            }
        }
    } else if constexpr (T == TD_TYPE_F8_E4M3) {
        uint2 v = reinterpret_cast<const uint2 *>(row)[c8];
        float s = srow ? srow[(c8 * 8) / sbc] : 1.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            o[i] = td_de4m3((v.x >> (8 * i)) & 0xffu);
            o[4 + i] = td_de4m3((v.y >> (8 * i)) & 0xffu);
        }
        if (srow) {
#pragma unroll
            for (int i = 0; i < 8; i++) o[i] = __fmul_rn(o[i], s);
        }
    } else if constexpr (T == TD_TYPE_Q8_0) {
        const uint8_t *b = row + (c8 >> 2) * sizeof(td_block_q8_0);
        float d = td_dh(b);
        const int8_t *q = reinterpret_cast<const int8_t *>(b + 2) + (c8 & 3) * 8;
#pragma unroll
        for (int i = 0; i < 8; i++) o[i] = __fmul_rn((float)q[i], d);
    } else if constexpr (T == TD_TYPE_Q4_0) {
        const uint8_t *b = row + (c8 >> 2) * sizeof(td_block_q4_0);
        float d = td_dh(b);
        int sub = (int)(c8 & 3);
        const uint8_t *q = b + 2 + (sub & 1) * 8;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int v = sub < 2 ? (q[i] & 0x0f) : (q[i] >> 4);
            o[i] = __fmul_rn((float)(v - 8), d);
        }
    } else if constexpr (T == TD_TYPE_Q5_0) {
        const uint8_t *b = row + (c8 >> 2) * sizeof(td_block_q5_0);
        float d = td_dh(b);
        uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 | (uint32_t)b[5] << 24;
        const uint8_t *qs = b + 6;
        int e0 = (int)(c8 & 3) * 8;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int e = e0 + i;
            int v = (e < 16 ? (qs[e] & 0x0f) : (qs[e - 16] >> 4)) | (int)((qh >> e) & 1u) << 4;
            o[i] = __fmul_rn((float)(v - 16), d);
        }
    } else if constexpr (T == TD_TYPE_Q4_K || T == TD_TYPE_Q5_K) {
        constexpr size_t bytes = T == TD_TYPE_Q4_K ? sizeof(td_block_q4_K) : sizeof(td_block_q5_K);
        const uint8_t *b = row + (c8 >> 5) * bytes;
        int within = (int)(c8 & 31), g = within >> 2, l0 = (within & 3) * 8;
        float d = td_dh(b), dmin = td_dh(b + 2);
        int sc, m;
        td_k4_sm(b + 4, g, &sc, &m);
        float dl = __fmul_rn(d, (float)sc), ml = __fmul_rn(dmin, (float)m);
        const uint8_t *qh = b + 4 + TD_K_SCALE_SIZE;                           // Q5_K only
        const uint8_t *qs = b + 4 + TD_K_SCALE_SIZE + (T == TD_TYPE_Q5_K ? TD_QK_K / 8 : 0) + 32 * (g / 2);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int l = l0 + i;
            int v = (g & 1) ? (qs[l] >> 4) : (qs[l] & 0x0f);
            if constexpr (T == TD_TYPE_Q5_K) v |= ((qh[l] >> g) & 1) << 4;
            o[i] = __fsub_rn(__fmul_rn(dl, (float)v), ml);
        }
    } else if constexpr (T == TD_TYPE_Q6_K) {
        const uint8_t *b = row + (c8 >> 5) * sizeof(td_block_q6_K);
        int e0 = (int)(c8 & 31) * 8, half = e0 / 128, j = (e0 % 128) / 32, l0 = e0 % 32;
        const uint8_t *ql = b + 64 * half + 32 * (j % 2);
        const uint8_t *qh = b + TD_QK_K / 2 + 32 * half;
        const int8_t *scales = reinterpret_cast<const int8_t *>(b + TD_QK_K / 2 + TD_QK_K / 4);
        float d = td_dh(b + TD_QK_K / 2 + TD_QK_K / 4 + TD_QK_K / 16);
        float ds = __fmul_rn(d, (float)scales[half * 8 + j * 2 + l0 / 16]);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int l = l0 + i;
            int lo = j < 2 ? (ql[l] & 0x0f) : (ql[l] >> 4);
            int hi = (qh[l] >> (2 * j)) & 3;
            o[i] = __fmul_rn(ds, (float)((lo | hi << 4) - 32));
        }
    }
}

// Runs STMT with the constant T set to the type, for the types the GPU reads in place; sets ok to
// whether the type is one of them.
#define TD_TYPE_CASE(T_, STMT)                                                                         \
    case T_: {                                                                                         \
        constexpr int T = T_;                                                                          \
        STMT;                                                                                          \
    } break;
#define TD_TYPE_DISPATCH(type, ok, STMT)                                                               \
    do {                                                                                               \
        ok = true;                                                                                     \
        switch (type) {                                                                                \
            TD_TYPE_CASE(TD_TYPE_F32, STMT)                                                            \
            TD_TYPE_CASE(TD_TYPE_F16, STMT)                                                            \
            TD_TYPE_CASE(TD_TYPE_BF16, STMT)                                                           \
            TD_TYPE_CASE(TD_TYPE_F8_E4M3, STMT)                                                        \
            TD_TYPE_CASE(TD_TYPE_Q8_0, STMT)                                                           \
            TD_TYPE_CASE(TD_TYPE_Q4_0, STMT)                                                           \
            TD_TYPE_CASE(TD_TYPE_Q5_0, STMT)                                                           \
            TD_TYPE_CASE(TD_TYPE_Q4_K, STMT)                                                           \
            TD_TYPE_CASE(TD_TYPE_Q5_K, STMT)                                                           \
            TD_TYPE_CASE(TD_TYPE_Q6_K, STMT)                                                           \
        default: ok = false;                                                                           \
        }                                                                                              \
    } while (0)

#endif
