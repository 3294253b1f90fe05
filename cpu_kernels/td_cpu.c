/* The CPU compute context: kernel choice, the thread pool, scratch memory, and the dense products.
 * With TD_KERNELS_REF every entry point is the scalar reference on the calling thread, unchanged. */
#include "td_cpu.h"

#include "td_alloc.h"
#include "td_cpu_impl.h"
#include "td_dequant.h"
#include "td_ops.h"

#include <stdio.h>
#include <string.h>

/* Matrices at least this large are read from memory rather than cache during decode (a DeepSeek-V3
 * expert matrix is 8 MiB at Q4_K; the bundled model's largest is 1 MiB). */
#define TD_STREAMED_MATRIX_BYTES (4u << 20)

/* Below this many multiply-adds a product runs on the calling thread: waking the pool costs more. */
#define TD_PARALLEL_MIN_MACS (1 << 17)

static td_status td_cpu_choose_isa(td_cpu *c)
{
    static const td_isa wanted[TD_KERNELS_COUNT] = {
        [TD_KERNELS_AVX2] = TD_ISA_AVX2, [TD_KERNELS_AVX512] = TD_ISA_AVX512, [TD_KERNELS_AMX] = TD_ISA_AMX};
    switch (c->p.kernels) {
    case TD_KERNELS_REF:
        c->ref = true;
        c->isa = TD_ISA_SCALAR;
        return TD_OK;
    case TD_KERNELS_AUTO:
        /* Not AMX: its bf16 tiles round weights and activations to 8 significant bits, and on the AMX
         * host eval then gave KL 4.0e-3 and 4.8e-3 on two fixtures (the contract is 1e-3; AVX-512's 8+8-bit
         * activations give 1e-8). --kernels amx opts in for the faster prefill (bench/RESULTS.md). */
        c->isa = td_cpu_best_isa();
        if (c->isa > TD_ISA_AVX512) c->isa = TD_ISA_AVX512;
        c->prefer_avx2 = true;
        return TD_OK;
    case TD_KERNELS_AVX2:
    case TD_KERNELS_AVX512:
    case TD_KERNELS_AMX:
        c->isa = wanted[c->p.kernels];
        if (!td_cpu_has_isa(c->isa)) {
            char have[256];
            return td_fail(TD_E_UNSUPPORTED, "kernels '%s' need %s, which this CPU (or its OS) does not offer; it has: %s. "
                           "Use --kernels auto", td_kernels_name(c->p.kernels), td_isa_name(c->isa),
                           td_cpu_features_describe(have, sizeof have));
        }
        return TD_OK;
    default: return td_fail(TD_E_ARG, "unknown kernel choice %d", (int)c->p.kernels);
    }
}

size_t td_cpu_tile_bytes(const td_cpu_params *p)
{
    /* MoE: gate and up tiles [batch][rows up], the down tile [batch][rows down]; the transposed product
     * keeps a dequantized row here too */
    size_t moe = (size_t)TD_MOE_TOK_BATCH * (2 * TD_MOE_ROWS_UP + TD_MOE_ROWS_DOWN) * sizeof(float);
    size_t row = (size_t)p->max_cols * sizeof(float);
    return (moe > row ? moe : row) + 64;
}

static td_status td_cpu_alloc_fast(td_cpu *c)
{
    const td_cpu_params *p = &c->p;
    td_pool_params pp = {.n_threads = p->n_threads, .topo = c->topo, .pin = true};
    TD_TRY(td_pool_create(&pp, &c->pool));
    c->nth = td_pool_threads(c->pool);
    c->kern_bytes = (td_kern_scratch_bytes(p->max_cols) + 63) / 64 * 64;
    c->kscratch_stride = c->kern_bytes + (td_cpu_tile_bytes(p) + 63) / 64 * 64;
    size_t xa_row = 0;
    for (int a = 0; a < TD_ACT_COUNT; a++) {
        size_t r = td_act_row_bytes((td_act)a, p->max_cols);
        if (r > xa_row) xa_row = r;
    }
    c->xa_row = xa_row;
    c->kscratch = td_malloc_aligned((size_t)c->nth * c->kscratch_stride, 64);
    c->xa = td_malloc_aligned((size_t)p->max_tokens * xa_row, 64);
    c->xptr = td_calloc((size_t)p->max_tokens, sizeof *c->xptr);
    c->partials = td_malloc_aligned((size_t)c->nth * (size_t)p->max_cols * sizeof(float), 64);
    if (!c->kscratch || !c->xa || !c->xptr || !c->partials)
        return td_fail(TD_E_NOMEM, "out of memory for the CPU kernels' scratch (%d threads, %lld columns)", c->nth,
                       (long long)p->max_cols);
    return td_moe_scratch_alloc(c);
}

td_status td_cpu_create(const td_cpu_params *p, td_cpu **out)
{
    *out = NULL;
    if (p->max_tokens < 1 || p->max_cols < 1 || p->hidden < 1 || p->ffn_width < 0)
        return td_fail(TD_E_ARG, "cpu context: max_tokens, max_cols and hidden must be positive");
    if (p->n_threads < 0 || p->n_experts < 0 || p->top_k < 0)
        return td_fail(TD_E_ARG, "cpu context: threads, experts and top-k cannot be negative");
    td_cpu *c = td_calloc(1, sizeof *c);
    if (!c) return td_fail(TD_E_NOMEM, "out of memory creating the CPU context");
    c->p = *p;
    c->nth = 1;
    td_status st = td_cpu_choose_isa(c);
    if (st != TD_OK) goto fail;
    size_t T = (size_t)p->max_tokens, F = (size_t)(p->ffn_width ? p->ffn_width : 1);
    c->row_buf = td_malloc_aligned((size_t)p->max_cols * sizeof(float), 64);
    c->h_gate = td_malloc_aligned(T * F * sizeof(float), 64);
    c->h_up = td_malloc_aligned(T * F * sizeof(float), 64);
    if (!c->row_buf || !c->h_gate || !c->h_up) {
        st = td_fail(TD_E_NOMEM, "out of memory for CPU scratch (%zu tokens x %zu ffn width)", T, F);
        goto fail;
    }
    if (c->ref) {
        st = td_moe_scratch_alloc(c);
        if (st != TD_OK) goto fail;
        *out = c;
        return TD_OK;
    }
    if ((st = td_topo_load(p->topology, &c->topo)) != TD_OK) goto fail;
    if ((st = td_cpu_alloc_fast(c)) != TD_OK) goto fail;
    *out = c;
    return TD_OK;
fail:
    td_cpu_free(c);
    return st;
}

void td_cpu_free(td_cpu *cpu)
{
    if (!cpu) return;
    td_pool_free(cpu->pool);
    td_topo_free(cpu->topo);
    td_moe_scratch_free(&cpu->moe);
    td_free(cpu->row_buf);
    td_free(cpu->h_gate);
    td_free(cpu->h_up);
    td_free(cpu->kscratch);
    td_free(cpu->xa);
    td_free(cpu->xptr);
    td_free(cpu->partials);
    td_free(cpu);
}

td_kernels td_cpu_kernels(const td_cpu *cpu) { return cpu->p.kernels; }
int td_cpu_threads(const td_cpu *cpu) { return cpu->nth; }
int td_cpu_nodes(const td_cpu *cpu)
{
    if (cpu->ref) return 1;
    const td_thread_plan *plan = td_pool_plan(cpu->pool);
    int used = 0;
    for (int g = 0; g < plan->n_nodes; g++) used += plan->node_threads[g] > 0;
    return used;
}

const char *td_cpu_describe(const td_cpu *cpu, char *buf, int cap)
{
    if (cpu->ref) {
        snprintf(buf, (size_t)cap, "reference kernels, 1 thread");
        return buf;
    }
    int nodes = td_cpu_nodes(cpu);
    snprintf(buf, (size_t)cap, "%s, %d thread%s on %d NUMA node%s%s", td_isa_name(cpu->isa), cpu->nth,
             cpu->nth == 1 ? "" : "s", nodes, nodes == 1 ? "" : "s",
             td_pool_pinned(cpu->pool) ? ", pinned" : ", not pinned");
    return buf;
}

const td_kernel *td_cpu_pick(const td_cpu *cpu, const td_matrix *w, int64_t n_tok)
{
    /* One token (decode): the AVX2 kernels win where weights stream from memory, the AVX-512 ones on small,
     * cached matrices. Batches are compute-bound and the AVX-512 kernels do them faster: 1.6-2.3x on one
     * Zen 5 core (Q4_K, 2-64 tokens), 0.79 against 0.38 TFLOP/s for a 512-token MoE layer on the Xeon. */
    bool streamed = (uint64_t)w->rows * w->row_bytes >= TD_STREAMED_MATRIX_BYTES;
    const td_kernel *k = td_kernel_find(w->type, cpu->isa, cpu->prefer_avx2 && streamed && n_tok == 1, w->cols, n_tok);
    return k ? k : td_kernel_generic(cpu->isa);
}

float td_cpu_dot(const td_cpu *cpu, const float *a, const float *b, int64_t n)
{
    return !cpu->ref && cpu->isa >= TD_ISA_AVX2 ? td_dot_f32_avx2(a, b, n) : td_dot_f32(a, b, n);
}

void td_cpu_axpy(const td_cpu *cpu, float *y, float a, const float *x, int64_t n)
{
    if (!cpu->ref && cpu->isa >= TD_ISA_AVX2) td_axpy_f32_avx2(y, a, x, n);
    else td_axpy_f32(y, a, x, n);
}

const char *td_cpu_kernel_name(const td_cpu *cpu, td_type type, int64_t cols, int64_t n_tok)
{
    if (cpu->ref) return "ref";
    /* named for a matrix as large as DeepSeek-V3's (streamed from memory) */
    td_matrix m = {.type = type, .cols = cols, .rows = 2048, .row_bytes = td_type_row_bytes(type, cols)};
    return td_cpu_pick(cpu, &m, n_tok)->name;
}

/* ------------------------------------------------------------------ y = W x */

typedef struct td_linear_job {
    td_cpu *cpu;
    const td_matrix *w;
    const td_kernel *k;
    const float *x;
    int64_t n;
    float *y;
    int64_t chunk, n_chunks;
    _Atomic int64_t next;
} td_linear_job;

static void td_linear_task(const td_pool_task *t, void *arg)
{
    td_linear_job *j = arg;
    td_cpu *cpu = j->cpu;
    int64_t cols = j->w->cols;
    if (j->k->act != TD_ACT_F32) {
        for (int64_t i = t->ith; i < j->n; i += t->nth)
            td_act_prepare(j->k->act, cpu->isa, j->x + i * cols, cols, cpu->xa + (size_t)i * cpu->xa_row);
        td_pool_barrier(t);
    }
    td_kern_ctx ctx = td_cpu_kctx(cpu, t->ith);
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (c >= j->n_chunks) break;
        int64_t r0 = c * j->chunk, r1 = r0 + j->chunk < j->w->rows ? r0 + j->chunk : j->w->rows;
        j->k->fn(&ctx, j->w, r0, r1, cpu->xptr, j->n, j->y + r0, j->w->rows);
    }
}

void td_cpu_linear(td_cpu *cpu, const td_matrix *w, const float *x, int64_t n, float *y)
{
    TD_ASSERT(w->cols <= cpu->p.max_cols && n <= cpu->p.max_tokens);
    if (cpu->ref) {
        td_linear_ref(w, x, n, y, cpu->row_buf);
        return;
    }
    td_linear_job j = {.cpu = cpu, .w = w, .k = td_cpu_pick(cpu, w, n), .x = x, .n = n, .y = y};
    for (int64_t i = 0; i < n; i++)
        cpu->xptr[i] = j.k->act == TD_ACT_F32 ? (const void *)(x + i * w->cols) : cpu->xa + (size_t)i * cpu->xa_row;
    bool parallel = cpu->nth > 1 && w->rows * w->cols * n >= TD_PARALLEL_MIN_MACS;
    int64_t parts = parallel ? (int64_t)cpu->nth * 8 : 1;
    j.chunk = (w->rows + parts - 1) / parts;
    j.chunk = (j.chunk + 31) / 32 * 32; /* whole AMX panels, and rows of one chunk stay on one thread */
    j.n_chunks = (w->rows + j.chunk - 1) / j.chunk;
    atomic_init(&j.next, 0);
    if (parallel) {
        td_pool_run(cpu->pool, td_linear_task, &j);
    } else {
        td_pool_task solo = {.ith = 0, .nth = 1};
        td_linear_task(&solo, &j);
    }
}

/* ------------------------------------------------------------------ y = W^T x */

typedef struct td_linear_t_job {
    td_cpu *cpu;
    const td_matrix *w;
    const float *x;
    float *y;
    int parts;
} td_linear_t_job;

static void td_linear_t_task(const td_pool_task *t, void *arg)
{
    td_linear_t_job *j = arg;
    td_cpu *cpu = j->cpu;
    const td_matrix *w = j->w;
    int64_t cols = w->cols;
    float *part = cpu->partials + (size_t)t->ith * (size_t)cpu->p.max_cols;
    float *row = td_cpu_tiles(cpu, t->ith);
    int64_t r0 = w->rows * t->ith / j->parts, r1 = w->rows * (t->ith + 1) / j->parts;
    memset(part, 0, (size_t)cols * sizeof(float));
    for (int64_t r = r0; r < r1; r++) {
        td_matrix_dequant_row(w, r, row);
        if (cpu->isa >= TD_ISA_AVX2) td_axpy_f32_avx2(part, j->x[r], row, cols);
        else td_axpy_f32(part, j->x[r], row, cols);
    }
    td_pool_barrier(t);
    /* fixed order over the partial sums: the result does not depend on timing */
    int64_t c0 = cols * t->ith / t->nth, c1 = cols * (t->ith + 1) / t->nth;
    for (int64_t c = c0; c < c1; c++) {
        float s = 0.0f;
        for (int p = 0; p < j->parts; p++) s += cpu->partials[(size_t)p * (size_t)cpu->p.max_cols + (size_t)c];
        j->y[c] = s;
    }
}

void td_cpu_linear_t(td_cpu *cpu, const td_matrix *w, const float *x, float *y)
{
    TD_ASSERT(w->cols <= cpu->p.max_cols);
    if (cpu->ref) {
        td_linear_t_ref(w, x, y, cpu->row_buf);
        return;
    }
    td_linear_t_job j = {.cpu = cpu, .w = w, .x = x, .y = y, .parts = cpu->nth};
    if (cpu->nth > 1 && w->rows * w->cols >= TD_PARALLEL_MIN_MACS) {
        td_pool_run(cpu->pool, td_linear_t_task, &j);
    } else {
        j.parts = 1;
        td_pool_task solo = {.ith = 0, .nth = 1};
        td_linear_t_task(&solo, &j);
    }
}

/* ------------------------------------------------------------------ dense FFN */

void td_cpu_ffn(td_cpu *cpu, const td_ffn_weights *f, const float *x, int64_t n, float *out)
{
    int64_t I = f->gate.rows;
    TD_ASSERT(n <= cpu->p.max_tokens && I <= cpu->p.ffn_width);
    td_cpu_linear(cpu, &f->gate, x, n, cpu->h_gate);
    td_cpu_linear(cpu, &f->up, x, n, cpu->h_up);
    for (int64_t i = 0; i < n * I; i++) cpu->h_gate[i] = td_silu(cpu->h_gate[i]) * cpu->h_up[i];
    td_cpu_linear(cpu, &f->down, cpu->h_gate, n, out);
}

void td_cpu_moe(td_cpu *cpu, const td_ffn_weights *experts, int n_experts, const td_moe_batch *b)
{
    /* the scratch holds max_tokens x top_k slots and counts for max_experts experts */
    TD_ASSERT(b->n_tok <= cpu->p.max_tokens);
    TD_ASSERT(cpu->ref || (b->k <= cpu->moe.top_k && n_experts <= cpu->moe.max_experts));
    if (cpu->ref) td_moe_ref(cpu, experts, n_experts, b);
    else td_moe_run(cpu, experts, n_experts, b);
}
