#include "td_topo.h"

#include "td_alloc.h"

#include <hwloc.h>

typedef struct td_topo_node {
    int os_index;
    int n_cores;
    int *cores; /* logical indexes of hwloc CORE objects */
} td_topo_node;

struct td_topo {
    hwloc_topology_t hw;
    int n_nodes;
    td_topo_node nodes[TD_TOPO_MAX_NODES];
    int n_cores;
    uint64_t llc_bytes;
    bool this_system;
};

static uint64_t td_topo_llc(hwloc_topology_t hw)
{
    static const hwloc_obj_type_t levels[] = {HWLOC_OBJ_L4CACHE, HWLOC_OBJ_L3CACHE, HWLOC_OBJ_L2CACHE};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        int n = hwloc_get_nbobjs_by_type(hw, levels[i]);
        if (n <= 0) continue;
        uint64_t sum = 0;
        for (int j = 0; j < n; j++) sum += hwloc_get_obj_by_type(hw, levels[i], (unsigned)j)->attr->cache.size;
        return sum;
    }
    return 0;
}

/* The cores whose first PU lies in `set`, in logical order. */
static td_status td_topo_collect_cores(td_topo *t, td_topo_node *node, hwloc_const_cpuset_t set)
{
    int total = hwloc_get_nbobjs_by_type(t->hw, HWLOC_OBJ_CORE);
    node->cores = td_calloc((size_t)(total > 0 ? total : 1), sizeof(int));
    if (!node->cores) return td_fail(TD_E_NOMEM, "out of memory reading the CPU topology");
    for (int c = 0; c < total; c++) {
        hwloc_obj_t core = hwloc_get_obj_by_type(t->hw, HWLOC_OBJ_CORE, (unsigned)c);
        if (!core->cpuset || hwloc_bitmap_iszero(core->cpuset)) continue;
        if (hwloc_bitmap_isset(set, (unsigned)hwloc_bitmap_first(core->cpuset))) node->cores[node->n_cores++] = c;
    }
    return TD_OK;
}

td_status td_topo_load(const char *synthetic, td_topo **out)
{
    *out = NULL;
    td_topo *t = td_calloc(1, sizeof *t);
    if (!t) return td_fail(TD_E_NOMEM, "out of memory reading the CPU topology");
    td_status st = TD_OK;
    if (hwloc_topology_init(&t->hw) != 0) {
        td_free(t);
        return td_fail(TD_E_NOMEM, "hwloc could not start (hwloc_topology_init failed)");
    }
    if (synthetic && hwloc_topology_set_synthetic(t->hw, synthetic) != 0) {
        st = td_fail(TD_E_ARG, "'%s' is not an hwloc synthetic topology (example: \"pack:2 numa:1 core:4 pu:1\")",
                     synthetic);
        goto fail;
    }
    if (hwloc_topology_load(t->hw) != 0) {
        st = td_fail(TD_E_IO, "hwloc could not read the CPU topology of this machine");
        goto fail;
    }
    t->this_system = hwloc_topology_is_thissystem(t->hw);
    int n_numa = hwloc_get_nbobjs_by_type(t->hw, HWLOC_OBJ_NUMANODE);
    for (int i = 0; i < n_numa && t->n_nodes < TD_TOPO_MAX_NODES; i++) {
        hwloc_obj_t numa = hwloc_get_obj_by_type(t->hw, HWLOC_OBJ_NUMANODE, (unsigned)i);
        td_topo_node *node = &t->nodes[t->n_nodes];
        if ((st = td_topo_collect_cores(t, node, numa->cpuset)) != TD_OK) goto fail;
        if (node->n_cores == 0) { /* memory-only node (CXL, HBM): no threads there */
            td_free(node->cores);
            node->cores = NULL;
            continue;
        }
        node->os_index = (int)numa->os_index;
        t->n_cores += node->n_cores;
        t->n_nodes++;
    }
    if (t->n_nodes == 0) { /* no NUMA information: one node with every core */
        td_topo_node *node = &t->nodes[0];
        if ((st = td_topo_collect_cores(t, node, hwloc_topology_get_topology_cpuset(t->hw))) != TD_OK) goto fail;
        t->n_cores = node->n_cores;
        t->n_nodes = 1;
    }
    if (t->n_cores == 0) {
        st = td_fail(TD_E_IO, "hwloc found no usable CPU core on this machine");
        goto fail;
    }
    t->llc_bytes = td_topo_llc(t->hw);
    *out = t;
    return TD_OK;
fail:
    td_topo_free(t);
    return st;
}

void td_topo_free(td_topo *t)
{
    if (!t) return;
    for (int i = 0; i < TD_TOPO_MAX_NODES; i++) td_free(t->nodes[i].cores);
    hwloc_topology_destroy(t->hw);
    td_free(t);
}

int td_topo_nodes(const td_topo *t) { return t->n_nodes; }
int td_topo_node_cores(const td_topo *t, int node) { return t->nodes[node].n_cores; }
int td_topo_node_os_index(const td_topo *t, int node) { return t->nodes[node].os_index; }
int td_topo_cores(const td_topo *t) { return t->n_cores; }
uint64_t td_topo_llc_bytes(const td_topo *t) { return t->llc_bytes; }
bool td_topo_is_this_system(const td_topo *t) { return t->this_system; }

bool td_topo_bind_thread(const td_topo *t, int node, int core)
{
    if (!t->this_system || node < 0 || node >= t->n_nodes || core < 0 || core >= t->nodes[node].n_cores) return false;
    hwloc_obj_t obj = hwloc_get_obj_by_type(t->hw, HWLOC_OBJ_CORE, (unsigned)t->nodes[node].cores[core]);
    return obj && hwloc_set_cpubind(t->hw, obj->cpuset, HWLOC_CPUBIND_THREAD) == 0;
}

td_status td_thread_plan_make(const td_topo *t, int n_threads, td_thread_plan *out)
{
    *out = (td_thread_plan){0};
    if (n_threads < 0) return td_fail(TD_E_ARG, "thread count %d is negative", n_threads);
    int n = n_threads ? n_threads : t->n_cores;
    out->n_threads = n;
    out->n_nodes = t->n_nodes;
    /* largest-remainder split of n threads over the nodes by their core counts */
    int given = 0;
    int64_t rem[TD_TOPO_MAX_NODES];
    for (int g = 0; g < t->n_nodes; g++) {
        int64_t share = (int64_t)n * t->nodes[g].n_cores;
        out->node_threads[g] = (int)(share / t->n_cores);
        rem[g] = share % t->n_cores;
        given += out->node_threads[g];
    }
    while (given < n) {
        int best = 0;
        for (int g = 1; g < t->n_nodes; g++)
            if (rem[g] > rem[best]) best = g;
        out->node_threads[best]++;
        rem[best] = -1;
        given++;
    }
    out->slots = td_calloc((size_t)n, sizeof *out->slots);
    if (!out->slots) return td_fail(TD_E_NOMEM, "out of memory planning %d threads", n);
    int i = 0;
    for (int g = 0; g < t->n_nodes; g++) {
        out->node_first[g] = i;
        for (int r = 0; r < out->node_threads[g]; r++, i++)
            out->slots[i] = (td_thread_slot){.node = g, .core = r % t->nodes[g].n_cores, .node_rank = r};
    }
    return TD_OK;
}

void td_thread_plan_free(td_thread_plan *p)
{
    td_free(p->slots);
    p->slots = NULL;
}

void td_thread_plan_node_experts(const td_thread_plan *p, int node, int n_experts, int *first, int *end)
{
    int before = p->node_first[node];
    *first = (int)((int64_t)n_experts * before / p->n_threads);
    *end = (int)((int64_t)n_experts * (before + p->node_threads[node]) / p->n_threads);
}

int td_thread_plan_expert_node(const td_thread_plan *p, int e, int n_experts)
{
    for (int g = 0; g < p->n_nodes; g++) {
        int first, end;
        td_thread_plan_node_experts(p, g, n_experts, &first, &end);
        if (e >= first && e < end) return g;
    }
    return 0;
}
