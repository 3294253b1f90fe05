/* Storage float conversions (f16, bf16, fp8 e4m3) against formulas evaluated independently here. */
#include "td_float.h"
#include "td_test.h"

#include <math.h>

/* value of an IEEE-like minifloat from its fields: (-1)^s * 2^(e-bias) * (1 + m/2^mbits), subnormals below */
static double minifloat(int s, int e, int m, int mbits, int bias)
{
    double v = e == 0 ? ldexp((double)m, 1 - bias - mbits) : ldexp(1.0 + ldexp((double)m, -mbits), e - bias);
    return s ? -v : v;
}

static void test_f16(void)
{
    for (uint32_t h = 0; h < 65536; h++) {
        int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
        float f = td_f16_to_f32((uint16_t)h);
        if (e == 31) {
            TD_CHECKF(m ? isnan(f) : isinf(f), "f16 %04x", h);
            continue;
        }
        TD_CHECKF((double)f == minifloat(s, e, m, 10, 15), "f16 %04x -> %g", h, f);
        TD_CHECKF(td_f32_to_f16(f) == h, "f16 %04x does not round-trip", h);
    }
    /* rounding to nearest even: compare against the two neighbours for random values */
    uint64_t st = 42;
    for (int i = 0; i < 200000; i++) {
        float x = td_test_randf(&st) * ldexpf(1.0f, (int)(td_test_rand(&st) % 40) - 26);
        uint16_t h = td_f32_to_f16(x);
        double v = td_f16_to_f32(h), err = fabs(v - x);
        uint16_t up = (uint16_t)(h + 1), dn = (uint16_t)(h - 1);
        if ((up & 0x7c00) != 0x7c00) TD_CHECKF(err <= fabs(td_f16_to_f32(up) - (double)x), "f16 rounding of %g", x);
        if ((h & 0x7fff) != 0) TD_CHECKF(err <= fabs(td_f16_to_f32(dn) - (double)x), "f16 rounding of %g", x);
    }
    TD_CHECK(isinf(td_f16_to_f32(td_f32_to_f16(70000.0f))));
    TD_CHECK(td_f16_to_f32(td_f32_to_f16(65504.0f)) == 65504.0f);
}

static void test_bf16(void)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = td_bf16_to_f32((uint16_t)h);
        int e = (h >> 7) & 255;
        if (e == 255 && (h & 127)) {
            TD_CHECKF(isnan(f) && isnan(td_bf16_to_f32(td_f32_to_bf16(f))), "bf16 NaN %04x", h);
            continue;
        }
        TD_CHECKF(td_f32_to_bf16(f) == h, "bf16 %04x does not round-trip", h);
    }
    /* ties go to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 */
    TD_CHECK(td_bf16_to_f32(td_f32_to_bf16(1.0f + ldexpf(1.0f, -8))) == 1.0f);
    TD_CHECK(td_bf16_to_f32(td_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8))) == 1.0f + ldexpf(1.0f, -6));
}

static void test_e4m3(void)
{
    for (int b = 0; b < 256; b++) {
        int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
        float f = td_e4m3_to_f32((uint8_t)b);
        if (e == 15 && m == 7) {
            TD_CHECKF(isnan(f), "e4m3 %02x should be NaN", b);
            continue;
        }
        TD_CHECKF((double)f == minifloat(s, e, m, 3, 7), "e4m3 %02x -> %g", b, f);
    }
    TD_CHECK(td_e4m3_to_f32(0x7e) == 448.0f); /* the format's largest finite value */
}

int main(void)
{
    test_f16();
    test_bf16();
    test_e4m3();
    return td_test_finish();
}
