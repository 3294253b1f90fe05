/* The engine: a model made ready to compute. It gives every module of the model the backend of its
 * placement (the plan's, or the CPU for all), refuses a plan a backend cannot run with the module, the
 * device and the reason, prepares each module's weights on its backend, and allocates the activations
 * of forward calls once. */
#include "td_alloc.h"
#include "td_backend_cpu.h"
#include "td_backend_cuda.h"
#include "td_plan.h"
#include "td_session_impl.h"

#include <stdio.h>
#include <string.h>

static const char *const td_kv_type_names[TD_KV_TYPE_COUNT] = {"auto", "f32", "bf16"};

const char *td_kv_type_name(td_kv_type t) { return (unsigned)t < TD_KV_TYPE_COUNT ? td_kv_type_names[t] : "?"; }

bool td_kv_type_from_name(const char *name, td_kv_type *out)
{
    for (int t = 0; t < TD_KV_TYPE_COUNT; t++)
        if (strcmp(name, td_kv_type_names[t]) == 0) {
            *out = (td_kv_type)t;
            return true;
        }
    return false;
}

int td_kv_type_bytes(td_kv_type t) { return t == TD_KV_F32 ? 4 : 2; }

/* The backend index for a module's device: [0] is the CPU, then one backend per GPU the plan uses, in
 * the order it first names them (e->gpu_device[b] is the CUDA device of backend b). */
static td_status td_engine_device_backend(td_engine *e, const td_plan_module *pm, int *out)
{
    if (pm->place.device.kind == TD_DEVICE_CPU) {
        *out = 0;
        return TD_OK;
    }
    int g = pm->place.device.index;
    for (int b = 1; b < e->n_backends; b++)
        if (e->gpu_device[b] == g) {
            *out = b;
            return TD_OK;
        }
    if (e->n_backends == TD_MAX_BACKENDS)
        return td_fail(TD_E_UNSUPPORTED, "%s is placed on cuda:%d (by %s), but the engine runs at most %d GPUs",
                       pm->m.name, g, pm->origin, TD_MAX_BACKENDS - 1);
    e->gpu_device[e->n_backends] = g;
    *out = e->n_backends++;
    return TD_OK;
}

/* module -> backend, from the plan or all on the CPU */
static td_status td_engine_map_modules(td_engine *e, const td_plan *plan)
{
    const td_model *m = e->model;
    e->module_backend = td_calloc((size_t)(m->n_modules ? m->n_modules : 1), sizeof *e->module_backend);
    e->layer = td_calloc((size_t)m->hp.n_layers + 1, sizeof *e->layer);
    if (!e->module_backend || !e->layer) return td_fail(TD_E_NOMEM, "out of memory");
    e->n_backends = 1;
    for (int i = 0; i < m->n_modules && plan; i++) TD_TRY(td_engine_device_backend(e, &plan->modules[i], &e->module_backend[i]));
    for (int i = 0; i < m->n_modules; i++) {
        const td_module *mod = &m->modules[i];
        int b = e->module_backend[i];
        td_layer_backends *lb = mod->layer >= 0 && mod->layer <= m->hp.n_layers ? &e->layer[mod->layer] : NULL;
        switch (mod->kind) {
        case TD_MODULE_EMBED: e->embed = b; break;
        case TD_MODULE_NORM: e->norm = b; break;
        case TD_MODULE_HEAD: e->head = b; break;
        case TD_MODULE_MTP: e->mtp = b; break;
        case TD_MODULE_ATTN: lb->attn = b; break;
        case TD_MODULE_DENSE_MLP: lb->mlp = b; break;
        case TD_MODULE_ROUTER: lb->router = b; break;
        case TD_MODULE_EXPERTS: lb->experts = b; break;
        case TD_MODULE_SHARED_EXPERTS: lb->shared = b; break;
        default: break;
        }
    }
    return TD_OK;
}

/* Whether the CPU's experts share a layer with work on another backend, which they could overlap. */
static bool td_engine_wants_async(const td_engine *e)
{
    const td_model *m = e->model;
    for (int l = 0; l <= m->hp.n_layers; l++) {
        const td_layer_backends *lb = &e->layer[l];
        bool moe = l < m->hp.n_layers ? m->layers[l].is_moe : m->mtp && m->mtp->layer.is_moe;
        if (moe && lb->experts == 0 && (lb->shared != 0 || lb->router != 0 || lb->attn != 0)) return true;
    }
    return false;
}

static td_status td_engine_check_supports(td_engine *e)
{
    const td_plan *plan = e->p.plan;
    if (!plan) return TD_OK;
    for (int i = 0; i < e->model->n_modules; i++) {
        const td_plan_module *pm = &plan->modules[i];
        td_backend *b = e->backends[e->module_backend[i]];
        char why[256] = "";
        if (!b->i->supports(b, &e->model->modules[i], pm->type, why, sizeof why))
            return td_fail(TD_E_UNSUPPORTED, "%s cannot run on %s (placed by %s): %s", pm->m.name, b->i->name(b),
                           pm->origin, why);
    }
    return TD_OK;
}

static td_status td_engine_alloc_acts(td_engine *e)
{
    const td_hparams *hp = &e->model->hp;
    int64_t B = e->p.max_batch, H = hp->hidden_size, k = hp->n_experts_per_tok ? hp->n_experts_per_tok : 1;
    const int64_t width[TD_ACT_COUNT] = {[TD_ACT_X] = H,   [TD_ACT_XN] = H, [TD_ACT_ACC] = H,    [TD_ACT_TMP] = H,
                                         [TD_ACT_IDS] = k, [TD_ACT_W] = k,  [TD_ACT_EMB2] = 2 * H, [TD_ACT_LOGITS] = hp->vocab_size};
    for (int a = 0; a < TD_ACT_COUNT; a++) {
        e->act[a].width = width[a];
        int64_t rows = a == TD_ACT_LOGITS ? (B < TD_FWD_MAX_SEQS ? B : TD_FWD_MAX_SEQS) : B;
        for (int b = 0; b < e->n_backends; b++)
            TD_TRY(e->backends[b]->i->buf_new(e->backends[b], (size_t)(rows * width[a]) * sizeof(float), &e->act[a].on[b]));
    }
    e->stage = td_malloc_aligned((size_t)(B * 2 * H) * sizeof(float), 64);
    e->tokens = td_malloc((size_t)B * sizeof(int32_t));
    e->ids_host = td_malloc((size_t)(B * k) * sizeof(int32_t));
    if (!e->stage || !e->tokens || !e->ids_host) return td_fail(TD_E_NOMEM, "out of memory for the forward pass");
    return TD_OK;
}

/* The CUDA backend of slot b: its device's budget from the plan; bf16 tensor cores for batches unless the
 * reference kernels were asked for. */
static td_status td_engine_gpu_backend(td_engine *e, int b)
{
    const td_plan *plan = e->p.plan;
    int g = e->gpu_device[b];
    td_backend_cuda_params cp = {.device = g, .bf16_gemm = e->p.kernels != TD_KERNELS_REF};
    for (int d = 0; d < plan->n_devices; d++)
        if (plan->devices[d].id.kind == TD_DEVICE_CUDA && plan->devices[d].id.index == g) cp.budget = plan->devices[d].budget;
    td_status st = td_backend_cuda_create(e->model, &cp, e->p.max_batch, &e->backends[b]);
    if (st != TD_OK) {
        for (int i = 0; i < e->model->n_modules; i++)
            if (e->module_backend[i] == b) {
                td_err_context("%s is placed on cuda:%d (by %s); to run without it, use --rules cpu-only",
                               plan->modules[i].m.name, g, plan->modules[i].origin);
                break;
            }
    }
    return st;
}

/* Every module's weights onto its backend, with progress on stderr when a GPU takes a gigabyte or more. */
static td_status td_engine_prepare(td_engine *e)
{
    const td_model *m = e->model;
    uint64_t total = 0, done = 0;
    for (int i = 0; i < m->n_modules; i++)
        if (!e->backends[e->module_backend[i]]->host_memory) total += m->modules[i].bytes;
    bool show = total >= (1ull << 30);
    for (int i = 0; i < m->n_modules; i++) {
        td_backend *b = e->backends[e->module_backend[i]];
        const struct td_placement *place = e->p.plan ? &e->p.plan->modules[i].place : NULL;
        TD_TRY(b->i->prepare(b, m, &m->modules[i], place));
        if (b->host_memory) continue;
        done += m->modules[i].bytes;
        if (show)
            fprintf(stderr, "\rloading weights onto the GPU: %5.1f of %.1f GiB", (double)done / (1ull << 30),
                    (double)total / (1ull << 30));
    }
    if (show) fprintf(stderr, "\n");
    return TD_OK;
}

td_status td_engine_open(td_model *model, const td_engine_params *p, td_engine **out)
{
    *out = NULL;
    td_engine_params params = p ? *p : (td_engine_params){0};
    if (params.max_batch == 0) params.max_batch = 512;
    if (params.max_batch < 1 || params.max_batch > 65536)
        return td_fail(TD_E_ARG, "batch size %lld is out of range (1..65536)", (long long)params.max_batch);
    if (params.n_threads < 0 || params.n_threads > 4096)
        return td_fail(TD_E_ARG, "thread count %d is out of range (0 = all cores, up to 4096)", params.n_threads);
    if ((unsigned)params.kernels >= TD_KERNELS_COUNT) return td_fail(TD_E_ARG, "unknown kernel choice");
    if ((unsigned)params.moe_async >= TD_MOE_ASYNC_COUNT) return td_fail(TD_E_ARG, "unknown MoE submission mode");
    if (params.plan && params.plan->n_modules != model->n_modules)
        return td_fail(TD_E_ARG, "the plan has %d modules but the model %s has %d: it was made for another model",
                       params.plan->n_modules, model->path, model->n_modules);
    td_engine *e = td_calloc(1, sizeof *e);
    if (!e) return td_fail(TD_E_NOMEM, "out of memory");
    e->model = model;
    td_status st = td_engine_map_modules(e, params.plan);
    if (st == TD_OK && params.plan) st = td_plan_engine_check(params.plan, model, &params.kernels);
    e->p = params;
    int n_gpus = e->n_backends - 1;
    e->n_backends = 0; /* counts the backends made from here on, for td_engine_close */
    if (st == TD_OK) {
        bool async = params.moe_async == TD_MOE_ASYNC_ON || (params.moe_async == TD_MOE_ASYNC_AUTO && td_engine_wants_async(e));
        td_backend_cpu_params cp = {.kernels = params.kernels, .n_threads = params.n_threads, .moe_async = async,
                                    .topology = params.topology};
        st = td_backend_cpu_create(model, &cp, params.max_batch, &e->backends[0]);
        if (st == TD_OK) e->n_backends = 1;
    }
    for (int b = 1; st == TD_OK && b <= n_gpus; b++) {
        st = td_engine_gpu_backend(e, b);
        if (st == TD_OK) e->n_backends = b + 1;
    }
    if (st == TD_OK) st = td_engine_check_supports(e);
    if (st == TD_OK) st = td_engine_prepare(e);
    if (st == TD_OK) st = td_engine_alloc_acts(e);
    for (int b = 0; st == TD_OK && b < e->n_backends; b++) st = e->backends[b]->i->reserve(e->backends[b], params.max_batch, 1);
    if (st != TD_OK) {
        td_engine_close(e);
        return st;
    }
    *out = e;
    return TD_OK;
}

void td_engine_close(td_engine *e)
{
    if (!e) return;
    for (int b = 0; b < e->n_backends; b++) {
        td_backend *be = e->backends[b];
        for (int a = 0; a < TD_ACT_COUNT; a++)
            if (e->act[a].on[b]) be->i->buf_free(be, e->act[a].on[b]);
        be->i->free(be);
    }
    td_free(e->module_backend);
    td_free(e->layer);
    td_free(e->stage);
    td_free(e->tokens);
    td_free(e->ids_host);
    td_free(e);
}

td_model *td_engine_model(const td_engine *e) { return e->model; }
td_cpu *td_engine_cpu(const td_engine *e) { return td_backend_cpu_context(e->backends[0]); }
int64_t td_engine_max_batch(const td_engine *e) { return e->p.max_batch; }

int td_engine_backends(const td_engine *e, td_backend *const **out)
{
    *out = e->backends;
    return e->n_backends;
}

td_backend *td_engine_module_backend(const td_engine *e, int index)
{
    return index >= 0 && index < e->model->n_modules ? e->backends[e->module_backend[index]] : NULL;
}

/* Scratch on every backend for sessions of up to n_ctx positions (when a larger one is created). */
td_status td_engine_reserve_ctx(td_engine *e, int64_t n_ctx)
{
    if (n_ctx <= e->max_ctx) return TD_OK;
    for (int b = 0; b < e->n_backends; b++) TD_TRY(e->backends[b]->i->reserve(e->backends[b], e->p.max_batch, n_ctx));
    e->max_ctx = n_ctx;
    return TD_OK;
}
