#include "td_randw.h"

#include "td_blocks.h"
#include "td_float.h"

#include <stddef.h>
#include <string.h>

uint64_t td_randw_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float td_randw_unit(uint64_t r) { return (float)((double)(r >> 40) / 16777216.0 * 2.0 - 1.0); }

/* The f16 scale fields of a block, which must hold finite values of a sane size. */
static int td_randw_halves(td_type t, size_t off[2])
{
    switch (t) {
    case TD_TYPE_Q4_0: off[0] = offsetof(td_block_q4_0, d); return 1;
    case TD_TYPE_Q5_0: off[0] = offsetof(td_block_q5_0, d); return 1;
    case TD_TYPE_Q8_0: off[0] = offsetof(td_block_q8_0, d); return 1;
    case TD_TYPE_Q2_K: off[0] = offsetof(td_block_q2_K, d); off[1] = offsetof(td_block_q2_K, dmin); return 2;
    case TD_TYPE_Q3_K: off[0] = offsetof(td_block_q3_K, d); return 1;
    case TD_TYPE_Q4_K: off[0] = offsetof(td_block_q4_K, d); off[1] = offsetof(td_block_q4_K, dmin); return 2;
    case TD_TYPE_Q5_K: off[0] = offsetof(td_block_q5_K, d); off[1] = offsetof(td_block_q5_K, dmin); return 2;
    case TD_TYPE_Q6_K: off[0] = offsetof(td_block_q6_K, d); return 1;
    case TD_TYPE_IQ4_NL: off[0] = offsetof(td_block_iq4_nl, d); return 1;
    case TD_TYPE_IQ4_XS: off[0] = offsetof(td_block_iq4_xs, d); return 1;
    case TD_TYPE_IQ2_XXS: off[0] = offsetof(td_block_iq2_xxs, d); return 1;
    case TD_TYPE_IQ1_S: off[0] = offsetof(td_block_iq1_s, d); return 1;
    default: return 0;
    }
}

void td_randw_fill(td_type t, void *data, size_t nbytes, uint64_t seed, uint64_t offset)
{
    const td_type_traits *tt = td_type_info(t);
    uint8_t *d = data;
    if (tt->block_bytes <= 0) return;
    size_t bb = (size_t)tt->block_bytes, n = nbytes / bb;
    size_t off[2];
    int nh = td_randw_halves(t, off);
    for (size_t i = 0; i < n; i++) {
        uint64_t s = seed ^ ((offset + i) * 0xd1342543de82ef95ull);
        uint8_t *blk = d + i * bb;
        if (t == TD_TYPE_F32) {
            float v = td_randw_unit(td_randw_next(&s));
            memcpy(blk, &v, 4);
        } else if (t == TD_TYPE_F16 || t == TD_TYPE_BF16) {
            float v = td_randw_unit(td_randw_next(&s));
            uint16_t h = t == TD_TYPE_F16 ? td_f32_to_f16(v) : td_f32_to_bf16(v);
            memcpy(blk, &h, 2);
        } else if (t == TD_TYPE_F8_E4M3) {
            uint8_t v = (uint8_t)td_randw_next(&s);
            blk[0] = (v & 0x7f) == 0x7f ? (uint8_t)(v - 1) : v; /* 0x7f and 0xff are NaN */
        } else {
            for (size_t k = 0; k < bb; k += 8) {
                uint64_t r = td_randw_next(&s);
                memcpy(blk + k, &r, bb - k < 8 ? bb - k : 8);
            }
            for (int k = 0; k < nh; k++) {
                uint64_t r = td_randw_next(&s);
                float v = 1e-3f + 1.9e-2f * (float)((r >> 40) & 0xffff) / 65536.0f;
                uint16_t h = td_f32_to_f16((r & 1) ? -v : v);
                memcpy(blk + off[k], &h, 2);
            }
        }
    }
}
