/* The backends of this build: the CPU backend once per kernel set (and once with the routed experts on
 * its driver thread), the scalar reference first. */
#include "td_backend_registry.h"

#include "td_backend_cpu.h"
#include "td_cpu_features.h"

#include <stdio.h>
#include <string.h>

const char *td_backend_precision_name(td_backend_precision p)
{
    static const char *const names[TD_PRECISION_COUNT] = {"f32", "q8+residual", "bf16"};
    return (p >= 0 && p < TD_PRECISION_COUNT) ? names[p] : "?";
}

static td_status td_reg_cpu(const td_model *model, int64_t max_rows, td_kernels kernels, bool moe_async,
                            td_backend **out)
{
    td_backend_cpu_params p = {.kernels = kernels, .moe_async = moe_async};
    return td_backend_cpu_create(model, &p, max_rows, out);
}

static td_status td_reg_cpu_ref(const td_model *m, int64_t max_rows, td_backend **out)
{
    return td_reg_cpu(m, max_rows, TD_KERNELS_REF, false, out);
}

static td_status td_reg_cpu_auto(const td_model *m, int64_t max_rows, td_backend **out)
{
    return td_reg_cpu(m, max_rows, TD_KERNELS_AUTO, false, out);
}

static td_status td_reg_cpu_async(const td_model *m, int64_t max_rows, td_backend **out)
{
    return td_reg_cpu(m, max_rows, TD_KERNELS_AUTO, true, out);
}

static td_status td_reg_cpu_avx2(const td_model *m, int64_t max_rows, td_backend **out)
{
    return td_reg_cpu(m, max_rows, TD_KERNELS_AVX2, false, out);
}

static td_status td_reg_cpu_avx512(const td_model *m, int64_t max_rows, td_backend **out)
{
    return td_reg_cpu(m, max_rows, TD_KERNELS_AVX512, false, out);
}

static td_status td_reg_cpu_amx(const td_model *m, int64_t max_rows, td_backend **out)
{
    return td_reg_cpu(m, max_rows, TD_KERNELS_AMX, false, out);
}

static bool td_reg_always(char *why, size_t cap)
{
    (void)why;
    (void)cap;
    return true;
}

static bool td_reg_isa(td_isa isa, char *why, size_t cap)
{
    if (td_cpu_has_isa(isa)) return true;
    char have[256];
    snprintf(why, cap, "this CPU (or its OS) has no %s; it has: %s", td_isa_name(isa),
             td_cpu_features_describe(have, sizeof have));
    return false;
}

static bool td_reg_avx2(char *why, size_t cap) { return td_reg_isa(TD_ISA_AVX2, why, cap); }
static bool td_reg_avx512(char *why, size_t cap) { return td_reg_isa(TD_ISA_AVX512, why, cap); }
static bool td_reg_amx(char *why, size_t cap) { return td_reg_isa(TD_ISA_AMX, why, cap); }

static const td_backend_entry td_backend_entries[] = {
    {"cpu-ref", TD_PRECISION_F32, td_reg_always, td_reg_cpu_ref},
    /* the engine's default kernels: AVX2 or AVX-512, and the scalar ones on older CPUs */
    {"cpu-auto", TD_PRECISION_Q8, td_reg_always, td_reg_cpu_auto},
    /* the same with moe_submit handing the experts to a driver thread (the overlap) */
    {"cpu-auto-async", TD_PRECISION_Q8, td_reg_always, td_reg_cpu_async},
    {"cpu-avx2", TD_PRECISION_Q8, td_reg_avx2, td_reg_cpu_avx2},
    {"cpu-avx512", TD_PRECISION_Q8, td_reg_avx512, td_reg_cpu_avx512},
    /* bf16 tiles for batches of 16+ rows, the AVX-512 kernels below that */
    {"cpu-amx", TD_PRECISION_BF16, td_reg_amx, td_reg_cpu_amx},
};

const td_backend_entry *td_backend_registry(int *n_out)
{
    *n_out = (int)(sizeof td_backend_entries / sizeof td_backend_entries[0]);
    return td_backend_entries;
}

const td_backend_entry *td_backend_registry_reference(void) { return &td_backend_entries[0]; }

const td_backend_entry *td_backend_registry_find(const char *name)
{
    int n;
    const td_backend_entry *e = td_backend_registry(&n);
    for (int i = 0; i < n; i++)
        if (strcmp(e[i].name, name) == 0) return &e[i];
    return NULL;
}
