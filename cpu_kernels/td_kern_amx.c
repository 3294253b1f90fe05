/* AMX kernels for batches of tokens (prefill): C[row][token] = sum_k W[row][k] x[token][k] with bf16 tiles
 * and float32 accumulation.
 *  - A (weights): 32 rows at a time, K in chunks of 512 columns; a chunk is dequantized straight to bf16
 *    (SIMD for Q4_K by a lookup per pair of sub-blocks, Q6_K, Q8_0, BF16) into a 32 KiB buffer that stays
 *    in L1 while every token of the call uses it: each weight is dequantized once per call. Other types
 *    dequantize the whole 32-row panel first through the reference converter, in the same layout.
 *  - B (activations): bf16 rows (TD_ACT_BF16) of up to TD_KERN_AMX_TOKENS tokens, transposed once per
 *    call into the tiles' pair-interleaved layout (dword kk of each token's 32-column slice becomes row
 *    kk), or laid out by the caller (td_kern_ctx.btiles: the MoE down projection).
 *  - C: 2 x 2 tiles (32 rows x 32 tokens) per pair of token groups, parked in a 4 KiB slot between chunks
 *    when there are several pairs, transposed on the way out into y[token][row].
 * Tile state is configured at the start of each call and released at its end. Where the time goes on the
 * AMX host: tools/gpu-host/amxprof.sh and bench/RESULTS.md (the tile loads lead). */
#include "td_blocks.h"
#include "td_dequant.h"
#include "td_float.h"
#include "td_kern.h"
#include "td_kern_avx2.h"
#include "td_roofline.h"

#include <immintrin.h>
#include <stdalign.h>
#include <string.h>

#ifdef TD_AMX_EMULATE /* a copy for tests on CPUs without AMX: tile instructions in software */
#include "td_amx_emul.h"
#define td_kernels_amx td_kernels_amx_emul
#define td_amx_bf16_loop td_amx_bf16_loop_emul
#define td_amx_pack_btiles td_amx_pack_btiles_emul
void td_amx_pack_btiles_emul(const void *const *x, int cnt, int64_t kt0, int64_t kt1, uint8_t *dst);
double td_amx_bf16_loop_emul(int64_t iters);
extern const td_kernel td_kernels_amx_emul[];
#endif

#define TD_INLINE static inline __attribute__((always_inline))

/* f16 -> f32 with the F16C instruction (every CPU with these kernels has it) */
#define td_h2f(h) _cvtsh_ss(h)

typedef struct td_tilecfg {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} td_tilecfg;

/* tmm0-3: C, tmm4-5: A, tmm6-7: B; all 16 rows of 64 bytes. A static constant: GCC 12 drops stores
 * into a local configuration before ldtilecfg (it does not see the instruction read them), leaving the
 * tiles unconfigured and the next tile instruction faulting. */
static const alignas(64) td_tilecfg td_amx_cfg = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

static void td_amx_config(void) { _tile_loadconfig(&td_amx_cfg); }

/* ------------------------------------------------------------------ dequantization to float */

/* 16 unsigned bytes -> floats * d - m */
TD_INLINE __m512 td_u8x16_fma(__m128i q, float d, float m)
{
    return _mm512_fmsub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q)), _mm512_set1_ps(d), _mm512_set1_ps(m));
}

/* 32 bf16 from two 16-float halves */
TD_INLINE void td_st_bf16x32(uint16_t *dst, __m512 lo, __m512 hi)
{
    _mm512_storeu_si512((void *)dst, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

/* Q4_K: each pair of sub-blocks (32 bytes of nibbles) is a lookup in a 32-entry bf16 table, the 16 values
 * d*sc*q - dmin*m of the low sub-block then those of the high one (the same float, rounded once, as
 * computing it value by value). Scales go to float once per block so the tables are built from broadcast
 * loads, keeping the shuffle port for the lookups. Blocks [b0, b0 + nb) of the row; piece c of 32 columns
 * goes to out + c * cs. */
static void td_deq_q4_K(const uint8_t *row, int64_t b0, int64_t nb, uint16_t *out, size_t cs)
{
    const td_block_q4_K *b = (const td_block_q4_K *)(const void *)row + b0;
    const __m256i m4 = _mm256_set1_epi8(0x0F), hi16 = _mm256_set1_epi8(0x10);
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int64_t i = 0; i < nb; i++, out += 8 * cs) {
        alignas(32) float fs[8], fm[8];
        uint64_t sc64, mn64; /* (bit operations: no byte stores for the vector loads below to wait on) */
        td_k4_scales(b[i].scales, &sc64, &mn64);
        __m128i sc = _mm_cvtsi64_si128((long long)sc64), mn = _mm_cvtsi64_si128((long long)mn64);
        __m256 d = _mm256_set1_ps(td_h2f(b[i].d)), dm = _mm256_set1_ps(td_h2f(b[i].dmin));
        _mm256_store_ps(fs, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sc))));
        _mm256_store_ps(fm, _mm256_mul_ps(dm, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mn))));
        for (int j = 0; j < 4; j++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * j));
            __m512i lo = _mm512_cvtepu8_epi16(_mm256_and_si256(v, m4));
            __m512i hi = _mm512_cvtepu8_epi16(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), hi16));
            __m512 t0 = _mm512_fmsub_ps(iota, _mm512_set1_ps(fs[2 * j]), _mm512_set1_ps(fm[2 * j]));
            __m512 t1 = _mm512_fmsub_ps(iota, _mm512_set1_ps(fs[2 * j + 1]), _mm512_set1_ps(fm[2 * j + 1]));
            __m512i tab = (__m512i)_mm512_cvtne2ps_pbh(t1, t0);
            _mm512_storeu_si512((void *)(out + (size_t)(2 * j) * cs), _mm512_permutexvar_epi16(lo, tab));
            _mm512_storeu_si512((void *)(out + (size_t)(2 * j + 1) * cs), _mm512_permutexvar_epi16(hi, tab));
        }
    }
}

/* Q8_0: blocks of 32 = pieces [b0, b0 + nb) */
static void td_deq_q8_0(const uint8_t *row, int64_t b0, int64_t nb, uint16_t *out, size_t cs)
{
    const td_block_q8_0 *b = (const td_block_q8_0 *)(const void *)row + b0;
    for (int64_t i = 0; i < nb; i++, out += cs) {
        __m512 d = _mm512_set1_ps(td_h2f(b[i].d));
        __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b[i].qs)));
        __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b[i].qs + 16))));
        td_st_bf16x32(out, _mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d));
    }
}

/* BF16: pieces [b0, b0 + nb) copied as they are */
static void td_deq_bf16(const uint8_t *row, int64_t b0, int64_t nb, uint16_t *out, size_t cs)
{
    for (int64_t i = 0; i < nb; i++, out += cs)
        _mm512_storeu_si512((void *)out, _mm512_loadu_si512((const void *)(row + 64 * (b0 + i))));
}

/* Q6_K: value 128n + 32k + l from ql/qh as in the other kernels; w = d * sc * (q - 32). Blocks [b0, b0 + nb). */
static void td_deq_q6_K(const uint8_t *row, int64_t b0, int64_t nb, uint16_t *out, size_t cs)
{
    const td_block_q6_K *b = (const td_block_q6_K *)(const void *)row + b0;
    const __m128i m4 = _mm_set1_epi8(0x0F), m2 = _mm_set1_epi8(3);
    for (int64_t i = 0; i < nb; i++, out += 8 * cs) {
        float d = td_h2f(b[i].d);
        for (int n = 0; n < 2; n++) {
            __m512 f[4][2];
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = b[i].ql + 64 * n + 16 * h, *qh = b[i].qh + 32 * n + 16 * h;
                __m128i la = _mm_loadu_si128((const __m128i *)ql), lb = _mm_loadu_si128((const __m128i *)(ql + 32));
                __m128i hh = _mm_loadu_si128((const __m128i *)qh);
                __m128i q[4] = {
                    _mm_or_si128(_mm_and_si128(la, m4), _mm_slli_epi16(_mm_and_si128(hh, m2), 4)),
                    _mm_or_si128(_mm_and_si128(lb, m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hh, 2), m2), 4)),
                    _mm_or_si128(_mm_and_si128(_mm_srli_epi16(la, 4), m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hh, 4), m2), 4)),
                    _mm_or_si128(_mm_and_si128(_mm_srli_epi16(lb, 4), m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hh, 6), m2), 4))};
                for (int k = 0; k < 4; k++) {
                    float sc = d * (float)b[i].scales[(128 * n + 32 * k + 16 * h) / 16];
                    f[k][h] = td_u8x16_fma(q[k], sc, 32.0f * sc);
                }
            }
            for (int k = 0; k < 4; k++) td_st_bf16x32(out + (size_t)(4 * n + k) * cs, f[k][0], f[k][1]);
        }
    }
}

/* Columns of a chunk: the kernel walks K in chunks of this many columns (16 tile columns, two K-quant
 * blocks), so the weights it dequantizes (32 KiB) stay in L1 until the tiles read them. 512 measured
 * 0-20% faster than 256 on the AMX host (fewer C spills per tile product). */
#ifndef TD_AMX_CHUNK
#define TD_AMX_CHUNK 512
#endif
#define TD_AMX_CHUNK_KT (TD_AMX_CHUNK / 32)
/* One chunk of a 32-row panel: half h (rows 16h..), tile column kt at (h * TD_AMX_CHUNK_KT + kt) KiB. */
#define TD_AMX_CHUNK_BYTES (2 * TD_AMX_CHUNK_KT * 1024)

typedef void (*td_deq_fn)(const uint8_t *row, int64_t b0, int64_t nb, uint16_t *out, size_t cs);

/* The SIMD dequantizer of a type whose chunks can be dequantized on their own (NULL: the panel path).
 * *block_cols: the columns of one of its blocks (256 or 32). */
static td_deq_fn td_amx_chunk_deq(const td_matrix *w, int *block_cols)
{
    *block_cols = 32;
    switch (w->type) {
    case TD_TYPE_Q4_K: *block_cols = 256; return td_deq_q4_K;
    case TD_TYPE_Q6_K: *block_cols = 256; return td_deq_q6_K;
    case TD_TYPE_Q8_0: return td_deq_q8_0;
    case TD_TYPE_BF16: return w->cols % 32 ? NULL : td_deq_bf16;
    default: return NULL;
    }
}

/* Where tile column kt of a panel row starting at `row` lies in the chunked layout (elements). */
static inline uint16_t *td_amx_piece(uint16_t *row, int64_t kt)
{
    return row + (size_t)(kt / TD_AMX_CHUNK_KT) * (TD_AMX_CHUNK_BYTES / 2) + (size_t)(kt % TD_AMX_CHUNK_KT) * 512;
}

/* Weight row r as bf16 for the panel path (types without a chunk dequantizer), zero-padded to nkt tile
 * columns, each at td_amx_piece(out, kt). */
static void td_amx_row(const td_matrix *w, int64_t r, uint16_t *out, int64_t nkt, float *rowf)
{
    td_matrix_dequant_row(w, r, rowf);
    for (int64_t kt = 0; kt < nkt; kt++) {
        uint16_t *o = td_amx_piece(out, kt);
        if (32 * kt + 32 <= w->cols) {
            td_st_bf16x32(o, _mm512_loadu_ps(rowf + 32 * kt), _mm512_loadu_ps(rowf + 32 * kt + 16));
        } else { /* the last partial piece, zero-padded */
            for (int64_t k = 0; k < 32; k++) o[k] = 32 * kt + k < w->cols ? td_f32_to_bf16(rowf[32 * kt + k]) : 0;
        }
    }
}

/* ------------------------------------------------------------------ layouts */

/* 16 rows of 16 dwords -> their transpose, in place (a[j] becomes column j). */
TD_INLINE void td_transpose16(__m512i a[16])
{
    __m512i b[16], c[16], d[16], e[16];
    for (int i = 0; i < 8; i++) {
        b[2 * i] = _mm512_unpacklo_epi32(a[2 * i], a[2 * i + 1]);
        b[2 * i + 1] = _mm512_unpackhi_epi32(a[2 * i], a[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        c[4 * i + 0] = _mm512_unpacklo_epi64(b[4 * i], b[4 * i + 2]);
        c[4 * i + 1] = _mm512_unpackhi_epi64(b[4 * i], b[4 * i + 2]);
        c[4 * i + 2] = _mm512_unpacklo_epi64(b[4 * i + 1], b[4 * i + 3]);
        c[4 * i + 3] = _mm512_unpackhi_epi64(b[4 * i + 1], b[4 * i + 3]);
    }
    for (int j = 0; j < 4; j++) {
        d[j] = _mm512_shuffle_i32x4(c[j], c[4 + j], 0x88);
        d[4 + j] = _mm512_shuffle_i32x4(c[j], c[4 + j], 0xDD);
        e[j] = _mm512_shuffle_i32x4(c[8 + j], c[12 + j], 0x88);
        e[4 + j] = _mm512_shuffle_i32x4(c[8 + j], c[12 + j], 0xDD);
    }
    for (int j = 0; j < 4; j++) {
        a[j] = _mm512_shuffle_i32x4(d[j], e[j], 0x88);             /* lane 0 -> column j */
        a[8 + j] = _mm512_shuffle_i32x4(d[j], e[j], 0xDD);         /* lane 2 -> column 8 + j */
        a[4 + j] = _mm512_shuffle_i32x4(d[4 + j], e[4 + j], 0x88); /* lane 1 -> column 4 + j */
        a[12 + j] = _mm512_shuffle_i32x4(d[4 + j], e[4 + j], 0xDD);
    }
}

/* B tiles kt0..kt1-1 of a token group (cnt <= 16 tokens, zeros past cnt): tile kt holds in row kk, for
 * each token, the bf16 pair at columns 32 kt + 2 kk, +1. Tile kt goes to dst + kt KiB. */
void td_amx_pack_btiles(const void *const *x, int cnt, int64_t kt0, int64_t kt1, uint8_t *dst)
{
    for (int64_t kt = kt0; kt < kt1; kt++) {
        __m512i a[16];
        for (int i = 0; i < 16; i++)
            a[i] = i < cnt ? _mm512_loadu_si512((const uint8_t *)x[i] + 64 * kt) : _mm512_setzero_si512();
        td_transpose16(a);
        for (int kk = 0; kk < 16; kk++) _mm512_store_si512((void *)(dst + (size_t)kt * 1024 + 64 * kk), a[kk]);
    }
}

/* ------------------------------------------------------------------ the kernel */

/* Tokens whose B tiles are prepared at once (TD_KERN_AMX_TOKENS): one expert's tokens in a 2048-token
 * prefill (64 on average) fit in one pass over its weights. */
#define TD_AMX_TOKENS TD_KERN_AMX_TOKENS
#define TD_AMX_PAIRS (TD_AMX_TOKENS / 32)

/* C tile (16 weight rows x 16 tokens) -> y[token][row] for cnt_t tokens and cnt_r rows. */
static void td_amx_store(float *ctmp, float *y, int64_t ldy, int cnt_t, int cnt_r)
{
    __m512i a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_load_si512((const void *)(ctmp + 16 * i));
    td_transpose16(a);
    __mmask16 m = (__mmask16)((1u << cnt_r) - 1);
    for (int t = 0; t < cnt_t; t++) _mm512_mask_storeu_ps(y + t * ldy, m, _mm512_castsi512_ps(a[t]));
}

/* C tiles 0..3 of token-group pair p to/from its spill slot (4 KiB) */
TD_INLINE void td_amx_c_save(uint8_t *slot)
{
    _tile_stored(0, slot, 64);
    _tile_stored(1, slot + 1024, 64);
    _tile_stored(2, slot + 2048, 64);
    _tile_stored(3, slot + 3072, 64);
}
TD_INLINE void td_amx_c_load(const uint8_t *slot)
{
    _tile_loadd(0, slot, 64);
    _tile_loadd(1, slot + 1024, 64);
    _tile_loadd(2, slot + 2048, 64);
    _tile_loadd(3, slot + 3072, 64);
}

/* The products of one chunk (nk tile columns from kt0) for token groups in pairs, 2 x 2 C tiles (tmm0-3:
 * rows 16a, tokens 16b), A in tmm4-5 and B in tmm6-7; with several pairs the C tiles are parked in a
 * 4 KiB slot per pair between chunks, and after the last chunk they go out to y. */
static void td_amx_pairs(const uint8_t *a0, const uint8_t *a1, const uint8_t *bt, int64_t nkt, int64_t kt0, int64_t nk,
                         int64_t ch, int64_t nch, int ng, bool low_only, uint8_t *cslots, float *ctmp, float *y,
                         int64_t ldy, int64_t t0, int64_t n, int64_t row_off, int nr)
{
    int npair = (ng + 1) / 2;
    for (int p = 0; p < npair; p++) {
        bool two = 2 * p + 1 < ng;
        const uint8_t *b0 = bt + (size_t)(2 * p) * (size_t)nkt * 1024 + (size_t)kt0 * 1024;
        const uint8_t *b1 = b0 + (size_t)nkt * 1024;
        if (ch == 0) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
        } else if (npair > 1) {
            td_amx_c_load(cslots + 4096 * p);
        }
        for (int64_t kt = 0; kt < nk; kt++) {
            _tile_loadd(4, a0 + (size_t)kt * 1024, 64);
            _tile_loadd(6, b0 + (size_t)kt * 1024, 64);
            _tile_dpbf16ps(0, 4, 6);
            if (two) {
                _tile_loadd(7, b1 + (size_t)kt * 1024, 64);
                _tile_dpbf16ps(1, 4, 7);
            }
            if (!low_only) {
                _tile_loadd(5, a1 + (size_t)kt * 1024, 64);
                _tile_dpbf16ps(2, 5, 6);
                if (two) _tile_dpbf16ps(3, 5, 7);
            }
        }
        if (ch + 1 < nch) {
            if (npair > 1) td_amx_c_save(cslots + 4096 * p);
            continue;
        }
        /* last chunk: C tile (a, b) holds weight rows 16a, tokens t0 + 16(2p + b) */
        for (int a = 0; a < (low_only ? 1 : 2); a++)
            for (int bb = 0; bb < (two ? 2 : 1); bb++) {
                int tile = 2 * a + bb;
                if (tile == 0) _tile_stored(0, ctmp, 64);
                else if (tile == 1) _tile_stored(1, ctmp, 64);
                else if (tile == 2) _tile_stored(2, ctmp, 64);
                else _tile_stored(3, ctmp, 64);
                int64_t tt = t0 + 16 * (2 * p + bb);
                int cnt_t = (int)(n - tt < 16 ? n - tt : 16), cnt_r = nr - 16 * a < 16 ? nr - 16 * a : 16;
                td_amx_store(ctmp, y + tt * ldy + row_off + 16 * a, ldy, cnt_t, cnt_r);
            }
    }
}

/* Structure: for each panel of 32 weight rows, K is walked in chunks of TD_AMX_CHUNK columns. A chunk of
 * the weights is dequantized into a 32 KiB buffer that stays in L1, then every token-group pair (32 tokens,
 * 2 x 2 C tiles) runs over it; with more than 32 tokens the C tiles of each pair are parked in a 4 KiB
 * slot between chunks. The B tiles (the tokens' activations, 64 bytes a row) stream from L2. Types
 * without a chunk dequantizer get the whole panel dequantized first, chunk by chunk in the same layout. */
static void td_gemm_amx_bf16(const td_kern_ctx *ctx, const td_matrix *w, int64_t r0, int64_t r1, const void *const *x,
                             int64_t n, float *y, int64_t ldy)
{
    int64_t K = w->cols, nkt = (K + 31) / 32, nch = (nkt + TD_AMX_CHUNK_KT - 1) / TD_AMX_CHUNK_KT;
    /* scratch (td_kern_scratch_bytes): B tiles of TD_AMX_TOKENS | panel or chunk | C slots | C tile | a float row */
    uint8_t *btiles = ctx->scratch;
    uint8_t *panel = btiles + (size_t)nkt * 1024 * (TD_AMX_TOKENS / 16);
    uint8_t *cslots = panel + (size_t)nch * TD_AMX_CHUNK_BYTES; /* 4 KiB a pair */
    float *ctmp = (float *)(cslots + TD_AMX_PAIRS * 4096);
    float *rowf = ctmp + 256;
    int block_cols = 32;
    td_deq_fn deq = td_amx_chunk_deq(w, &block_cols);
    size_t chunk_bytes = deq ? w->row_bytes * TD_AMX_CHUNK_KT / (size_t)nkt : 0; /* one row's full chunk */
    td_amx_config();
    for (int64_t t0 = 0; t0 < n; t0 += TD_AMX_TOKENS) {
        int64_t nt = n - t0 < TD_AMX_TOKENS ? n - t0 : TD_AMX_TOKENS;
        int ng = (int)((nt + 15) / 16);
        const uint8_t *bt = btiles;
        if (ctx->btiles) {
            bt = ctx->btiles + (size_t)(t0 / 16) * (size_t)nkt * 1024;
        } else if (!(ctx->same_acts && n <= TD_AMX_TOKENS)) { /* else the previous call left these B tiles */
            for (int g = 0; g < ng; g++)
                td_amx_pack_btiles(x + t0 + 16 * g, (int)(nt - 16 * g < 16 ? nt - 16 * g : 16), 0, nkt,
                                   btiles + (size_t)g * (size_t)nkt * 1024);
        }
        for (int64_t r = r0; r < r1; r += 32) {
            int nr = (int)(r1 - r < 32 ? r1 - r : 32);
            bool low_only = nr <= 16;
            if (!deq) /* the panel path: every chunk of the 32 rows first */
                for (int i = 0; i < 32; i++) {
                    uint16_t *dst = (uint16_t *)panel + (size_t)(i / 16) * (TD_AMX_CHUNK_KT * 512) + (size_t)(i % 16) * 32;
                    if (i < nr) td_amx_row(w, r + i, dst, nkt, rowf);
                    else
                        for (int64_t kt = 0; kt < nkt; kt++) memset(td_amx_piece(dst, kt), 0, 64);
                }
            for (int64_t ch = 0; ch < nch; ch++) {
                int64_t kt0 = ch * TD_AMX_CHUNK_KT, nk = nkt - kt0 < TD_AMX_CHUNK_KT ? nkt - kt0 : TD_AMX_CHUNK_KT;
                const uint8_t *a0 = panel + (size_t)ch * TD_AMX_CHUNK_BYTES;
                if (deq) {
                    a0 = panel;
                    int64_t blocks = nk * 32 / block_cols, b0 = ch * (TD_AMX_CHUNK / block_cols);
                    /* what comes next, row by row as this chunk is dequantized: the same rows' next chunk, or
                     * after the last one the next panel's first (32 short strided reads the hardware prefetchers
                     * miss; issued all at once they would fill the line buffers and stall the core) */
                    const uint8_t *next = ch + 1 < nch ? w->data + (size_t)r * w->row_bytes + (size_t)(ch + 1) * chunk_bytes
                                          : r + 32 < r1 ? w->data + (size_t)(r + 32) * w->row_bytes : NULL;
                    int next_rows = ch + 1 < nch ? nr : (int)(r1 - r - 32 < 32 ? r1 - r - 32 : 32);
                    for (int i = 0; i < 32; i++) {
                        uint16_t *dst = (uint16_t *)panel + (size_t)(i / 16) * (TD_AMX_CHUNK_KT * 512) + (size_t)(i % 16) * 32;
                        if (next && i < next_rows)
                            for (size_t o = 0; o < chunk_bytes; o += 64)
                                _mm_prefetch((const char *)next + (size_t)i * w->row_bytes + o, _MM_HINT_T0);
                        if (i < nr) deq(w->data + (size_t)(r + i) * w->row_bytes, b0, blocks, dst, 512);
                        else if (i < 16 || !low_only) /* rows past the range in a half the tiles read */
                            for (int64_t kt = 0; kt < nk; kt++) memset(dst + (size_t)kt * 512, 0, 64);
                    }
                }
                const uint8_t *a1 = a0 + TD_AMX_CHUNK_KT * 1024;
                /* (a double-buffered 2 x 1 scheme, loading column kt + 1 into spare registers while column kt
                 * multiplies, measured no faster on the AMX host: the tile loads are not what waits) */
                td_amx_pairs(a0, a1, bt, nkt, kt0, nk, ch, nch, ng, low_only, cslots, ctmp, y, ldy, t0, n, r - r0, nr);
            }
        }
    }
    _tile_release();
}

/* ------------------------------------------------------------------ peak */

double td_amx_bf16_loop(int64_t iters)
{
    alignas(64) static const uint8_t zeros[16 * 64] = {0};
    td_amx_config();
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, zeros, 64);
    _tile_loadd(5, zeros, 64);
    _tile_loadd(6, zeros, 64);
    _tile_loadd(7, zeros, 64);
    for (int64_t i = 0; i < iters; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_release();
    return (double)iters * 4 * 16 * 16 * 32 * 2;
}

/* AMX pays once a weight is used by several tokens; below that the AVX-512 kernels stream faster. */
#define TD_AMX_MIN_TOKENS 16

const td_kernel td_kernels_amx[] = {
    {TD_TYPE_Q4_K, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, TD_QK_K, TD_AMX_MIN_TOKENS, "q4_K/amx"},
    {TD_TYPE_Q5_K, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, TD_QK_K, TD_AMX_MIN_TOKENS, "q5_K/amx"},
    {TD_TYPE_Q6_K, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, TD_QK_K, TD_AMX_MIN_TOKENS, "q6_K/amx"},
    {TD_TYPE_Q2_K, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, TD_QK_K, TD_AMX_MIN_TOKENS, "q2_K/amx"},
    {TD_TYPE_Q3_K, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, TD_QK_K, TD_AMX_MIN_TOKENS, "q3_K/amx"},
    {TD_TYPE_Q8_0, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, TD_QK8_0, TD_AMX_MIN_TOKENS, "q8_0/amx"},
    {TD_TYPE_IQ4_XS, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, TD_QK_K, TD_AMX_MIN_TOKENS, "iq4_xs/amx"},
    {TD_TYPE_BF16, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, 1, TD_AMX_MIN_TOKENS, "bf16/amx"},
    {TD_TYPE_F16, TD_ISA_AMX, TD_ACT_BF16, td_gemm_amx_bf16, 1, TD_AMX_MIN_TOKENS, "f16/amx"},
    {0},
};
