/* tandem rules: where each module would go, how many bytes land on each device and NUMA node, the KV
 * cache at the context, the decode speed to expect, and whether it fits, before anything loads. */
#include "td_cli.h"
#include "td_cli_kv.h"
#include "td_roofline.h"
#include "td_commands.h"
#include "td_gguf_model.h"
#include "td_backend_cuda.h"
#include "td_gpu_probe.h"
#include "td_hf.h"
#include "td_model_format.h"
#include "td_mmap.h"
#include "td_plan.h"

#include "td_alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void td_rules_help(void)
{
    printf(
        "usage: tandem rules [--rules R] (--model M | --config config.json --assume-type T) [options]\n\n"
        "Plans a model's placement without loading it: the device, kernel, weight format and NUMA policy of\n"
        "every module; bytes per device and NUMA node; the KV cache at --ctx; a decode-speed estimate; and\n"
        "whether it fits. A plan that doesn't fit says by how much and which rule to change (exit 1).\n\n"
        "  --rules R          rules file (tandem or KTransformers YAML) or a preset from placement_rules/:\n"
        "                     deepseek-v3-1gpu-24gb, deepseek-v3-2gpu, cpu-only. Without it every module\n"
        "                     takes the defaults: cpu, kernel auto, weights keep, experts split over the\n"
        "                     NUMA nodes, everything else interleaved\n"
        "  --override S       regex=device[,regex=device...], tried before the file (llama.cpp's -ot; the\n"
        "                     regex also sees llama.cpp tensor names: 'exps=CPU'); repeatable\n"
        "  --model M          HF directory, .safetensors file or .gguf (any part of a split one): sizes\n"
        "                     and types from the headers (weights are not read)\n"
        "  --config C         a config.json alone (with --assume-type)\n"
        "  --assume-type T    q4_k | q4_k_m | q8_0 | bf16 | fp8: plan as if the weights had this type\n"
        "  --no-mtp           leave the MTP block out\n"
        "  --ctx N            tokens of KV cache (default 4096)\n"
        "  --kv-type T        bf16 (default) | f32: how the KV cache stores values, as the session does\n"
        "  --gpus SPEC        plan for GPUs you describe instead of the ones found: 1x24GiB, 2x24GiB,\n"
        "                     24GiB,12GiB (how to ask \"will it fit on a 24 GB card\" without one)\n"
        "  --gpu-mem SIZE     use at most SIZE of each GPU found (an error when there is none: use --gpus)\n"
        "  --gpu-reserve SIZE kept free on each GPU for the CUDA context and activations (default: what the\n"
        "                     runtime needs for the model, about 1.04 GiB for DeepSeek-V3)\n"
        "  --cpu-mem SIZE     use at most SIZE of host memory (shared by the NUMA nodes by their size)\n"
        "  --cpu-bw GBPS      host memory bandwidth, all nodes together (default 100 GB/s per NUMA node)\n"
        "  --measure-bw       measure this machine's read bandwidth first (about a second, a buffer of up to\n"
        "                     8x the last-level cache)\n"
        "                     and plan with it; not with --host or --topology, which describe another host\n"
        "  --gpu-bw GBPS      GPU memory bandwidth (default: the driver's figure, else 1000 GB/s)\n"
        "  --host SPEC        plan for a host you describe: 2x384GiB (NUMA nodes x memory each), 768GiB\n"
        "  --topology T       plan for another host: synthetic:<hwloc description>, e.g.\n"
        "                     'synthetic:pack:2 [numa(memory=384GiB)] core:32 pu:2', or an lstopo XML file\n"
        "  --auto             fill each GPU's leftover memory with whole MoE layers' routed experts, best\n"
        "                     first, and print the rules chosen\n"
        "  --verbose          one row per module instead of one per group of layers\n"
        "  --json             print only JSON: fits, kv_bytes_per_token, decode_tok_s_estimate,\n"
        "                     devices {name: {bytes, budget, numa: [{node, bytes}]}}, modules [{name, device,\n"
        "                     bytes}], auto_rules, overflows\n\n"
        "The estimate is a roofline: the bytes each device reads per decoded token (one embedding row, top-k\n"
        "of each layer's routed experts, all other weights, the whole KV cache) over its bandwidth, the devices\n"
        "taking turns and the NUMA nodes streaming in parallel.\n");
}

typedef struct td_rules_opts {
    const char *rules, *model, *config, *topology;
    const char *overrides[32];
    int n_overrides;
    td_assume_type assume;
    bool no_mtp, autofill, json, verbose, measure_bw;
    int64_t ctx;
    int kv_bytes;
    td_devices_params dev;
    bool gpus_given;
} td_rules_opts;

/* This machine's read bandwidth, measured with the kernels' own pool (the decode roofline). */
static td_status td_rules_measure_bw(const td_rules_opts *o, td_devices *devices)
{
    if (o->dev.topology || o->dev.host_nodes > 0)
        return td_fail(TD_E_ARG, "--measure-bw measures this machine; it cannot go with --host or --topology");
    if (o->dev.cpu_bw_gbps > 0) return td_fail(TD_E_ARG, "--measure-bw and --cpu-bw both set the host bandwidth: give one");
    td_cpu_params cp = {.kernels = TD_KERNELS_AUTO, .max_tokens = 1, .max_cols = 256, .hidden = 256};
    td_cpu *cpu;
    TD_TRY(td_cpu_create(&cp, &cpu));
    td_membw_result r;
    td_membw_params mp = {.passes = 5, .seconds = 1};
    td_status st = td_membw_measure(cpu, &mp, &r);
    td_cpu_free(cpu);
    if (st == TD_OK) td_devices_set_cpu_bandwidth(devices, r.gbps_median, TD_BW_MEASURED);
    return st;
}

static int td_rules_parse(int argc, char **argv, td_rules_opts *o)
{
    td_args a;
    td_args_init(&a, "rules", argc, argv);
    while (td_args_next(&a)) {
        const char *v;
        uint64_t bytes;
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_rules_help();
            return 0;
        } else if (td_args_is(&a, "--json")) {
            o->json = true;
        } else if (td_args_is(&a, "--auto")) {
            o->autofill = true;
        } else if (td_args_is(&a, "--verbose") || td_args_is(&a, "-v")) {
            o->verbose = true;
        } else if (td_args_is(&a, "--no-mtp")) {
            o->no_mtp = true;
        } else if (td_args_is(&a, "--rules")) {
            if (!(o->rules = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--model")) {
            if (!(o->model = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--config")) {
            if (!(o->config = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--measure-bw")) {
            o->measure_bw = true;
        } else if (td_args_is(&a, "--topology")) {
            if (!(o->dev.topology = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--override")) {
            if (!(v = td_args_value(&a))) return 2;
            if (o->n_overrides == (int)(sizeof o->overrides / sizeof o->overrides[0]))
                return td_cli_usage_error("rules", "--override: at most 32 of them");
            o->overrides[o->n_overrides++] = v;
        } else if (td_args_is(&a, "--assume-type")) {
            if (!(v = td_args_value(&a))) return 2;
            if (!td_assume_type_from_name(v, &o->assume))
                return td_cli_usage_error("rules", "--assume-type: '%s' is not one of q4_k, q4_k_m, q8_0, bf16, fp8", v);
        } else if (td_args_is(&a, "--ctx")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 1, 1ll << 32, &o->ctx)) return 2;
        } else if (td_args_is(&a, "--kv-type")) {
            td_kv_type kv;
            if (!(v = td_args_value(&a)) || !td_parse_kv_type(&a, v, &kv)) return 2;
            o->kv_bytes = td_kv_type_bytes(kv);
        } else if (td_args_is(&a, "--gpus")) {
            if (!(v = td_args_value(&a))) return 2;
            if (td_devices_parse_gpus(v, &o->dev) != TD_OK) return td_cli_usage_error("rules", "%s", td_errmsg());
            o->gpus_given = true;
        } else if (td_args_is(&a, "--host")) {
            if (!(v = td_args_value(&a))) return 2;
            if (td_devices_parse_host(v, &o->dev) != TD_OK) return td_cli_usage_error("rules", "%s", td_errmsg());
        } else if (td_args_is(&a, "--gpu-mem")) {
            if (!(v = td_args_value(&a)) || !td_parse_bytes(&a, v, &o->dev.gpu_mem)) return 2;
        } else if (td_args_is(&a, "--cpu-mem")) {
            if (!(v = td_args_value(&a)) || !td_parse_bytes(&a, v, &o->dev.cpu_mem)) return 2;
        } else if (td_args_is(&a, "--gpu-reserve")) {
            if (!(v = td_args_value(&a)) || !td_parse_bytes(&a, v, &bytes)) return 2;
            o->dev.gpu_reserve = (int64_t)bytes;
        } else if (td_args_is(&a, "--cpu-bw")) {
            if (!(v = td_args_value(&a)) || !td_parse_double(&a, v, 0.1, 1e6, &o->dev.cpu_bw_gbps)) return 2;
        } else if (td_args_is(&a, "--gpu-bw")) {
            if (!(v = td_args_value(&a)) || !td_parse_double(&a, v, 0.1, 1e6, &o->dev.gpu_bw_gbps)) return 2;
        } else {
            return td_args_unknown(&a);
        }
    }
    if (!o->model == !o->config) return td_cli_usage_error("rules", "give one of --model or --config");
    if (o->config && o->assume == TD_ASSUME_NONE)
        return td_cli_usage_error("rules", "--config needs --assume-type (q4_k, q4_k_m, q8_0, bf16 or fp8)");
    return -1;
}

/* Hyperparameters and tensor directory from headers only: the files are mapped, never read. A GGUF's
 * tensors come under their canonical names, so the planner sees the same directory from either format. */
static td_status td_rules_open_model(const char *path, td_hparams *hp, td_tensor_dir **dir, td_gguf **gguf)
{
    td_model_format kind;
    TD_TRY(td_model_detect(path, &kind));
    TD_TRY(td_tensor_dir_create(dir));
    td_status st;
    if (kind == TD_FORMAT_GGUF) st = td_gguf_model_open(path, NULL, hp, *dir, gguf);
    else if (kind == TD_FORMAT_HF_DIR) st = td_hf_load(path, hp, *dir);
    else st = td_hf_load_file(path, hp, *dir);
    if (st != TD_OK) {
        td_tensor_dir_free(*dir);
        *dir = NULL;
    }
    return st;
}

/* The overrides are command-line values: a bad one is bad usage (exit 2), like any other bad option. */
static int td_rules_add_overrides(const td_rules_opts *o, td_rules *rules)
{
    for (int i = 0; i < o->n_overrides; i++) {
        td_status st = td_rules_add_override(rules, o->overrides[i]);
        if (st == TD_E_NOMEM) return td_cli_fail("rules", st);
        if (st != TD_OK) return td_cli_usage_error("rules", "%s", td_errmsg());
    }
    return 0;
}

static td_status td_rules_load(const td_rules_opts *o, td_rules **rules)
{
    TD_TRY(td_rules_create(rules));
    if (!o->rules) return TD_OK;
    char buf[4096];
    return td_rules_load_file(*rules, td_rules_resolve_path(o->rules, TANDEM_SOURCE_DIR "/placement_rules", buf, sizeof buf));
}

int td_cmd_rules(int argc, char **argv)
{
    td_rules_opts o = {.dev = {.gpu_reserve = -1, .gpu_probe = td_gpu_probe_cuda,
                               .gpu_reserve_fn = td_backend_cuda_reserve_bytes}};
    int rc = td_rules_parse(argc, argv, &o);
    if (rc >= 0) return rc;
    if (o.gpus_given) o.dev.gpu_probe = NULL;
    td_rules *rules = NULL;
    td_tensor_dir *dir = NULL;
    td_gguf *gguf = NULL;
    td_plan *plan = NULL;
    td_hparams hp;
    td_devices *devices = td_calloc(1, sizeof *devices);
    td_status st = devices ? td_rules_load(&o, &rules) : td_fail(TD_E_NOMEM, "out of memory");
    if (st == TD_OK && (rc = td_rules_add_overrides(&o, rules)) != 0) {
        td_rules_free(rules);
        td_free(devices);
        return rc;
    }
    if (st == TD_OK) st = o.model ? td_rules_open_model(o.model, &hp, &dir, &gguf) : td_hparams_load(o.config, &hp);
    if (st == TD_OK) st = td_devices_detect(&o.dev, devices);
    if (st == TD_OK && o.measure_bw) st = td_rules_measure_bw(&o, devices);
    if (st == TD_OK) {
        td_plan_params p = {.hp = &hp, .dir = dir, .assume_type = o.assume, .no_mtp = o.no_mtp, .rules = rules,
                            .devices = devices, .ctx = o.ctx, .kv_elem_bytes = o.kv_bytes};
        st = o.autofill ? td_plan_auto(&p, rules, &plan) : td_plan_build(&p, &plan);
    }
    if (st != TD_OK) {
        rc = td_cli_fail("rules", st);
    } else {
        td_plan_print_idle_rules(plan, rules, "tandem rules: ", stderr);
        if (o.json) {
            char *s = td_plan_json(plan, rules);
            if (s) puts(s);
            td_free(s);
        } else {
            printf("host        %s: %d NUMA node%s, %d cores, %.0f GB/s (%s)\n", devices->topology, devices->n_numa,
                   devices->n_numa == 1 ? "" : "s", devices->n_cores, devices->cpu_bw_gbps,
                   td_bw_source_name(devices->cpu_bw_source));
            for (int g = 0; g < devices->n_gpus; g++) {
                char b[32];
                printf("gpu         cuda:%d %s, %s, %.0f GB/s (%s)\n", g, devices->gpus[g].name,
                       td_cli_fmt_bytes(devices->gpus[g].memory, b, sizeof b), devices->gpus[g].bw_gbps,
                       td_bw_source_name(devices->gpus[g].bw_source));
            }
            if (!devices->n_gpus) printf("gpu         none (%s; --gpus 1x24GiB plans for one)\n", devices->gpu_note);
            td_plan_print(plan, rules, stdout, o.verbose);
        }
        rc = plan->fits ? 0 : 1;
    }
    td_plan_free(plan);
    td_gguf_close(gguf); /* before the directory that owns its mappings */
    td_tensor_dir_free(dir);
    td_rules_free(rules);
    td_free(devices);
    return rc;
}
