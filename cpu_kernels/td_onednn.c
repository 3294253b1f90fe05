#include "td_onednn.h"

#include "td_alloc.h"
#include "td_clock.h"
#include "td_randw.h"

#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <oneapi/dnnl/dnnl_version.h>
#include <stdio.h>
#include <string.h>

/* The memory descriptor API changed in oneDNN 3: opaque handles instead of structs. */
#if DNNL_VERSION_MAJOR >= 3
typedef dnnl_memory_desc_t td_dnnl_md;
#define TD_MD_ARG(md) (md)
static dnnl_status_t td_md_make(td_dnnl_md *md, const dnnl_dims_t dims, dnnl_data_type_t t, dnnl_format_tag_t tag)
{
    return dnnl_memory_desc_create_with_tag(md, 2, dims, t, tag);
}
static void td_md_free(td_dnnl_md md) { dnnl_memory_desc_destroy(md); }
static dnnl_status_t td_matmul_pd(dnnl_primitive_desc_t *pd, dnnl_engine_t eng, td_dnnl_md a, td_dnnl_md w, td_dnnl_md c)
{
    return dnnl_matmul_primitive_desc_create(pd, eng, a, w, NULL, c, NULL);
}
#else
typedef dnnl_memory_desc_t td_dnnl_md;
#define TD_MD_ARG(md) (&(md))
static dnnl_status_t td_md_make(td_dnnl_md *md, const dnnl_dims_t dims, dnnl_data_type_t t, dnnl_format_tag_t tag)
{
    return dnnl_memory_desc_init_by_tag(md, 2, dims, t, tag);
}
static void td_md_free(td_dnnl_md md) { (void)md; }
static dnnl_status_t td_matmul_pd(dnnl_primitive_desc_t *pd, dnnl_engine_t eng, td_dnnl_md a, td_dnnl_md w, td_dnnl_md c)
{
    dnnl_matmul_desc_t d;
    dnnl_status_t st = dnnl_matmul_desc_init(&d, &a, &w, NULL, &c);
    return st != dnnl_success ? st : dnnl_primitive_desc_create(pd, &d, NULL, eng, NULL);
}
#endif

#define TD_DNNL_TRY(call, what)                                                                                      \
    do {                                                                                                             \
        dnnl_status_t s_ = (call);                                                                                   \
        if (s_ != dnnl_success) {                                                                                    \
            st = td_fail(TD_E_DEVICE, "oneDNN: %s failed (status %d)", what, (int)s_);                               \
            goto done;                                                                                               \
        }                                                                                                            \
    } while (0)

/* oneDNN's OpenMP threads inherit the calling thread's CPU mask, and the pool pins its caller to one core:
 * open the mask to every CPU while oneDNN runs (and creates its threads), then put it back. */
static bool td_unpin(cpu_set_t *saved)
{
    if (pthread_getaffinity_np(pthread_self(), sizeof *saved, saved) != 0) return false;
    cpu_set_t all;
    CPU_ZERO(&all);
    long n = sysconf(_SC_NPROCESSORS_CONF);
    for (long i = 0; i < n && i < CPU_SETSIZE; i++) CPU_SET((int)i, &all);
    return pthread_setaffinity_np(pthread_self(), sizeof all, &all) == 0;
}

td_status td_onednn_matmul_bench(int64_t M, int64_t K, int64_t N, bool int8, uint64_t weight_bytes, double seconds,
                                 td_onednn_result *out)
{
    memset(out, 0, sizeof *out);
    cpu_set_t saved;
    bool unpinned = td_unpin(&saved);
    const dnnl_version_t *v = dnnl_version();
    snprintf(out->version, sizeof out->version, "%d.%d.%d", v->major, v->minor, v->patch);
    size_t es = int8 ? 1 : 2, wbytes = (size_t)(N * K) * es;
    int nw = (int)((weight_bytes + wbytes - 1) / wbytes);
    if (nw < 1) nw = 1;
    out->weights = nw;
    td_status st = TD_OK;
    dnnl_engine_t eng = NULL;
    dnnl_stream_t stream = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t ma = NULL, mc = NULL, *mw = td_calloc((size_t)nw, sizeof *mw);
    uint8_t **wbuf = td_calloc((size_t)nw, sizeof *wbuf);
    uint8_t *abuf = td_malloc_aligned((size_t)(M * K) * es + 64, 64), *cbuf = td_malloc_aligned((size_t)(M * N) * 4 + 64, 64);
    td_dnnl_md amd, wmd, cmd;
    bool have_md = false;
    if (!mw || !wbuf || !abuf || !cbuf) {
        st = td_fail(TD_E_NOMEM, "out of memory for the oneDNN comparison");
        goto done;
    }
    td_randw_fill(int8 ? TD_TYPE_I8 : TD_TYPE_BF16, abuf, (size_t)(M * K) * es, 7, 0);
    if (int8) for (int64_t i = 0; i < M * K; i++) abuf[i] &= 0x7f; /* u8 activations of a sane range */
    dnnl_dims_t ad = {M, K}, wd = {K, N}, cd = {M, N};
    TD_DNNL_TRY(td_md_make(&amd, ad, int8 ? dnnl_u8 : dnnl_bf16, dnnl_ab), "source descriptor");
    TD_DNNL_TRY(td_md_make(&wmd, wd, int8 ? dnnl_s8 : dnnl_bf16, dnnl_ba), "weights descriptor"); /* [N][K] rows */
    TD_DNNL_TRY(td_md_make(&cmd, cd, int8 ? dnnl_s32 : dnnl_f32, dnnl_ab), "destination descriptor");
    have_md = true;
    TD_DNNL_TRY(dnnl_engine_create(&eng, dnnl_cpu, 0), "engine");
    TD_DNNL_TRY(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags), "stream");
    TD_DNNL_TRY(td_matmul_pd(&pd, eng, amd, wmd, cmd), "matmul primitive descriptor");
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(out->impl, sizeof out->impl, "%s", impl);
    TD_DNNL_TRY(dnnl_primitive_create(&prim, pd), "matmul primitive");
    TD_DNNL_TRY(dnnl_memory_create(&ma, TD_MD_ARG(amd), eng, abuf), "source memory");
    TD_DNNL_TRY(dnnl_memory_create(&mc, TD_MD_ARG(cmd), eng, cbuf), "destination memory");
    for (int i = 0; i < nw; i++) {
        wbuf[i] = td_malloc_aligned(wbytes, 4096);
        if (!wbuf[i]) {
            st = td_fail(TD_E_NOMEM, "out of memory for %d oneDNN weight matrices", nw);
            goto done;
        }
        td_randw_fill(int8 ? TD_TYPE_I8 : TD_TYPE_BF16, wbuf[i], wbytes, 100 + (uint64_t)i, 0);
        TD_DNNL_TRY(dnnl_memory_create(&mw[i], TD_MD_ARG(wmd), eng, wbuf[i]), "weights memory");
    }
    double t = 0;
    int calls = 0;
    for (int i = -2; t < seconds || calls < 3; i++) { /* two warm-up calls */
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mw[(i + 2) % nw]}, {DNNL_ARG_DST, mc}};
        double t0 = td_now();
        TD_DNNL_TRY(dnnl_primitive_execute(prim, stream, 3, args), "matmul");
        TD_DNNL_TRY(dnnl_stream_wait(stream), "stream wait");
        if (i >= 0) {
            t += td_now() - t0;
            calls++;
        }
    }
    out->ms_per_call = t / calls * 1e3;
    out->tflops = 2.0 * (double)M * (double)K * (double)N * calls / t * 1e-12;
done:
    for (int i = 0; mw && i < nw; i++) dnnl_memory_destroy(mw[i]);
    for (int i = 0; wbuf && i < nw; i++) td_free(wbuf[i]);
    dnnl_memory_destroy(ma);
    dnnl_memory_destroy(mc);
    dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(eng);
    if (have_md) {
        td_md_free(amd);
        td_md_free(wmd);
        td_md_free(cmd);
    }
    td_free(mw);
    td_free(wbuf);
    td_free(abuf);
    td_free(cbuf);
    if (unpinned) pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
    return st;
}
