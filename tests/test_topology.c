/* The device inventory: hwloc topologies (this machine, synthetic, XML), budgets and caps, described GPUs
 * and hosts, and the bandwidth hook. */
#include "td_devices.h"
#include "td_gpu_probe.h"
#include "td_test.h"

#include <hwloc.h>
#include <string.h>

#define GIB (1ull << 30)

static void test_this_machine(void)
{
    td_devices d;
    TD_CHECKF(td_devices_detect(NULL, &d) == TD_OK, "%s", td_errmsg());
    TD_CHECK(d.n_numa >= 1 && d.n_cores >= 1 && d.cpu_memory > 0 && d.cpu_budget == d.cpu_memory);
    TD_CHECK(d.n_gpus == 0 && strstr(d.gpu_note, "not looked for"));
    TD_CHECK(d.cpu_bw_source == TD_BW_DEFAULT && d.cpu_bw_gbps == TD_DEFAULT_CPU_BW_PER_NODE_GBPS * d.n_numa);
}

static void test_synthetic_and_xml(void)
{
    const char *desc = "pack:2 [numa(memory=412316860416)] core:16 pu:2";
    char spec[128];
    snprintf(spec, sizeof spec, "synthetic:%s", desc);
    td_devices_params p = {.topology = spec, .gpu_reserve = -1};
    td_devices d;
    TD_CHECKF(td_devices_detect(&p, &d) == TD_OK, "%s", td_errmsg());
    TD_CHECK(d.n_numa == 2 && d.n_cores == 32 && d.n_pus == 64);
    TD_CHECK(d.numa[0].memory == 384 * GIB && d.numa[1].memory == 384 * GIB && d.numa[1].n_cores == 16);
    TD_CHECK(d.cpu_memory == 768 * GIB && d.numa[0].bw_gbps == TD_DEFAULT_CPU_BW_PER_NODE_GBPS);

    /* the same machine as lstopo would write it */
    hwloc_topology_t t;
    TD_CHECK(hwloc_topology_init(&t) == 0 && hwloc_topology_set_synthetic(t, desc) == 0 && hwloc_topology_load(t) == 0);
    char xml[512];
    snprintf(xml, sizeof xml, "%s/host.xml", td_test_tmpdir());
    TD_CHECK(hwloc_topology_export_xml(t, xml, 0) == 0);
    hwloc_topology_destroy(t);
    td_devices_params px = {.topology = xml, .gpu_reserve = -1};
    td_devices dx;
    TD_CHECKF(td_devices_detect(&px, &dx) == TD_OK, "%s", td_errmsg());
    TD_CHECK(dx.n_numa == 2 && dx.cpu_memory == d.cpu_memory && dx.n_cores == d.n_cores);
    TD_CHECK(strncmp(dx.topology, "xml:", 4) == 0);

    /* a cap is shared in proportion to the nodes' memory */
    p.cpu_mem = 512 * GIB;
    TD_CHECK(td_devices_detect(&p, &d) == TD_OK);
    TD_CHECK(d.cpu_budget == 512 * GIB && d.numa[0].budget == 256 * GIB && d.numa[1].budget == 256 * GIB);
    p.cpu_mem = 2048 * GIB; /* a cap above the memory changes nothing */
    TD_CHECK(td_devices_detect(&p, &d) == TD_OK && d.cpu_budget == 768 * GIB);

    /* the bandwidth hook (for a measured value) and --cpu-bw */
    td_devices_set_cpu_bandwidth(&d, 300, TD_BW_MEASURED);
    TD_CHECK(d.numa[0].bw_gbps == 150 && d.numa[1].bw_gbps == 150 && d.cpu_bw_source == TD_BW_MEASURED);
    p.cpu_bw_gbps = 250;
    TD_CHECK(td_devices_detect(&p, &d) == TD_OK && d.cpu_bw_source == TD_BW_USER && d.numa[1].bw_gbps == 125);

    /* descriptions hwloc cannot read */
    td_devices_params bad = {.topology = "synthetic:pack:two core:1", .gpu_reserve = -1};
    TD_CHECK(td_devices_detect(&bad, &d) == TD_E_ARG && strstr(td_errmsg(), "synthetic:pack:2"));
    bad.topology = "/nonexistent/topology.xml";
    TD_CHECK(td_devices_detect(&bad, &d) == TD_E_ARG);
}

static void test_described_devices(void)
{
    td_devices_params p = {.gpu_reserve = -1};
    TD_CHECK(td_devices_parse_gpus("2x24GiB", &p) == TD_OK && p.n_virtual_gpus == 2 && p.virtual_gpu_bytes[1] == 24 * GIB);
    TD_CHECK(td_devices_parse_gpus("24GiB,12G,1.5GiB", &p) == TD_OK && p.n_virtual_gpus == 3);
    TD_CHECK(p.virtual_gpu_bytes[1] == 12 * GIB && p.virtual_gpu_bytes[2] == 3 * GIB / 2);
    static const char *const bad[] = {"", "x24GiB", "0x24GiB", "3x", "24XB", "2x24GiB,", "-1x2G", "99x1G"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        td_devices_params q = {0};
        td_status st = td_devices_parse_gpus(bad[i], &q);
        if (strcmp(bad[i], "2x24GiB,") == 0) TD_CHECK(st == TD_OK && q.n_virtual_gpus == 2); /* a trailing comma is fine */
        else TD_CHECKF(st == TD_E_ARG && strstr(td_errmsg(), "--gpus"), "'%s' was accepted", bad[i]);
    }
    TD_CHECK(td_devices_parse_gpus("2x24GiB", &p) == TD_OK);
    p.gpu_mem = 20 * GIB;
    td_devices d;
    TD_CHECK(td_devices_detect(&p, &d) == TD_OK && d.n_gpus == 2 && d.gpus[0].is_virtual);
    TD_CHECK(d.gpus[0].memory == 24 * GIB && d.gpus[0].budget == 20 * GIB && d.gpus[1].reserve == TD_DEFAULT_GPU_RESERVE);
    TD_CHECK(d.gpus[0].bw_gbps == TD_DEFAULT_GPU_BW_GBPS && d.gpus[0].bw_source == TD_BW_DEFAULT);
    p.gpu_reserve = 0;
    p.gpu_bw_gbps = 936;
    TD_CHECK(td_devices_detect(&p, &d) == TD_OK && d.gpus[1].reserve == 0 && d.gpus[1].bw_gbps == 936);

    /* --gpu-mem with no GPU to cap says how to describe one */
    td_devices_params none = {.gpu_mem = 24 * GIB, .gpu_probe = td_gpu_probe_cuda, .gpu_reserve = -1};
    td_status st = td_devices_detect(&none, &d);
    if (d.n_gpus == 0 || st != TD_OK) /* a machine with a GPU would accept it */
        TD_CHECKF(st == TD_E_ARG && strstr(td_errmsg(), "--gpus 1x24GiB"), "%s", td_errmsg());

    /* --host */
    td_devices_params h = {.gpu_reserve = -1};
    TD_CHECK(td_devices_parse_host("2x384GiB", &h) == TD_OK && h.host_nodes == 2 && h.host_node_bytes == 384 * GIB);
    TD_CHECK(td_devices_detect(&h, &d) == TD_OK && d.n_numa == 2 && d.cpu_memory == 768 * GIB);
    TD_CHECK(strstr(d.topology, "--host"));
    TD_CHECK(td_devices_parse_host("768GiB", &h) == TD_OK && h.host_nodes == 1);
    TD_CHECK(td_devices_parse_host("0x1G", &h) == TD_E_ARG && td_devices_parse_host("2xlots", &h) == TD_E_ARG);
}

int main(void)
{
    test_this_machine();
    test_synthetic_and_xml();
    test_described_devices();
    return td_test_finish();
}
