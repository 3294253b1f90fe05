/* The AVX2 kernels against the scalar reference (skipped on CPUs without AVX2). */
#include "test_kernels_common.h"
#include "td_ops.h"

/* The vector SwiGLU product against silu in double, over the whole float range it sees (and past the
 * exp clamps), with odd lengths for the scalar tail. */
static void tk_check_silu(void)
{
    uint64_t rng = tk_seed();
    enum { N = 4099 };
    static float g[N], u[N], h[N];
    for (int i = 0; i < N; i++) {
        g[i] = (i < 8 ? 120.0f * (float)(i - 4) : td_test_randf(&rng) * (i % 7 == 0 ? 60.0f : 8.0f));
        u[i] = td_test_randf(&rng);
    }
    td_silu_mul_avx2(h, g, u, N);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        double want = (double)g[i] / (1.0 + exp(-(double)g[i])) * (double)u[i];
        double err = fabs((double)h[i] - want);
        if (!(err <= 4e-7 * fabs(want) + 1e-30) && bad++ < 3)
            TD_CHECKF(false, "silu(%g) * %g: got %.9g, want %.9g", (double)g[i], (double)u[i], (double)h[i], want);
    }
    TD_CHECKF(bad == 0, "td_silu_mul_avx2: %d of %d outside 4e-7 relative", bad, N);
}

int main(void)
{
    if (!td_cpu_has_isa(TD_ISA_AVX2)) return td_test_skip("this CPU has no AVX2");
    tk_check_act(TD_ISA_AVX2);
    tk_check_silu();
    tk_check_table(td_kernels_avx2_float, 1 << 20);
    tk_check_table(td_kernels_avx2_quant, 1 << 20);
    return td_test_finish();
}
