/* Device inventory: hwloc for the host, the caller's GPU probe (or --gpus) for the GPUs. */
#include "td_devices.h"

#include <ctype.h>
#include <hwloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

const char *td_bw_source_name(td_bw_source s)
{
    static const char *const names[TD_BW_SOURCE_COUNT] = {
        [TD_BW_DEFAULT] = "default", [TD_BW_USER] = "given",
        [TD_BW_MEASURED] = "measured", [TD_BW_QUERIED] = "from the driver",
    };
    return (s >= 0 && s < TD_BW_SOURCE_COUNT) ? names[s] : "?";
}

static td_status td_topology_open(const char *spec, hwloc_topology_t *out, char *label, size_t cap)
{
    hwloc_topology_t t;
    if (hwloc_topology_init(&t) != 0) return td_fail(TD_E_NOMEM, "hwloc could not start (out of memory)");
    int rc = 0;
    if (!spec) {
        snprintf(label, cap, "this machine");
    } else if (strncmp(spec, "synthetic:", 10) == 0) {
        snprintf(label, cap, "%s", spec);
        rc = hwloc_topology_set_synthetic(t, spec + 10);
    } else {
        snprintf(label, cap, "xml:%s", spec);
        rc = hwloc_topology_set_xml(t, spec);
    }
    if (rc == 0) rc = hwloc_topology_load(t);
    if (rc != 0) {
        hwloc_topology_destroy(t);
        return td_fail(TD_E_ARG,
                       "--topology '%s': hwloc could not read it; expected 'synthetic:<description>' such as "
                       "'synthetic:pack:2 [numa(memory=256GiB)] core:16 pu:2', or an XML file written by lstopo",
                       spec ? spec : "");
    }
    *out = t;
    return TD_OK;
}

static uint64_t td_host_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

static td_status td_devices_host(const td_devices_params *p, td_devices *d)
{
    hwloc_topology_t t = NULL;
    char synthetic[160];
    const char *spec = p->topology;
    if (p->host_nodes > 0) { /* --host: one core per node; only the memory matters to a plan */
        snprintf(synthetic, sizeof synthetic, "synthetic:pack:%d [numa(memory=%llu)] core:1 pu:1", p->host_nodes,
                 (unsigned long long)p->host_node_bytes);
        spec = synthetic;
    }
    TD_TRY(td_topology_open(spec, &t, d->topology, sizeof d->topology));
    if (p->host_nodes > 0)
        snprintf(d->topology, sizeof d->topology, "described with --host (%d x %.0f GiB)", p->host_nodes,
                 (double)p->host_node_bytes / (double)(1ull << 30));
    d->n_cores = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
    d->n_pus = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
    int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
    td_status st = TD_OK;
    if (n < 1 || n > TD_MAX_NUMA) {
        st = td_fail(TD_E_UNSUPPORTED, "%s: %d NUMA nodes; tandem plans for 1 to %d", d->topology, n, TD_MAX_NUMA);
        goto done;
    }
    d->n_numa = n;
    for (int i = 0; i < n; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, (unsigned)i);
        td_numa_node *node = &d->numa[i];
        node->os_index = (int)o->os_index;
        node->n_cores = o->cpuset ? hwloc_get_nbobjs_inside_cpuset_by_type(t, o->cpuset, HWLOC_OBJ_CORE) : 0;
        node->memory = o->attr ? o->attr->numanode.local_memory : 0;
    }
    for (int i = 0; i < n; i++) {
        if (d->numa[i].memory) continue;
        /* some kernels and containers don't report node memory: share what the host has */
        uint64_t host = spec ? 0 : td_host_memory();
        if (!host) {
            st = td_fail(TD_E_ARG, "%s: NUMA node %d has no memory size; give one, e.g. numa(memory=256GiB)",
                         d->topology, d->numa[i].os_index);
            goto done;
        }
        d->numa[i].memory = host / (uint64_t)n;
    }
done:
    hwloc_topology_destroy(t);
    return st;
}

static void td_devices_budgets(const td_devices_params *p, td_devices *d)
{
    d->cpu_memory = 0;
    for (int i = 0; i < d->n_numa; i++) d->cpu_memory += d->numa[i].memory;
    d->cpu_budget = (p->cpu_mem && p->cpu_mem < d->cpu_memory) ? p->cpu_mem : d->cpu_memory;
    for (int i = 0; i < d->n_numa; i++) {
        /* a cap is shared between the nodes in proportion to their memory */
        double share = d->cpu_memory ? (double)d->numa[i].memory / (double)d->cpu_memory : 0.0;
        d->numa[i].budget = (uint64_t)((double)d->cpu_budget * share);
        if (d->numa[i].budget > d->numa[i].memory) d->numa[i].budget = d->numa[i].memory;
    }
    if (p->cpu_bw_gbps > 0) td_devices_set_cpu_bandwidth(d, p->cpu_bw_gbps, TD_BW_USER);
    else td_devices_set_cpu_bandwidth(d, TD_DEFAULT_CPU_BW_PER_NODE_GBPS * d->n_numa, TD_BW_DEFAULT);
}

void td_devices_set_cpu_bandwidth(td_devices *d, double total_gbps, td_bw_source source)
{
    d->cpu_bw_gbps = total_gbps;
    d->cpu_bw_source = source;
    for (int i = 0; i < d->n_numa; i++) d->numa[i].bw_gbps = total_gbps / d->n_numa;
}

static td_status td_devices_gpus(const td_devices_params *p, td_devices *d)
{
    if (p->n_virtual_gpus > 0) {
        if (p->n_virtual_gpus > TD_MAX_GPUS) return td_fail(TD_E_ARG, "--gpus: at most %d GPUs", TD_MAX_GPUS);
        d->n_gpus = p->n_virtual_gpus;
        for (int i = 0; i < d->n_gpus; i++) {
            td_gpu *g = &d->gpus[i];
            snprintf(g->name, sizeof g->name, "described with --gpus");
            g->memory = p->virtual_gpu_bytes[i];
            g->is_virtual = true;
        }
    } else if (p->gpu_probe) {
        TD_TRY(p->gpu_probe(d->gpus, TD_MAX_GPUS, &d->n_gpus, d->gpu_note, sizeof d->gpu_note));
    } else {
        snprintf(d->gpu_note, sizeof d->gpu_note, "GPUs were not looked for");
    }
    if (p->gpu_mem && d->n_gpus == 0)
        return td_fail(TD_E_ARG,
                       "--gpu-mem caps the GPUs this machine has, and it has none (%s); to plan for a GPU it doesn't "
                       "have, describe it: --gpus 1x24GiB",
                       d->gpu_note);
    uint64_t reserve = p->gpu_reserve >= 0 ? (uint64_t)p->gpu_reserve : TD_DEFAULT_GPU_RESERVE;
    d->gpu_reserve_fn = p->gpu_reserve_fn;
    for (int i = 0; i < d->n_gpus; i++) {
        td_gpu *g = &d->gpus[i];
        g->budget = (p->gpu_mem && p->gpu_mem < g->memory) ? p->gpu_mem : g->memory;
        g->reserve = reserve;
        g->reserve_auto = p->gpu_reserve < 0 && p->gpu_reserve_fn;
        if (p->gpu_bw_gbps > 0) g->bw_gbps = p->gpu_bw_gbps, g->bw_source = TD_BW_USER;
        else if (g->bw_gbps <= 0) g->bw_gbps = TD_DEFAULT_GPU_BW_GBPS, g->bw_source = TD_BW_DEFAULT;
    }
    return TD_OK;
}

td_status td_devices_detect(const td_devices_params *params, td_devices *out)
{
    static const td_devices_params defaults = {.gpu_reserve = -1};
    const td_devices_params *p = params ? params : &defaults;
    memset(out, 0, sizeof *out);
    TD_TRY(td_devices_host(p, out));
    td_devices_budgets(p, out);
    return td_devices_gpus(p, out);
}

/* "24GiB" and friends; the CLI's td_parse_bytes lives in tools/, so the library keeps its own. */
static bool td_size_parse(const char *s, size_t len, uint64_t *out)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf) return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    double v = strtod(buf, &end);
    if (end == buf || !isfinite(v) || v <= 0) return false;
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {{"", 1},           {"B", 1},           {"K", 1024.0},       {"KiB", 1024.0},    {"KB", 1024.0},
                 {"M", 1048576.0},  {"MiB", 1048576.0}, {"MB", 1048576.0},   {"G", 1073741824.0},
                 {"GiB", 1073741824.0}, {"GB", 1073741824.0}, {"T", 1099511627776.0}, {"TiB", 1099511627776.0},
                 {"TB", 1099511627776.0}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcasecmp(end, units[i].suffix) == 0 && v * units[i].mult < 1.8e19) {
            *out = (uint64_t)(v * units[i].mult);
            return true;
        }
    return false;
}

td_status td_devices_parse_gpus(const char *spec, td_devices_params *p)
{
    static const char *const expected = "expected a count and a size such as 1x24GiB, or sizes such as 24GiB,12GiB";
    p->n_virtual_gpus = 0;
    const char *s = spec;
    while (*s) {
        size_t len = strcspn(s, ",");
        const char *x = memchr(s, 'x', len);
        int count = 1;
        const char *size = s;
        size_t size_len = len;
        if (x && x > s && isdigit((unsigned char)s[0])) {
            char *end;
            long c = strtol(s, &end, 10);
            if (end != x || c < 1 || c > TD_MAX_GPUS) return td_fail(TD_E_ARG, "--gpus '%s': bad count; %s", spec, expected);
            count = (int)c;
            size = x + 1;
            size_len = len - (size_t)(size - s);
        }
        uint64_t bytes;
        if (!td_size_parse(size, size_len, &bytes)) return td_fail(TD_E_ARG, "--gpus '%s': bad size; %s", spec, expected);
        for (int i = 0; i < count; i++) {
            if (p->n_virtual_gpus >= TD_MAX_GPUS) return td_fail(TD_E_ARG, "--gpus '%s': at most %d GPUs", spec, TD_MAX_GPUS);
            p->virtual_gpu_bytes[p->n_virtual_gpus++] = bytes;
        }
        s += len;
        if (*s == ',') s++;
    }
    if (p->n_virtual_gpus == 0) return td_fail(TD_E_ARG, "--gpus '%s': no GPU given; %s", spec, expected);
    return TD_OK;
}

td_status td_devices_parse_host(const char *spec, td_devices_params *p)
{
    const char *x = strchr(spec, 'x');
    int nodes = 1;
    const char *size = spec;
    if (x && x > spec && isdigit((unsigned char)spec[0])) {
        char *end;
        long n = strtol(spec, &end, 10);
        if (end != x || n < 1 || n > TD_MAX_NUMA)
            return td_fail(TD_E_ARG, "--host '%s': bad node count (1..%d); expected 2x384GiB or 768GiB", spec, TD_MAX_NUMA);
        nodes = (int)n;
        size = x + 1;
    }
    uint64_t bytes;
    if (!td_size_parse(size, strlen(size), &bytes))
        return td_fail(TD_E_ARG, "--host '%s': bad size; expected NUMA nodes x memory each, such as 2x384GiB, or 768GiB",
                       spec);
    p->host_nodes = nodes;
    p->host_node_bytes = bytes;
    return TD_OK;
}
