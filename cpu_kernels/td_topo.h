/* td_topo: the machine as the thread pool and the expert placement see it: NUMA nodes, the cores of
 * each, and the last-level cache, read with hwloc from this machine or from a synthetic description
 * (for tests of multi-node placement on a one-node machine).
 *
 * Plans are plain data computed from a topology, so they can be tested without binding anything:
 *  - threads: n threads spread over the nodes in proportion to their cores, one per core, node-major
 *    (threads of node 0 first; thread 0 is the caller);
 *  - experts: each routed expert is homed on exactly one node (never duplicated), in contiguous ranges
 *    proportional to the threads of each node, so each node computes its share from local memory. */
#ifndef TD_TOPO_H
#define TD_TOPO_H

#include "td_status.h"

#include <stdbool.h>
#include <stdint.h>

#define TD_TOPO_MAX_NODES 64

typedef struct td_topo td_topo;

/* synthetic: NULL for this machine, else an hwloc synthetic description such as
 * "pack:2 numa:1 l3:1 core:8 pu:2" (two NUMA nodes of eight cores). */
td_status td_topo_load(const char *synthetic, td_topo **out);
void td_topo_free(td_topo *t);

int td_topo_nodes(const td_topo *t);                 /* NUMA nodes that have cores */
int td_topo_node_cores(const td_topo *t, int node);  /* cores of node `node` (0-based, in our order) */
int td_topo_node_os_index(const td_topo *t, int node); /* the OS's number of that node (for libnuma) */
int td_topo_cores(const td_topo *t);
uint64_t td_topo_llc_bytes(const td_topo *t);       /* all last-level caches together (0 if unknown) */
bool td_topo_is_this_system(const td_topo *t);
/* Binds the calling thread to core `core` of node `node`; false if the OS refused. */
bool td_topo_bind_thread(const td_topo *t, int node, int core);

typedef struct td_thread_slot {
    int node;      /* node index (0..n_nodes-1) */
    int core;      /* core index inside the node */
    int node_rank; /* this thread's index among its node's threads */
} td_thread_slot;

typedef struct td_thread_plan {
    int n_threads;
    int n_nodes;                          /* nodes of the topology (some may have no thread) */
    int node_threads[TD_TOPO_MAX_NODES];  /* threads on each node */
    int node_first[TD_TOPO_MAX_NODES];    /* index of its first thread */
    td_thread_slot *slots;                /* [n_threads], node-major; free with td_thread_plan_free */
} td_thread_plan;

/* n_threads 0: one per core. More threads than cores wrap around the cores of each node. */
td_status td_thread_plan_make(const td_topo *t, int n_threads, td_thread_plan *out);
void td_thread_plan_free(td_thread_plan *p);

/* The node that holds and computes expert e of n_experts (a node with threads). */
int td_thread_plan_expert_node(const td_thread_plan *p, int e, int n_experts);
/* The experts of node `node`: [*first, *end). */
void td_thread_plan_node_experts(const td_thread_plan *p, int node, int n_experts, int *first, int *end);

#endif
