/* A software stand-in for the AMX tile instructions, so the AMX kernels' data layouts can be tested and
 * profiled on a CPU without AMX (the dev and CI machines). Included by td_kern_amx.c only when it is
 * compiled with TD_AMX_EMULATE (tests/CMakeLists.txt builds such a copy for test_kernels_amx_emul):
 *   TD_AMX_EMULATE=1  every tile instruction computed exactly, in scalar C (slow; for correctness);
 *   TD_AMX_EMULATE=2  tile arithmetic skipped (loads and stores still touch memory): what is left is the
 *                     kernel's own work around the tiles, which is what a profile on such a CPU measures.
 * Tile registers are thread-local arrays; the configuration's rows and colsb are honoured. */
#ifndef TD_AMX_EMUL_H
#define TD_AMX_EMUL_H

#include <stdint.h>
#include <string.h>

#undef _tile_loadconfig
#undef _tile_release
#undef _tile_zero
#undef _tile_loadd
#undef _tile_stream_loadd
#undef _tile_stored
#undef _tile_dpbf16ps
#undef _tile_dpbusd

typedef struct td_emu_tiles {
    uint8_t reg[8][1024];
    uint8_t rows[8];
    uint16_t colsb[8];
} td_emu_tiles;

static _Thread_local td_emu_tiles td_emu;

static inline void td_emu_loadconfig(const void *cfg)
{
    const uint8_t *c = cfg;
    for (int i = 0; i < 8; i++) {
        memcpy(&td_emu.colsb[i], c + 16 + 2 * i, 2);
        td_emu.rows[i] = c[48 + i];
    }
}

static inline void td_emu_loadd(int t, const void *p, long stride)
{
    if (TD_AMX_EMULATE == 2) { /* touch each row's line, as the load would, without the copy */
        for (int r = 0; r < td_emu.rows[t]; r++) td_emu.reg[t][64 * r] = *((const volatile uint8_t *)p + r * stride);
        return;
    }
    for (int r = 0; r < td_emu.rows[t]; r++)
        memcpy(td_emu.reg[t] + 64 * r, (const uint8_t *)p + r * stride, td_emu.colsb[t]);
}

static inline void td_emu_stored(int t, void *p, long stride)
{
    for (int r = 0; r < td_emu.rows[t]; r++) memcpy((uint8_t *)p + r * stride, td_emu.reg[t] + 64 * r, td_emu.colsb[t]);
}

static inline float td_emu_bf16(const uint8_t *p)
{
    uint32_t u = (uint32_t)(p[0] | (p[1] << 8)) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* C[m][n] += sum_k A[m][2k..2k+1] . B[k][n][0..1] (bf16 pairs, float accumulation) */
static inline void td_emu_dpbf16ps(int c, int a, int b)
{
    if (TD_AMX_EMULATE == 2) return;
    float *C = (float *)(void *)td_emu.reg[c];
    int M = td_emu.rows[a], K = td_emu.colsb[a] / 4, N = td_emu.colsb[b] / 4;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = C[16 * m + n];
            for (int k = 0; k < K; k++) {
                const uint8_t *pa = td_emu.reg[a] + 64 * m + 4 * k, *pb = td_emu.reg[b] + 64 * k + 4 * n;
                s += td_emu_bf16(pa) * td_emu_bf16(pb) + td_emu_bf16(pa + 2) * td_emu_bf16(pb + 2);
            }
            C[16 * m + n] = s;
        }
}

/* C[m][n] += sum_k sum_i A[m][4k+i] (unsigned) * B[k][4n+i] (signed), int32 */
static inline void td_emu_dpbusd(int c, int a, int b)
{
    if (TD_AMX_EMULATE == 2) return;
    int32_t *C = (int32_t *)(void *)td_emu.reg[c];
    int M = td_emu.rows[a], K = td_emu.colsb[a] / 4, N = td_emu.colsb[b] / 4;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            int32_t s = C[16 * m + n];
            for (int k = 0; k < K; k++)
                for (int i = 0; i < 4; i++)
                    s += (int32_t)td_emu.reg[a][64 * m + 4 * k + i] * (int32_t)(int8_t)td_emu.reg[b][64 * k + 4 * n + i];
            C[16 * m + n] = s;
        }
}

#define _tile_loadconfig(cfg) td_emu_loadconfig(cfg)
#define _tile_release() ((void)0)
#define _tile_zero(t) memset(td_emu.reg[t], 0, 1024)
#define _tile_loadd(t, p, s) td_emu_loadd(t, p, s)
#define _tile_stream_loadd(t, p, s) td_emu_loadd(t, p, s)
#define _tile_stored(t, p, s) td_emu_stored(t, p, s)
#define _tile_dpbf16ps(c, a, b) td_emu_dpbf16ps(c, a, b)
#define _tile_dpbusd(c, a, b) td_emu_dpbusd(c, a, b)

#endif
