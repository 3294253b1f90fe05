/* NUMA placement on a synthetic two-node topology (hwloc): threads spread over the nodes by their cores,
 * node-major; every expert homed on exactly one node, in proportion to its threads; the MoE with the
 * node split and partial sums equals the one-node result; placement is a no-op where it cannot apply. */
#include "td_alloc.h"
#include "td_backend_cpu.h"
#include "td_engine.h"
#include "td_plan.h"
#include "td_cpu.h"
#include "td_numa.h"
#include "td_randw.h"
#include "td_test.h"
#include "td_topo.h"

#include <math.h>
#include <string.h>

static void tn_plan(void)
{
    td_topo *t = NULL;
    TD_CHECK(td_topo_load("pack:2 numa:1 l3:1 core:4 pu:2", &t) == TD_OK);
    if (!t) return;
    TD_CHECK(td_topo_nodes(t) == 2 && td_topo_cores(t) == 8 && !td_topo_is_this_system(t));
    TD_CHECK(td_topo_node_cores(t, 0) == 4 && td_topo_node_cores(t, 1) == 4);
    TD_CHECK(td_topo_llc_bytes(t) > 0);
    TD_CHECK(!td_topo_bind_thread(t, 0, 0)); /* never binds to an imaginary machine */
    struct {
        int n, n0, n1;
    } cases[] = {{0, 4, 4}, {8, 4, 4}, {3, 2, 1}, {1, 1, 0}, {10, 5, 5}, {5, 3, 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        td_thread_plan p;
        TD_CHECK(td_thread_plan_make(t, cases[i].n, &p) == TD_OK);
        int n = cases[i].n ? cases[i].n : 8;
        TD_CHECKF(p.n_threads == n && p.node_threads[0] == cases[i].n0 && p.node_threads[1] == cases[i].n1,
                  "%d threads: %d + %d, want %d + %d", n, p.node_threads[0], p.node_threads[1], cases[i].n0, cases[i].n1);
        /* node-major slots, ranks within the node, cores wrapping only when oversubscribed */
        for (int k = 0; k < n; k++) {
            int g = k < p.node_threads[0] ? 0 : 1;
            TD_CHECK(p.slots[k].node == g);
            TD_CHECK(p.slots[k].node_rank == k - p.node_first[g]);
            TD_CHECK(p.slots[k].core == p.slots[k].node_rank % 4);
        }
        /* experts: each on exactly one node, contiguous, proportional to threads */
        int E = 256, per[2] = {0, 0}, first[2], end[2];
        for (int g = 0; g < 2; g++) td_thread_plan_node_experts(&p, g, E, &first[g], &end[g]);
        TD_CHECK(first[0] == 0 && end[0] == first[1] && end[1] == E);
        for (int e = 0; e < E; e++) {
            int g = td_thread_plan_expert_node(&p, e, E);
            per[g]++;
            TD_CHECK(e >= first[g] && e < end[g]);
            TD_CHECK(p.node_threads[g] > 0);
        }
        TD_CHECKF(per[0] == E * p.node_threads[0] / n, "%d threads: node 0 holds %d experts", n, per[0]);
        td_thread_plan_free(&p);
    }
    td_topo_free(t);
    /* three nodes of three cores */
    TD_CHECK(td_topo_load("pack:3 [numa] core:3 pu:1", &t) == TD_OK);
    if (t) {
        TD_CHECK(td_topo_nodes(t) == 3);
        td_thread_plan p;
        TD_CHECK(td_thread_plan_make(t, 0, &p) == TD_OK);
        int total = 0;
        for (int e = 0; e < 10; e++) total += td_thread_plan_expert_node(&p, e, 10) >= 0;
        TD_CHECK(total == 10 && p.node_threads[0] == 3 && p.node_threads[2] == 3);
        td_thread_plan_free(&p);
        td_topo_free(t);
    }
    TD_CHECK(td_topo_load("numa:nonsense", &t) == TD_E_ARG);
}

/* The MoE on the synthetic two-node machine: each node computes its experts into a partial, then the
 * partials are added; the result must equal the one-node context's up to summation order. */
static void tn_moe(void)
{
    const int E = 8, k = 2;
    const int64_t H = 256, F = 256, n = 6;
    td_ffn_weights ex[8];
    uint8_t *bufs[24];
    for (int e = 0; e < E; e++) {
        td_matrix *ms[3] = {&ex[e].gate, &ex[e].up, &ex[e].down};
        for (int i = 0; i < 3; i++) {
            int64_t rows = i < 2 ? F : H, cols = i < 2 ? H : F;
            size_t rb = td_type_row_bytes(TD_TYPE_BF16, cols);
            bufs[3 * e + i] = td_malloc_aligned(rb * (size_t)rows, 64);
            td_randw_fill(TD_TYPE_BF16, bufs[3 * e + i], rb * (size_t)rows, (uint64_t)(3 * e + i + 1), 0);
            *ms[i] = (td_matrix){.type = TD_TYPE_BF16, .rows = rows, .cols = cols, .data = bufs[3 * e + i], .row_bytes = rb};
        }
    }
    int32_t ids[12] = {0, 7, 1, 6, 2, 5, 3, 4, 0, 1, 6, 7};
    float w[12], x[6 * 256], o1[6 * 256], o2[6 * 256];
    for (int i = 0; i < 12; i++) w[i] = 0.25f + 0.05f * (float)i;
    for (int i = 0; i < 6 * 256; i++) x[i] = sinf((float)i * 0.37f);
    memset(o1, 0, sizeof o1);
    memset(o2, 0, sizeof o2);
    td_cpu *one = NULL, *two = NULL;
    td_cpu_params p = {.kernels = TD_KERNELS_AUTO, .n_threads = 2, .max_tokens = n, .max_cols = 256, .hidden = H,
                       .ffn_width = F, .n_experts = E, .top_k = k};
    TD_CHECK(td_cpu_create(&p, &one) == TD_OK);
    p.topology = "pack:2 numa:1 core:1 pu:1";
    p.n_threads = 0;
    TD_CHECK(td_cpu_create(&p, &two) == TD_OK);
    if (one && two) {
        TD_CHECK(td_cpu_nodes(two) == 2 && td_cpu_threads(two) == 2);
        TD_CHECK(td_cpu_expert_node(two, 0, E) == 0 && td_cpu_expert_node(two, E - 1, E) == 1);
        TD_CHECK(td_cpu_moe_place(two, ex, E, TD_HOME_SPLIT, 0) == TD_OK); /* synthetic: nothing to move */
        TD_CHECK(td_cpu_moe_place(one, ex, E, TD_HOME_SPLIT, 0) == TD_OK); /* one node: nothing to move */
        /* the three policies: split by the computing node, all on one node, interleaved */
        TD_CHECK(td_cpu_expert_home(two, TD_HOME_SPLIT, 0, 0, E) == 0 && td_cpu_expert_home(two, TD_HOME_SPLIT, 0, E - 1, E) == 1);
        TD_CHECK(td_cpu_expert_home(two, TD_HOME_NODE, 1, 0, E) == 1 && td_cpu_expert_home(two, TD_HOME_NODE, 1, E - 1, E) == 1);
        TD_CHECK(td_cpu_expert_home(two, TD_HOME_INTERLEAVE, 0, 3, E) == -1);
        TD_CHECK(td_cpu_moe_place(two, ex, E, TD_HOME_NODE, 1) == TD_OK);
        TD_CHECK(td_cpu_moe_place(two, ex, E, TD_HOME_INTERLEAVE, 0) == TD_OK);
        TD_CHECK(td_cpu_moe_place(two, ex, E, TD_HOME_NODE, 2) == TD_E_ARG && strstr(td_errmsg(), "node:2"));
        td_moe_batch b = {.n_tok = n, .k = k, .ids = ids, .weights = w, .x = x, .out = o1};
        td_cpu_moe(one, ex, E, &b);
        b.out = o2;
        td_cpu_moe(two, ex, E, &b);
        double err = 0, mx = 0;
        for (int i = 0; i < 6 * 256; i++) {
            err = fmax(err, fabs((double)o1[i] - o2[i]));
            mx = fmax(mx, fabs(o1[i]));
        }
        TD_CHECKF(mx > 0 && err <= 1e-5 * mx, "two nodes differ from one by %.3g of %.3g", err, mx);
    }
    td_cpu_free(one);
    td_cpu_free(two);
    for (int i = 0; i < 24; i++) td_free(bufs[i]);
}

static void tn_move(void)
{
    /* moving pages to node 0 is always allowed where libnuma works; never an error to the caller */
    size_t len = 1 << 20;
    uint8_t *buf = td_malloc_aligned(len, 4096);
    memset(buf, 1, len);
    if (td_numa_available()) td_numa_move(buf + 100, len - 200, 0);
    TD_CHECK(!td_numa_move(buf, len, -1));
    TD_CHECK(!td_numa_move(buf, 0, 0));
    TD_CHECK(buf[12345] == 1);
    td_free(buf);
}

/* The engine places each layer's experts as the plan's numa: field says, on a synthetic two-node machine. */
static void tn_engine_plan(void)
{
    td_model *m = NULL;
    if (!TD_CHECKF(td_model_open(td_test_fixture("gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf"), NULL, &m) == TD_OK, "%s",
                   td_errmsg()))
        return;
    const char *topo = "pack:2 numa:1 core:1 pu:1";
    td_devices_params dp = {.topology = "synthetic:pack:2 numa:1 core:1 pu:1", .gpu_reserve = -1};
    td_devices d;
    td_rules *r = NULL;
    td_plan *plan = NULL;
    const char *text = "- match: {name: experts, layers: 1}\n  place: {numa: node:1}\n"
                       "- match: {name: experts, layers: 2}\n  place: {numa: interleave}\n";
    TD_CHECK(td_devices_detect(&dp, &d) == TD_OK && d.n_numa == 2);
    TD_CHECK(td_rules_create(&r) == TD_OK && td_rules_load_text(r, text, strlen(text), "numa.yaml") == TD_OK);
    TD_CHECKF(td_plan_for_model(m, r, &d, 64, 2, &plan) == TD_OK, "%s", td_errmsg());
    td_engine_params ep = {.kernels = TD_KERNELS_AUTO, .plan = plan, .topology = topo};
    td_engine *e = NULL;
    if (plan && TD_CHECKF(td_engine_open(m, &ep, &e) == TD_OK, "%s", td_errmsg())) {
        td_backend *const *bs;
        td_engine_backends(e, &bs);
        int E = m->hp.n_routed_experts;
        TD_CHECK(m->layers[1].is_moe && m->layers[2].is_moe);
        TD_CHECK(td_backend_cpu_expert_home(bs[0], 1, 0) == 1 && td_backend_cpu_expert_home(bs[0], 1, E - 1) == 1);
        TD_CHECK(td_backend_cpu_expert_home(bs[0], 2, 0) == -1);
        /* the MTP block's experts keep the default: split between the nodes */
        int L = m->hp.n_layers;
        TD_CHECK(td_backend_cpu_expert_home(bs[0], L, 0) == 0 && td_backend_cpu_expert_home(bs[0], L, E - 1) == 1);
    }
    td_engine_close(e);
    td_plan_free(plan);
    td_rules_free(r);
    /* a node the machine lacks is refused by the planner, naming the rule */
    const char *bad = "- match: {name: experts}\n  place: {numa: node:5}\n";
    TD_CHECK(td_rules_create(&r) == TD_OK && td_rules_load_text(r, bad, strlen(bad), "bad.yaml") == TD_OK);
    plan = NULL;
    TD_CHECK(td_plan_for_model(m, r, &d, 64, 2, &plan) != TD_OK && strstr(td_errmsg(), "bad.yaml"));
    td_plan_free(plan);
    td_rules_free(r);
    td_model_close(m);
}

int main(void)
{
    tn_plan();
    tn_engine_plan();
    tn_moe();
    tn_move();
    return td_test_finish();
}
