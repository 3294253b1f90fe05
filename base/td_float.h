/* td_float: scalar conversions between float32 and the storage floats (f16, bf16, fp8 e4m3).
 * Exact: every f16, bf16 and e4m3 value is representable in float32. */
#ifndef TD_FLOAT_H
#define TD_FLOAT_H

#include <stdint.h>
#include <string.h>

static inline float td_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t td_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float td_bf16_to_f32(uint16_t h) { return td_f32_from_bits((uint32_t)h << 16); }

/* Round to nearest even; NaN stays NaN. */
static inline uint16_t td_f32_to_bf16(float f)
{
    uint32_t u = td_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float td_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        if (man == 0) return td_f32_from_bits(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31) return td_f32_from_bits(sign | 0x7f800000u | (man << 13));
    return td_f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}

/* Round to nearest even, with overflow to infinity and gradual underflow. */
static inline uint16_t td_f32_to_f16(float f)
{
    uint32_t u = td_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65536: inf */
    if (a < 0x38800000u) {                                   /* below the smallest normal 2^-14 */
        /* subnormal: scale so that one unit of the result is 2^-24 and round to even */
        float v = td_f32_from_bits(a) * 16777216.0f;
        uint32_t m = (uint32_t)v;
        float rem = v - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1u))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t rounded = a + 0xfffu + ((a >> 13) & 1u);
    return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13));
}

/* OCP FP8 E4M3 (the "fn" variant: no infinities, 0x7f/0xff are NaN, max 448). */
static inline float td_e4m3_to_f32(uint8_t b)
{
    uint32_t sign = (uint32_t)(b & 0x80u) << 24;
    uint32_t exp = (b >> 3) & 0xfu;
    uint32_t man = b & 0x7u;
    if (exp == 0xf && man == 0x7) return td_f32_from_bits(sign | 0x7fc00000u);
    if (exp == 0) {
        float v = (float)man * (1.0f / 512.0f); /* man/8 * 2^-6 */
        return sign ? -v : v;
    }
    return td_f32_from_bits(sign | ((exp + 120u) << 23) | (man << 20));
}

#endif
