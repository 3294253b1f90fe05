#include "td_cpu.h"

#include "td_alloc.h"
#include "td_ops.h"

#include <strings.h>

struct td_cpu {
    td_cpu_params p;
    float *row_buf;  /* [max_cols] */
    float *xg;       /* [max_tokens][hidden]: tokens gathered for one expert */
    float *h_gate;   /* [max_tokens][ffn_width] */
    float *h_up;     /* [max_tokens][ffn_width] */
    float *yg;       /* [max_tokens][hidden] */
    int32_t *order;  /* [max_tokens * k]: token slots grouped by expert */
};

static const char *const td_kernel_names[TD_KERNELS_COUNT] = {"auto", "ref", "avx2", "avx512", "amx"};

const char *td_kernels_name(td_kernels k) { return (k >= 0 && k < TD_KERNELS_COUNT) ? td_kernel_names[k] : "?"; }

bool td_kernels_from_name(const char *name, td_kernels *out)
{
    for (int k = 0; k < TD_KERNELS_COUNT; k++) {
        if (strcasecmp(name, td_kernel_names[k]) == 0) {
            *out = (td_kernels)k;
            return true;
        }
    }
    return false;
}

td_status td_cpu_create(const td_cpu_params *p, td_cpu **out)
{
    *out = NULL;
    if (p->max_tokens < 1 || p->max_cols < 1 || p->hidden < 1 || p->ffn_width < 0)
        return td_fail(TD_E_ARG, "cpu context: max_tokens, max_cols and hidden must be positive");
    td_cpu *c = td_calloc(1, sizeof *c);
    if (!c) return td_fail(TD_E_NOMEM, "out of memory creating the CPU context");
    c->p = *p;
    size_t T = (size_t)p->max_tokens, H = (size_t)p->hidden, F = (size_t)(p->ffn_width ? p->ffn_width : 1);
    c->row_buf = td_malloc_aligned((size_t)p->max_cols * sizeof(float), 64);
    c->xg = td_malloc_aligned(T * H * sizeof(float), 64);
    c->yg = td_malloc_aligned(T * H * sizeof(float), 64);
    c->h_gate = td_malloc_aligned(T * F * sizeof(float), 64);
    c->h_up = td_malloc_aligned(T * F * sizeof(float), 64);
    if (!c->row_buf || !c->xg || !c->yg || !c->h_gate || !c->h_up) {
        td_cpu_free(c);
        return td_fail(TD_E_NOMEM, "out of memory for CPU scratch (%zu tokens x %zu hidden)", T, H);
    }
    *out = c;
    return TD_OK;
}

void td_cpu_free(td_cpu *cpu)
{
    if (!cpu) return;
    td_free(cpu->row_buf);
    td_free(cpu->xg);
    td_free(cpu->yg);
    td_free(cpu->h_gate);
    td_free(cpu->h_up);
    td_free(cpu->order);
    td_free(cpu);
}

td_kernels td_cpu_kernels(const td_cpu *cpu) { return cpu->p.kernels; }
int td_cpu_threads(const td_cpu *cpu) { return cpu->p.n_threads > 0 ? cpu->p.n_threads : 1; }

void td_cpu_linear(td_cpu *cpu, const td_matrix *w, const float *x, int64_t n, float *y)
{
    TD_ASSERT(w->cols <= cpu->p.max_cols);
    td_linear_ref(w, x, n, y, cpu->row_buf);
}

void td_cpu_linear_t(td_cpu *cpu, const td_matrix *w, const float *x, float *y)
{
    TD_ASSERT(w->cols <= cpu->p.max_cols);
    td_linear_t_ref(w, x, y, cpu->row_buf);
}

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
    int64_t H = cpu->p.hidden;
    TD_ASSERT(b->n_tok <= cpu->p.max_tokens);
    /* For each expert, gather the tokens routed to it, run its FFN once on that group, scatter back. */
    for (int e = 0; e < n_experts; e++) {
        int64_t m = 0;
        for (int64_t t = 0; t < b->n_tok; t++)
            for (int j = 0; j < b->k; j++)
                if (b->ids[t * b->k + j] == e) memcpy(cpu->xg + m++ * H, b->x + t * H, (size_t)H * sizeof(float));
        if (m == 0) continue;
        td_cpu_ffn(cpu, &experts[e], cpu->xg, m, cpu->yg);
        m = 0;
        for (int64_t t = 0; t < b->n_tok; t++)
            for (int j = 0; j < b->k; j++)
                if (b->ids[t * b->k + j] == e) td_axpy_f32(b->out + t * H, b->weights[t * b->k + j], cpu->yg + m++ * H, H);
    }
}
