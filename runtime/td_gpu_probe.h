/* td_gpu_probe: the GPUs of this machine for the device inventory (td_devices_params.gpu_probe), asked of
 * CUDA. It lives in runtime/ because placement_rules/ may not reach gpu_kernels/. */
#ifndef TD_GPU_PROBE_H
#define TD_GPU_PROBE_H

#include "td_devices.h"

/* A td_gpu_probe_fn: every CUDA device (at most cap); none, with the reason in note, when there is no
 * device or the build has no CUDA. */
td_status td_gpu_probe_cuda(td_gpu *gpus, int cap, int *n, char *note, size_t note_cap);

#endif
