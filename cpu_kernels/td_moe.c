/* Routed experts of one MoE layer for a batch of tokens.
 *
 * The caller groups the (token, expert) slots by expert with a counting sort, so each expert's weights
 * are read once per batch. One pool job then runs three phases separated by barriers:
 *   0. every token's input is prepared once (quantized to Q8_K, or rounded to bf16);
 *   1. gate and up, fused: work items are (expert, 512 rows with the AMX tiles, 64 with the vector
 *      kernels); each computes silu(gate) * up for the expert's tokens, and the item that completes a
 *      512-wide block of h prepares it for the down projection (as AMX B tiles, once per expert, when the
 *      down projection runs on AMX);
 *   2. down and the weighted sum: work items are 64 output rows, each running every expert of its node
 *      over those rows, so one thread owns each output element and no atomics are needed.
 * An expert's tokens go to the kernels up to TD_MOE_TOK_BATCH (96) at a time: one pass over its weights
 * for all of them in a 2048-token prefill. Thread 0 books each phase's time and the threads' wait at its
 * end (td_cpu_moe_phase_times, td_cpu_moe_idle_times).
 * With several NUMA nodes, each node's threads take only the items of the experts homed on that node
 * and write a partial output, and a last phase adds the partials. The result does not depend on the
 * thread count or timing: each output element is summed in a fixed order. */
#include "td_alloc.h"
#include "td_clock.h"
#include "td_cpu_impl.h"
#include "td_numa.h"
#include "td_ops.h"

#include <string.h>

static size_t td_max_act_row(int64_t cols)
{
    size_t r = td_act_row_bytes(TD_ACT_Q8K, cols), b = td_act_row_bytes(TD_ACT_BF16, cols);
    return r > b ? r : b;
}

static int td_cpu_used_nodes(const td_cpu *cpu)
{
    const td_thread_plan *plan = td_pool_plan(cpu->pool);
    int used = 0;
    for (int g = 0; g < plan->n_nodes; g++) used += plan->node_threads[g] > 0;
    return used;
}

td_status td_moe_scratch_alloc(td_cpu *cpu)
{
    td_moe_scratch *m = &cpu->moe;
    const td_cpu_params *p = &cpu->p;
    size_t T = (size_t)p->max_tokens, H = (size_t)p->hidden;
    if (cpu->ref) {
        m->xg = td_malloc_aligned(T * H * sizeof(float), 64);
        m->yg = td_malloc_aligned(T * H * sizeof(float), 64);
        if (!m->xg || !m->yg) return td_fail(TD_E_NOMEM, "out of memory for CPU scratch (%zu tokens x %zu hidden)", T, H);
        return TD_OK;
    }
    int64_t Fw = p->expert_width ? p->expert_width : p->ffn_width;
    size_t F = (size_t)(Fw > 0 ? Fw : 1);
    m->max_experts = p->n_experts ? p->n_experts : 256;
    m->top_k = p->top_k ? p->top_k : 8;
    m->max_slots = p->max_tokens * m->top_k;
    size_t S = (size_t)m->max_slots, E = (size_t)m->max_experts;
    m->xq_row = td_max_act_row(p->hidden);
    m->hq_row = td_max_act_row((int64_t)F);
    m->count = td_calloc(E + 1, sizeof *m->count);
    m->done_at = td_calloc((size_t)td_pool_threads(cpu->pool), sizeof *m->done_at);
    if (!m->done_at) return td_fail(TD_E_NOMEM, "out of memory for the MoE scratch");
    m->fill = td_calloc(E, sizeof *m->fill);
    m->active = td_calloc(E, sizeof *m->active);
    m->slot_tok = td_calloc(S, sizeof *m->slot_tok);
    m->slot_w = td_calloc(S, sizeof *m->slot_w);
    m->xq = td_malloc_aligned(T * m->xq_row, 64);
    m->h = td_malloc_aligned(S * F * sizeof(float), 64);
    m->hq = td_malloc_aligned(S * m->hq_row, 64);
    m->n_hblk = ((int64_t)F + TD_MOE_HBLK - 1) / TD_MOE_HBLK;
    m->hblk_done = td_calloc(E * (size_t)m->n_hblk, sizeof *m->hblk_done);
    m->xptr = td_calloc(S, sizeof *m->xptr);
    m->hptr = td_calloc(S, sizeof *m->hptr);
    if (cpu->isa >= TD_ISA_AMX) { /* the down projection's B tiles, laid out once per expert */
        m->htile_group = (size_t)((F + 31) / 32) * 1024;
        m->htiles = td_malloc_aligned((S / 16 + E + 1) * m->htile_group, 64);
        m->hgroup = td_calloc(E, sizeof *m->hgroup);
        if (!m->htiles || !m->hgroup)
            return td_fail(TD_E_NOMEM, "out of memory for the MoE B tiles (%zu tokens x %d experts each, width %zu)", T,
                           m->top_k, F);
    }
    int nodes = td_cpu_used_nodes(cpu);
    if (nodes > 1) m->partial = td_malloc_aligned((size_t)td_pool_plan(cpu->pool)->n_nodes * T * H * sizeof(float), 64);
    if (!m->count || !m->fill || !m->active || !m->slot_tok || !m->slot_w || !m->xq || !m->h || !m->hq || !m->xptr ||
        !m->hptr || !m->hblk_done || (nodes > 1 && !m->partial))
        return td_fail(TD_E_NOMEM, "out of memory for the MoE scratch (%zu tokens x %d experts each, width %zu)", T,
                       m->top_k, F);
    return TD_OK;
}

void td_moe_scratch_free(td_moe_scratch *m)
{
    td_free(m->count);
    td_free(m->fill);
    td_free(m->active);
    td_free(m->slot_tok);
    td_free(m->slot_w);
    td_free(m->xq);
    td_free(m->h);
    td_free(m->hq);
    td_free(m->xptr);
    td_free(m->hptr);
    td_free(m->partial);
    td_free((void *)m->hblk_done);
    td_free(m->done_at);
    td_free(m->htiles);
    td_free(m->hgroup);
    td_free(m->xg);
    td_free(m->yg);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ reference */

void td_moe_ref(td_cpu *cpu, const td_ffn_weights *experts, int n_experts, const td_moe_batch *b)
{
    int64_t H = cpu->p.hidden;
    float *xg = cpu->moe.xg, *yg = cpu->moe.yg;
    /* For each expert, gather the tokens routed to it, run its FFN once on that group, scatter back. */
    for (int e = 0; e < n_experts; e++) {
        int64_t m = 0;
        for (int64_t t = 0; t < b->n_tok; t++)
            for (int j = 0; j < b->k; j++)
                if (b->ids[t * b->k + j] == e) memcpy(xg + m++ * H, b->x + t * H, (size_t)H * sizeof(float));
        if (m == 0) continue;
        td_cpu_ffn(cpu, &experts[e], xg, m, yg);
        m = 0;
        for (int64_t t = 0; t < b->n_tok; t++)
            for (int j = 0; j < b->k; j++)
                if (b->ids[t * b->k + j] == e) td_axpy_f32(b->out + t * H, b->weights[t * b->k + j], yg + m++ * H, H);
    }
}

/* ------------------------------------------------------------------ fast path */

typedef struct td_moe_job {
    td_cpu *cpu;
    const td_ffn_weights *ex;
    const td_moe_batch *b;
    const td_kernel *kg, *ku, *kd;
    int64_t H, F;
    int64_t rows_up; /* gate/up rows per work item (divides TD_MOE_HBLK) */
    int n_nodes;
    bool partial;
} td_moe_job;

static void td_moe_prepare_x(const td_pool_task *t, const td_moe_job *j)
{
    td_cpu *cpu = j->cpu;
    td_moe_scratch *m = &cpu->moe;
    if (j->kg->act == TD_ACT_F32) return;
    for (int64_t i = t->ith; i < j->b->n_tok; i += t->nth)
        td_act_prepare(j->kg->act, cpu->isa, j->b->x + i * j->H, j->H, m->xq + (size_t)i * m->xq_row);
}

static bool td_moe_htiled(const td_moe_scratch *m, const td_moe_job *j) { return m->htiles && j->kd->isa == TD_ISA_AMX; }

/* h rows [r0, r1) of every slot of active expert a, prepared for the down projection */
static void td_moe_prepare_h(td_cpu *cpu, const td_moe_job *j, int e, int64_t r0, int64_t r1)
{
    td_moe_scratch *m = &cpu->moe;
    td_act hact = j->kd->act;
    int64_t s1 = m->fill[e], s0 = s1 - m->count[e];
    for (int64_t s = s0; s < s1; s++)
        td_act_prepare_range(hact, cpu->isa, m->h + (size_t)s * (size_t)j->F, j->F, r0, r1, m->hq + (size_t)s * m->hq_row);
    if (!td_moe_htiled(m, j)) return;
    /* the AMX down projection reads these columns as B tiles: lay them out once here, not in every call */
    uint8_t *g0 = m->htiles + (size_t)m->hgroup[e] * m->htile_group;
    for (int64_t s = s0; s < s1; s += 16)
        td_amx_pack_btiles(m->hptr + s, (int)(s1 - s < 16 ? s1 - s : 16), r0 / 32, (r1 + 31) / 32,
                           g0 + (size_t)((s - s0) / 16) * m->htile_group);
}

static void td_moe_gate_up(const td_pool_task *t, const td_moe_job *j)
{
    td_cpu *cpu = j->cpu;
    td_moe_scratch *m = &cpu->moe;
    td_kern_ctx ctx = td_cpu_kctx(cpu, t->ith);
    int64_t R = j->rows_up;
    float *gt = td_cpu_tiles(cpu, t->ith), *ut = gt + TD_MOE_TOK_BATCH * R;
    int g = t->node, a0 = m->node_active[g], a1 = m->node_active[g + 1];
    int64_t F = j->F, nch = (F + R - 1) / R, items = (a1 - a0) * nch;
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&cpu->next[g][0], 1, memory_order_relaxed);
        if (i >= items) break;
        int a = a0 + (int)(i / nch), e = m->active[a];
        int64_t r0 = (i % nch) * R, r1 = r0 + R < F ? r0 + R : F;
        int64_t s1 = m->fill[e], s0 = s1 - m->count[e];
        for (int64_t sb = s0; sb < s1; sb += TD_MOE_TOK_BATCH) {
            int64_t nb = s1 - sb < TD_MOE_TOK_BATCH ? s1 - sb : TD_MOE_TOK_BATCH;
            j->kg->fn(&ctx, &j->ex[e].gate, r0, r1, m->xptr + sb, nb, gt, R);
            td_kern_ctx same = ctx; /* up reads the activations gate just read */
            same.same_acts = j->kg->fn == j->ku->fn;
            j->ku->fn(&same, &j->ex[e].up, r0, r1, m->xptr + sb, nb, ut, R);
            for (int64_t s = 0; s < nb; s++) {
                float *h = m->h + (size_t)(sb + s) * (size_t)F;
                const float *gs = gt + s * R, *us = ut + s * R;
                if (cpu->isa >= TD_ISA_AVX2) td_silu_mul_avx2(h + r0, gs, us, r1 - r0);
                else
                    for (int64_t r = r0; r < r1; r++) h[r] = td_silu(gs[r - r0]) * us[r - r0];
            }
        }
        if (j->kd->act == TD_ACT_F32) continue;
        /* the item that completes a block of h prepares it (the counter orders the other items' writes) */
        int64_t blk = r0 / TD_MOE_HBLK, b0 = blk * TD_MOE_HBLK, b1 = b0 + TD_MOE_HBLK < F ? b0 + TD_MOE_HBLK : F;
        int32_t need = (int32_t)((b1 - b0 + R - 1) / R);
        if (atomic_fetch_add_explicit(&m->hblk_done[(size_t)a * (size_t)m->n_hblk + (size_t)blk], 1,
                                      memory_order_acq_rel) + 1 == need)
            td_moe_prepare_h(cpu, j, e, b0, b1);
    }
}

static void td_moe_down(const td_pool_task *t, const td_moe_job *j)
{
    td_cpu *cpu = j->cpu;
    td_moe_scratch *m = &cpu->moe;
    td_kern_ctx ctx = td_cpu_kctx(cpu, t->ith);
    float *dt = td_cpu_tiles(cpu, t->ith) + 2 * TD_MOE_TOK_BATCH * TD_MOE_ROWS_UP; /* after the largest gate/up tiles */
    int g = t->node, a0 = m->node_active[g], a1 = m->node_active[g + 1];
    int64_t H = j->H, n = j->b->n_tok, items = (H + TD_MOE_ROWS_DOWN - 1) / TD_MOE_ROWS_DOWN;
    float *out = j->partial ? m->partial + (size_t)g * (size_t)n * (size_t)H : j->b->out;
    bool avx2 = cpu->isa >= TD_ISA_AVX2;
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&cpu->next[g][1], 1, memory_order_relaxed);
        if (c >= items) break;
        int64_t r0 = c * TD_MOE_ROWS_DOWN, r1 = r0 + TD_MOE_ROWS_DOWN < H ? r0 + TD_MOE_ROWS_DOWN : H;
        if (j->partial)
            for (int64_t tok = 0; tok < n; tok++) memset(out + tok * H + r0, 0, (size_t)(r1 - r0) * sizeof(float));
        for (int a = a0; a < a1; a++) {
            int e = m->active[a];
            int64_t s1 = m->fill[e], s0 = s1 - m->count[e];
            for (int64_t sb = s0; sb < s1; sb += TD_MOE_TOK_BATCH) {
                int64_t nb = s1 - sb < TD_MOE_TOK_BATCH ? s1 - sb : TD_MOE_TOK_BATCH;
                if (td_moe_htiled(m, j))
                    ctx.btiles = m->htiles + (size_t)(m->hgroup[e] + (sb - s0) / 16) * m->htile_group;
                j->kd->fn(&ctx, &j->ex[e].down, r0, r1, m->hptr + sb, nb, dt, TD_MOE_ROWS_DOWN);
                for (int64_t s = 0; s < nb; s++) {
                    float *o = out + (size_t)m->slot_tok[sb + s] * (size_t)H + r0;
                    if (avx2) td_axpy_f32_avx2(o, m->slot_w[sb + s], dt + s * TD_MOE_ROWS_DOWN, r1 - r0);
                    else td_axpy_f32(o, m->slot_w[sb + s], dt + s * TD_MOE_ROWS_DOWN, r1 - r0);
                }
            }
        }
    }
}

/* out += the node partials, in node order */
static void td_moe_reduce(const td_pool_task *t, const td_moe_job *j)
{
    td_moe_scratch *m = &j->cpu->moe;
    int64_t total = j->b->n_tok * j->H, i0 = total * t->ith / t->nth, i1 = total * (t->ith + 1) / t->nth;
    for (int g = 0; g < j->n_nodes; g++) {
        const float *p = m->partial + (size_t)g * (size_t)total;
        if (m->node_active[g] == m->node_active[g + 1]) continue;
        for (int64_t i = i0; i < i1; i++) j->b->out[i] += p[i];
    }
}

/* Books the phase that ended at `now`: its time, and how long the threads waited for the last one. */
static void td_moe_book(td_moe_scratch *m, int phase, int nth, double now)
{
    double idle = 0;
    for (int i = 0; i < nth; i++) idle += now - m->done_at[i];
    m->phase_s[phase] += now - m->phase_t0;
    m->idle_s[phase] += idle / nth;
    m->phase_t0 = now;
}

/* Every thread at the end of its share of a phase, then the barrier the phases need anyway. */
static void td_moe_end_phase(const td_pool_task *t, const td_moe_job *j, int phase)
{
    td_moe_scratch *m = &j->cpu->moe;
    m->done_at[t->ith] = td_now();
    td_pool_barrier(t);
    if (t->ith == 0) td_moe_book(m, phase, t->nth, td_now());
}

static void td_moe_task(const td_pool_task *t, void *arg)
{
    const td_moe_job *j = arg;
    td_moe_scratch *m = &j->cpu->moe;
    if (t->ith == 0) m->phase_t0 = td_now();
    td_moe_prepare_x(t, j);
    td_moe_end_phase(t, j, 0);
    td_moe_gate_up(t, j);
    td_moe_end_phase(t, j, 1);
    td_moe_down(t, j);
    if (j->partial) {
        td_moe_end_phase(t, j, 2);
        td_moe_reduce(t, j);
    }
    m->done_at[t->ith] = td_now(); /* the last phase is booked by td_moe_run: no barrier for it */
}

void td_cpu_moe_phase_times(const td_cpu *cpu, double out[4]) { memcpy(out, cpu->moe.phase_s, sizeof cpu->moe.phase_s); }
void td_cpu_moe_idle_times(const td_cpu *cpu, double out[4]) { memcpy(out, cpu->moe.idle_s, sizeof cpu->moe.idle_s); }

/* Counting sort of the slots by expert; experts with tokens listed node by node. Returns the count. */
static int td_moe_group(td_cpu *cpu, int n_experts, const td_moe_batch *b)
{
    td_moe_scratch *m = &cpu->moe;
    const td_thread_plan *plan = td_pool_plan(cpu->pool);
    int64_t S = b->n_tok * b->k;
    memset(m->count, 0, (size_t)(n_experts + 1) * sizeof *m->count);
    for (int64_t i = 0; i < S; i++) {
        TD_ASSERT(b->ids[i] >= 0 && b->ids[i] < n_experts);
        m->count[b->ids[i]]++;
    }
    int na = 0, off = 0, groups = 0;
    for (int g = 0; g < plan->n_nodes; g++) {
        m->node_active[g] = na;
        int first, end;
        td_thread_plan_node_experts(plan, g, n_experts, &first, &end);
        for (int e = first; e < end; e++) {
            if (!m->count[e]) continue;
            m->active[na++] = e;
            m->fill[e] = off;
            if (m->hgroup) m->hgroup[e] = groups;
            groups += (m->count[e] + 15) / 16;
            off += m->count[e];
        }
    }
    m->node_active[plan->n_nodes] = na;
    for (int64_t t = 0; t < b->n_tok; t++)
        for (int j = 0; j < b->k; j++) {
            int e = b->ids[t * b->k + j];
            int pos = m->fill[e]++;
            m->slot_tok[pos] = (int32_t)t;
            m->slot_w[pos] = b->weights[t * b->k + j];
        }
    return na;
}

void td_moe_run(td_cpu *cpu, const td_ffn_weights *ex, int n_experts, const td_moe_batch *b)
{
    td_moe_scratch *m = &cpu->moe;
    TD_ASSERT(n_experts <= m->max_experts && b->k <= m->top_k && b->k >= 1);
    if (b->n_tok == 0) return;
    int na = td_moe_group(cpu, n_experts, b);
    const td_ffn_weights *e0 = &ex[m->active[0]];
    TD_ASSERT(e0->gate.cols == cpu->p.hidden && e0->down.rows == cpu->p.hidden);
    TD_ASSERT(e0->gate.rows <= (cpu->p.expert_width ? cpu->p.expert_width : cpu->p.ffn_width));
    int64_t per_expert = (b->n_tok * b->k + na - 1) / na;
    td_moe_job j = {.cpu = cpu, .ex = ex, .b = b, .H = cpu->p.hidden, .F = e0->gate.rows,
                    .n_nodes = td_pool_plan(cpu->pool)->n_nodes, .partial = m->partial != NULL};
    j.kg = td_cpu_pick(cpu, &e0->gate, per_expert);
    j.ku = td_cpu_pick(cpu, &e0->up, per_expert);
    j.kd = td_cpu_pick(cpu, &e0->down, per_expert);
    if (j.kg->act != j.ku->act) j.kg = j.ku = td_kernel_generic(cpu->isa);
    j.rows_up = j.kg->act == TD_ACT_BF16 ? TD_MOE_ROWS_UP : TD_MOE_ROWS_UP_GEMV;
    memset((void *)m->hblk_done, 0, (size_t)na * (size_t)m->n_hblk * sizeof *m->hblk_done);
    for (int a = 1; a < na; a++) {
        const td_ffn_weights *f = &ex[m->active[a]];
        TD_ASSERT(f->gate.type == e0->gate.type && f->up.type == e0->up.type && f->down.type == e0->down.type);
        TD_ASSERT(f->gate.rows == j.F && f->up.rows == j.F && f->down.cols == j.F);
    }
    int64_t S = b->n_tok * b->k;
    for (int64_t s = 0; s < S; s++) {
        int64_t tok = m->slot_tok[s];
        m->xptr[s] = j.kg->act == TD_ACT_F32 ? (const void *)(b->x + tok * j.H) : m->xq + (size_t)tok * m->xq_row;
        m->hptr[s] = j.kd->act == TD_ACT_F32 ? (const void *)(m->h + (size_t)s * (size_t)j.F)
                                              : m->hq + (size_t)s * m->hq_row;
    }
    for (int g = 0; g < j.n_nodes; g++) {
        atomic_store_explicit(&cpu->next[g][0], 0, memory_order_relaxed);
        atomic_store_explicit(&cpu->next[g][1], 0, memory_order_relaxed);
    }
    td_pool_run(cpu->pool, td_moe_task, &j);
    td_moe_book(m, j.partial ? 3 : 2, td_pool_threads(cpu->pool), td_now());
}

/* ------------------------------------------------------------------ NUMA placement */

int td_cpu_expert_node(const td_cpu *cpu, int e, int n_experts)
{
    if (cpu->ref) return 0;
    return td_thread_plan_expert_node(td_pool_plan(cpu->pool), e, n_experts);
}

int td_cpu_expert_home(const td_cpu *cpu, td_expert_home home, int node, int e, int n_experts)
{
    switch (home) {
    case TD_HOME_INTERLEAVE: return -1;
    case TD_HOME_NODE: return node;
    default: return td_cpu_expert_node(cpu, e, n_experts);
    }
}

td_status td_cpu_moe_place(td_cpu *cpu, const td_ffn_weights *experts, int n_experts, td_expert_home home, int node)
{
    int nodes = cpu->ref ? 1 : td_pool_plan(cpu->pool)->n_nodes;
    if ((unsigned)home >= TD_HOME_COUNT) return td_fail(TD_E_ARG, "unknown expert placement %d", (int)home);
    if (home == TD_HOME_NODE && (node < 0 || node >= nodes))
        return td_fail(TD_E_ARG, "numa: node:%d names a node this machine does not have (it has %d; nodes count from 0)",
                       node, nodes);
    if (cpu->ref || td_cpu_used_nodes(cpu) <= 1 || !td_topo_is_this_system(cpu->topo)) return TD_OK;
    for (int e = 0; e < n_experts; e++) {
        int at = td_cpu_expert_home(cpu, home, node, e, n_experts);
        const td_matrix *ms[3] = {&experts[e].gate, &experts[e].up, &experts[e].down};
        for (int i = 0; i < 3; i++) {
            size_t len = (size_t)td_matrix_bytes(ms[i]);
            if (at < 0) td_numa_interleave(ms[i]->data, len);
            else td_numa_move(ms[i]->data, len, td_topo_node_os_index(cpu->topo, at));
        }
    }
    return TD_OK;
}
