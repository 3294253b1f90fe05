/* td_devices: what a plan can place modules on. The host comes from hwloc (cores, NUMA nodes and their
 * memory): this machine, a synthetic description or an lstopo XML file, so that plans for other machines
 * (and tests of a dual-socket box) need no such machine. GPUs come from a probe the caller passes (the
 * runtime's asks CUDA), or are described with --gpus (planning for a card this machine doesn't have).
 * Budgets and bandwidths can be capped or given. */
#ifndef TD_DEVICES_H
#define TD_DEVICES_H

#include "td_hparams.h"
#include "td_status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TD_MAX_NUMA 64
#define TD_MAX_GPUS 16

/* Defaults when nothing better is known (documented in `tandem rules --help`). */
#define TD_DEFAULT_CPU_BW_PER_NODE_GBPS 100.0 /* sustained read of one 8-channel DDR4/DDR5 socket */
#define TD_DEFAULT_GPU_BW_GBPS 1000.0         /* an RTX 3090/4090-class card */
#define TD_DEFAULT_GPU_RESERVE (1ull << 30)   /* CUDA context, cuBLAS workspace and activations, when no
                                                 * model says better (a plan asks the runtime) */

typedef enum td_bw_source {
    TD_BW_DEFAULT = 0,  /* the documented default above */
    TD_BW_USER = 1,     /* --cpu-bw / --gpu-bw */
    TD_BW_MEASURED = 2, /* measured on this machine (td_devices_set_cpu_bandwidth) */
    TD_BW_QUERIED = 3,  /* from the driver (memory clock x bus width) */
    TD_BW_SOURCE_COUNT
} td_bw_source;

const char *td_bw_source_name(td_bw_source s);

typedef struct td_numa_node {
    int os_index;
    int n_cores;
    uint64_t memory;  /* local memory, bytes */
    uint64_t budget;  /* what a plan may use of it, bytes */
    double bw_gbps;   /* sustained read bandwidth, GB/s */
} td_numa_node;

typedef struct td_gpu {
    char name[256];
    uint64_t memory;  /* bytes */
    uint64_t budget;  /* what a plan may use, bytes (memory capped by --gpu-mem) */
    uint64_t reserve; /* of the budget, kept for the runtime (context, workspace, activations) */
    bool reserve_auto; /* no --gpu-reserve, and a sizing function: the planner sizes the reserve for the model */
    double bw_gbps;
    td_bw_source bw_source;
    bool is_virtual;  /* described with --gpus, not detected */
} td_gpu;

/* What a GPU backend holds on a GPU besides the weights and the KV cache for a model run with batches of up
 * to max_rows rows over contexts of up to max_ctx positions (its context, libraries, scratch and
 * activations). The runtime supplies it with the backend that allocates that memory (td_backend_cuda_reserve_bytes). */
typedef uint64_t (*td_gpu_reserve_fn)(const td_hparams *hp, int64_t max_rows, int64_t max_ctx);

typedef struct td_devices {
    char topology[192];         /* "this machine", "synthetic:...", "xml:<path>" */
    int n_cores, n_pus;
    int n_numa;
    td_numa_node numa[TD_MAX_NUMA];
    uint64_t cpu_memory, cpu_budget;
    double cpu_bw_gbps;         /* all nodes together */
    td_bw_source cpu_bw_source;
    int n_gpus;
    td_gpu gpus[TD_MAX_GPUS];
    char gpu_note[160];         /* why no GPU was found, for messages */
    td_gpu_reserve_fn gpu_reserve_fn; /* from the params */
} td_devices;

/* Lists this machine's GPUs into gpus[0..*n) (at most cap, each's name, memory and bandwidth if known), or
 * says in note why there are none. placement_rules/ knows no device API: the runtime supplies the probe
 * (td_gpu_probe.h). */
typedef td_status (*td_gpu_probe_fn)(td_gpu *gpus, int cap, int *n, char *note, size_t note_cap);

typedef struct td_devices_params {
    const char *topology;       /* NULL: this machine; "synthetic:<hwloc synthetic>"; or an lstopo XML file */
    int host_nodes;             /* > 0: a host of this many NUMA nodes (--host), instead of the topology */
    uint64_t host_node_bytes;   /* memory of each of them */
    td_gpu_probe_fn gpu_probe;  /* asks the GPU API for its devices (NULL: GPUs are not looked for) */
    td_gpu_reserve_fn gpu_reserve_fn; /* sizes each GPU's reserve for the model when gpu_reserve is -1 (NULL:
                                         TD_DEFAULT_GPU_RESERVE) */
    int n_virtual_gpus;         /* > 0: these GPUs instead of the detected ones (--gpus) */
    uint64_t virtual_gpu_bytes[TD_MAX_GPUS];
    uint64_t gpu_mem;           /* cap per GPU, bytes (0: none); an error when there is no GPU to cap */
    uint64_t cpu_mem;           /* cap on host memory, bytes (0: none) */
    double cpu_bw_gbps;         /* host bandwidth, all nodes together (0: default per node) */
    double gpu_bw_gbps;         /* per GPU (0: the driver's figure, else the default) */
    int64_t gpu_reserve;        /* per GPU, bytes (-1: TD_DEFAULT_GPU_RESERVE) */
} td_devices_params;

/* Fills `out`; p may be NULL (this machine, no GPU detection, defaults). */
td_status td_devices_detect(const td_devices_params *p, td_devices *out);

/* The hook for a measured host bandwidth (tandem bench's membw): sets every node's share of it. */
void td_devices_set_cpu_bandwidth(td_devices *d, double total_gbps, td_bw_source source);

/* Parses --gpus: "1x24GiB", "2x24G", "24GiB,12GiB" (sizes with td_parse_bytes-style units). */
td_status td_devices_parse_gpus(const char *spec, td_devices_params *p);
/* Parses --host: "2x384GiB" (NUMA nodes x memory each) or "768GiB" (one node). */
td_status td_devices_parse_host(const char *spec, td_devices_params *p);

#endif
