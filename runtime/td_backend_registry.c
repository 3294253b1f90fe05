/* The backends of this build: the CPU backend once per kernel set (and once with the routed experts on
 * its driver thread), the scalar reference first; then the first GPU, as the engine makes it (batches on
 * bf16 tensor cores) and exact (fp32 products throughout). */
#include "td_backend_registry.h"

#include "td_backend_cpu.h"
#include "td_backend_cuda.h"
#include "td_cpu_features.h"
#include "td_cuda.h"

#include <stdio.h>
#include <string.h>

const char *td_backend_precision_name(td_backend_precision p)
{
    static const char *const names[TD_PRECISION_COUNT] = {"f32", "q8+residual", "bf16"};
    return (p >= 0 && p < TD_PRECISION_COUNT) ? names[p] : "?";
}

static td_status td_reg_cpu_create(const td_backend_entry *e, const td_model *model, int64_t max_rows, td_backend **out)
{
    return td_backend_cpu_create(model, e->params, max_rows, out);
}

/* Kernels forced to an ISA need it; the automatic and reference ones run anywhere. */
static bool td_reg_cpu_available(const td_backend_entry *e, char *why, size_t cap)
{
    static const td_isa needs[TD_KERNELS_COUNT] = {
        [TD_KERNELS_AVX2] = TD_ISA_AVX2, [TD_KERNELS_AVX512] = TD_ISA_AVX512, [TD_KERNELS_AMX] = TD_ISA_AMX};
    const td_backend_cpu_params *p = e->params;
    td_isa isa = needs[p->kernels];
    if (td_cpu_has_isa(isa)) return true;
    char have[256];
    snprintf(why, cap, "this CPU (or its OS) has no %s; it has: %s", td_isa_name(isa),
             td_cpu_features_describe(have, sizeof have));
    return false;
}

static td_status td_reg_cuda_create(const td_backend_entry *e, const td_model *model, int64_t max_rows, td_backend **out)
{
    return td_backend_cuda_create(model, e->params, max_rows, out);
}

static bool td_reg_cuda_available(const td_backend_entry *e, char *why, size_t cap)
{
    const td_backend_cuda_params *p = e->params;
    if (!td_cuda_compiled()) {
        snprintf(why, cap, "this tandem was built without CUDA");
        return false;
    }
    int n = td_cuda_device_count();
    if (p->device < n) return true;
    snprintf(why, cap, "no GPU cuda:%d here (this machine has %d CUDA device%s)", p->device, n, n == 1 ? "" : "s");
    return false;
}

static const td_backend_cuda_params td_reg_cuda = {.device = 0, .bf16_gemm = true};
static const td_backend_cuda_params td_reg_cuda_exact = {.device = 0};

static const td_backend_cpu_params td_reg_ref = {.kernels = TD_KERNELS_REF};
/* the engine's default kernels: AVX2 or AVX-512, and the scalar ones on older CPUs */
static const td_backend_cpu_params td_reg_auto = {.kernels = TD_KERNELS_AUTO};
/* the same with moe_submit handing the experts to a driver thread (the overlap) */
static const td_backend_cpu_params td_reg_async = {.kernels = TD_KERNELS_AUTO, .moe_async = true};
static const td_backend_cpu_params td_reg_avx2 = {.kernels = TD_KERNELS_AVX2};
static const td_backend_cpu_params td_reg_avx512 = {.kernels = TD_KERNELS_AVX512};
/* bf16 tiles for batches of 16+ rows, the AVX-512 kernels below that */
static const td_backend_cpu_params td_reg_amx = {.kernels = TD_KERNELS_AMX};

static const td_backend_entry td_backend_entries[] = {
    {"cpu-ref", TD_PRECISION_F32, &td_reg_ref, td_reg_cpu_available, td_reg_cpu_create},
    {"cpu-auto", TD_PRECISION_Q8, &td_reg_auto, td_reg_cpu_available, td_reg_cpu_create},
    {"cpu-auto-async", TD_PRECISION_Q8, &td_reg_async, td_reg_cpu_available, td_reg_cpu_create},
    {"cpu-avx2", TD_PRECISION_Q8, &td_reg_avx2, td_reg_cpu_available, td_reg_cpu_create},
    {"cpu-avx512", TD_PRECISION_Q8, &td_reg_avx512, td_reg_cpu_available, td_reg_cpu_create},
    {"cpu-amx", TD_PRECISION_BF16, &td_reg_amx, td_reg_cpu_available, td_reg_cpu_create},
    {"cuda:0", TD_PRECISION_BF16, &td_reg_cuda, td_reg_cuda_available, td_reg_cuda_create},
    {"cuda:0-exact", TD_PRECISION_F32, &td_reg_cuda_exact, td_reg_cuda_available, td_reg_cuda_create},
};

const td_backend_entry *td_backend_registry(int *n_out)
{
    *n_out = (int)(sizeof td_backend_entries / sizeof td_backend_entries[0]);
    return td_backend_entries;
}

const td_backend_entry *td_backend_registry_reference(void)
{
    return &td_backend_entries[0];
}

const td_backend_entry *td_backend_registry_find(const char *name)
{
    int n;
    const td_backend_entry *e = td_backend_registry(&n);
    for (int i = 0; i < n; i++)
        if (strcmp(e[i].name, name) == 0) return &e[i];
    return NULL;
}
