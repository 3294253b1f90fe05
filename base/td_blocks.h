/* td_blocks.h: the byte layout of every quantized block tandem reads, shared by C and CUDA.
 * The layouts are GGUF's (ggml's): a file's bytes are used in place, so these must match exactly. Each
 * struct is followed by a compile-time size check. Half floats are stored as raw uint16_t bits. */
#ifndef TD_BLOCKS_H
#define TD_BLOCKS_H

#include <stdint.h>

#ifdef __cplusplus
#define TD_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define TD_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

typedef uint16_t td_half; /* IEEE binary16 bits */

#define TD_QK4_0 32
#define TD_QK5_0 32
#define TD_QK8_0 32
#define TD_QK4_NL 32
#define TD_QK_K 256        /* super-block of the K and IQ formats */
#define TD_K_SCALE_SIZE 12 /* packed 6-bit scales and mins of Q4_K / Q5_K */

/* 4-bit, one scale per 32: x = d * (q - 8) */
typedef struct {
    td_half d;
    uint8_t qs[TD_QK4_0 / 2]; /* low nibbles hold elements 0..15, high nibbles 16..31 */
} td_block_q4_0;
TD_STATIC_ASSERT(sizeof(td_block_q4_0) == 2 + TD_QK4_0 / 2, "q4_0 block size");

/* 5-bit, one scale per 32: x = d * (q - 16), the fifth bits packed in qh */
typedef struct {
    td_half d;
    uint8_t qh[4];
    uint8_t qs[TD_QK5_0 / 2];
} td_block_q5_0;
TD_STATIC_ASSERT(sizeof(td_block_q5_0) == 2 + 4 + TD_QK5_0 / 2, "q5_0 block size");

/* 8-bit, one scale per 32: x = d * q */
typedef struct {
    td_half d;
    int8_t qs[TD_QK8_0];
} td_block_q8_0;
TD_STATIC_ASSERT(sizeof(td_block_q8_0) == 2 + TD_QK8_0, "q8_0 block size");

/* 2-bit K-quant: 16 groups of 16, 4-bit scale and 4-bit min per group */
typedef struct {
    uint8_t scales[TD_QK_K / 16];
    uint8_t qs[TD_QK_K / 4];
    td_half d;
    td_half dmin;
} td_block_q2_K;
TD_STATIC_ASSERT(sizeof(td_block_q2_K) == 2 * 2 + TD_QK_K / 16 + TD_QK_K / 4, "q2_K block size");

/* 3-bit K-quant: 16 groups of 16, 6-bit signed scales, the high bit of each value in hmask */
typedef struct {
    uint8_t hmask[TD_QK_K / 8];
    uint8_t qs[TD_QK_K / 4];
    uint8_t scales[12];
    td_half d;
} td_block_q3_K;
TD_STATIC_ASSERT(sizeof(td_block_q3_K) == 2 + TD_QK_K / 4 + TD_QK_K / 8 + 12, "q3_K block size");

/* 4-bit K-quant: 8 groups of 32, 6-bit scale and min per group: x = d*sc*q - dmin*m */
typedef struct {
    td_half d;
    td_half dmin;
    uint8_t scales[TD_K_SCALE_SIZE];
    uint8_t qs[TD_QK_K / 2];
} td_block_q4_K;
TD_STATIC_ASSERT(sizeof(td_block_q4_K) == 2 * 2 + TD_K_SCALE_SIZE + TD_QK_K / 2, "q4_K block size");

/* 5-bit K-quant: as Q4_K plus one high bit per value */
typedef struct {
    td_half d;
    td_half dmin;
    uint8_t scales[TD_K_SCALE_SIZE];
    uint8_t qh[TD_QK_K / 8];
    uint8_t qs[TD_QK_K / 2];
} td_block_q5_K;
TD_STATIC_ASSERT(sizeof(td_block_q5_K) == 2 * 2 + TD_K_SCALE_SIZE + TD_QK_K / 2 + TD_QK_K / 8,
                 "q5_K block size");

/* 6-bit K-quant: 16 groups of 16, signed 8-bit scales: x = d * sc * (q - 32) */
typedef struct {
    uint8_t ql[TD_QK_K / 2]; /* low 4 bits */
    uint8_t qh[TD_QK_K / 4]; /* high 2 bits */
    int8_t scales[TD_QK_K / 16];
    td_half d;
} td_block_q6_K;
TD_STATIC_ASSERT(sizeof(td_block_q6_K) == 2 + TD_QK_K / 16 + 3 * TD_QK_K / 4, "q6_K block size");

/* 8-bit activations for K-quant dot products: float scale, sums of each 16 for the min terms */
typedef struct {
    float d;
    int8_t qs[TD_QK_K];
    int16_t bsums[TD_QK_K / 16];
} td_block_q8_K;
TD_STATIC_ASSERT(sizeof(td_block_q8_K) == 4 + TD_QK_K + TD_QK_K / 16 * 2, "q8_K block size");

/* 2.06 bpw: 8 groups of 32; each uint32 pair holds four 8-value grid indices, signs and a 4-bit scale */
typedef struct {
    td_half d;
    uint16_t qs[TD_QK_K / 8];
} td_block_iq2_xxs;
TD_STATIC_ASSERT(sizeof(td_block_iq2_xxs) == 2 + TD_QK_K / 8 * 2, "iq2_xxs block size");

/* 1.56 bpw: 8 groups of 32 from an 11-bit grid, 3-bit scale and a delta sign per group */
typedef struct {
    td_half d;
    uint8_t qs[TD_QK_K / 8];
    uint16_t qh[TD_QK_K / 32];
} td_block_iq1_s;
TD_STATIC_ASSERT(sizeof(td_block_iq1_s) == 2 + TD_QK_K / 8 + TD_QK_K / 16, "iq1_s block size");

/* 4-bit non-linear, one scale per 32, values from a 16-entry table */
typedef struct {
    td_half d;
    uint8_t qs[TD_QK4_NL / 2];
} td_block_iq4_nl;
TD_STATIC_ASSERT(sizeof(td_block_iq4_nl) == 2 + TD_QK4_NL / 2, "iq4_nl block size");

/* 4.25 bpw non-linear: 8 groups of 32 with 6-bit scales (low 4 in scales_l, high 2 in scales_h) */
typedef struct {
    td_half d;
    uint16_t scales_h;
    uint8_t scales_l[TD_QK_K / 64];
    uint8_t qs[TD_QK_K / 2];
} td_block_iq4_xs;
TD_STATIC_ASSERT(sizeof(td_block_iq4_xs) == 2 + 2 + TD_QK_K / 64 + TD_QK_K / 2, "iq4_xs block size");

#endif
