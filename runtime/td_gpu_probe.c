#include "td_gpu_probe.h"

#include "td_cuda.h"

#include <stdio.h>

td_status td_gpu_probe_cuda(td_gpu *gpus, int cap, int *n, char *note, size_t note_cap)
{
    int count = td_cuda_device_count();
    if (count > cap) count = cap;
    *n = 0;
    for (int i = 0; i < count; i++) {
        td_cuda_device_info info;
        TD_TRY(td_cuda_device_query(i, &info));
        td_gpu *g = &gpus[(*n)++];
        snprintf(g->name, sizeof g->name, "%.*s", (int)sizeof g->name - 1, info.name);
        g->memory = info.total_bytes;
        g->bw_gbps = info.mem_bandwidth_gbps;
        if (g->bw_gbps > 0) g->bw_source = TD_BW_QUERIED;
    }
    if (count == 0)
        snprintf(note, note_cap, "%s", td_cuda_compiled() ? "no CUDA device was found" : "this tandem was built without CUDA");
    return TD_OK;
}
