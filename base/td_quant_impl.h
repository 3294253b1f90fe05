/* td_quant_impl.h: small decoders of packed scales shared by the reference dequantizers, the reference
 * dot products and the quantizers (base/ and cpu_kernels/). */
#ifndef TD_QUANT_IMPL_H
#define TD_QUANT_IMPL_H

#include <stdint.h>

/* The 16 signed 6-bit scales of Q3_K: low 4 bits in bytes 0..7 (groups 0..7 low nibble, 8..15 high
 * nibble), high 2 bits in bytes 8..11 (group g in byte 8 + g%4 at bit 2*(g/4)); stored with bias 32. */
static inline int td_q3_K_scale(const uint8_t *s, int g)
{
    int lo = g < 8 ? s[g] & 0x0f : s[g - 8] >> 4;
    int hi = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* The 8 unsigned 6-bit scales and mins of Q4_K/Q5_K in 12 bytes: groups 0..3 in the low 6 bits of bytes
 * 0..3 (scales) and 4..7 (mins); groups 4..7 take their low 4 bits from bytes 8..11 (scale low nibble,
 * min high nibble) and their top 2 bits from the top bits of bytes 0..3 (scales) and 4..7 (mins). */
static inline void td_k4_scale_min(const uint8_t *s, int g, int *sc, int *m)
{
    if (g < 4) {
        *sc = s[g] & 63;
        *m = s[g + 4] & 63;
    } else {
        *sc = (s[g + 4] & 0x0f) | (s[g - 4] >> 6) << 4;
        *m = (s[g + 4] >> 4) | (s[g] >> 6) << 4;
    }
}

/* Byte j of a packed grid point (little-endian order, whatever the host). */
static inline int td_grid_byte(uint64_t g, int j) { return (int)((g >> (8 * j)) & 0xff); }

#endif
