/* What today's engine can honour of a plan: the same model, weights kept (not converted at load), and one
 * CPU kernel family for all modules. Devices are the engine's to check: it refuses a module that no
 * backend of this build can run. Plans asking for more are refused, never ignored. */
#include "td_plan.h"

#include <string.h>

td_status td_plan_engine_check(const td_plan *plan, const td_model *m, td_kernels *kernels)
{
    if (plan->n_modules != m->n_modules)
        return td_fail(TD_E_ARG, "the plan has %d modules but the model %s has %d: it was made for another model",
                       plan->n_modules, m->path, m->n_modules);
    const td_plan_module *chosen = NULL; /* the first module that asks for a specific kernel */
    for (int i = 0; i < plan->n_modules; i++) {
        const td_plan_module *pm = &plan->modules[i];
        char w[16];
        if (strcmp(pm->m.name, m->modules[i].name) != 0)
            return td_fail(TD_E_ARG, "the plan's module %d is %s but the model's is %s: it was made for another model",
                           i, pm->m.name, m->modules[i].name);
        if (pm->place.weights == TD_WEIGHTS_CONVERT)
            return td_fail(TD_E_UNSUPPORTED,
                           "%s asks for weights: %s (by %s), but converting weights at load is not written yet; use "
                           "weights: keep",
                           pm->m.name, td_weights_str(&pm->place, w, sizeof w), pm->origin);
        if (pm->place.kernel == TD_KERNELS_AUTO) continue;
        if (chosen && chosen->place.kernel != pm->place.kernel)
            return td_fail(TD_E_UNSUPPORTED,
                           "the plan asks for kernel %s for %s (by %s) and %s for %s (by %s), but the engine runs one "
                           "kernel family for every module (per-module kernels are not written yet)",
                           td_kernels_name(chosen->place.kernel), chosen->m.name, chosen->origin,
                           td_kernels_name(pm->place.kernel), pm->m.name, pm->origin);
        chosen = pm;
    }
    if (!chosen) return TD_OK;
    if (*kernels != TD_KERNELS_AUTO && *kernels != chosen->place.kernel)
        return td_fail(TD_E_ARG, "--kernels %s conflicts with the plan's kernel %s for %s (by %s)",
                       td_kernels_name(*kernels), td_kernels_name(chosen->place.kernel), chosen->m.name,
                       chosen->origin);
    *kernels = chosen->place.kernel;
    return TD_OK;
}
