/* eval's bf16 tier: the yardstick reader (bf16-reference.json), the tier's limits and verdict, the
 * routing comparison of td_eval_run against the exact path (reference kernels, f32 KV cache), the
 * position counting the yardstick uses, and the KV bytes per token the planner and the session report. */
#include "td_engine.h"
#include "td_eval.h"
#include "td_plan.h"
#include "td_rules.h"
#include "td_safetensors.h"
#include "td_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Hand-made yardsticks: the numbers are this test's inputs. */
static const char *const yard_json =
    "[{\"fixture\": \"a\", \"variants\": {\"A\": {\"logits\": {\"n\": 10, \"kld_mean_clean\": 0.001, \"top1\": 0.9},"
    "  \"route_mismatch_positions\": [3, 7]}, \"B\": {}}},"
    " {\"fixture\": \"b.gguf\", \"variants\": {\"A\": {\"logits\": {\"n\": 49, \"kld_mean_clean\": 0.0002, \"top1\": 1},"
    "  \"route_mismatch_positions\": []}}}]";

static td_status parse(const char *json, const char *n0, const char *n1, td_bf16_yardstick *y)
{
    const char *names[2] = {n0, n1};
    return td_bf16_yardstick_parse(json, strlen(json), "y.json", names, n1 ? 2 : 1, y);
}

static void test_yardstick_parse(void)
{
    td_bf16_yardstick y;
    TD_CHECKF(parse(yard_json, "b.gguf", NULL, &y) == TD_OK, "%s", td_errmsg());
    TD_CHECK(strcmp(y.fixture, "b.gguf") == 0 && y.positions == 49 && y.flipped == 0 && y.top1 == 1 &&
             y.kld_mean_clean == 0.0002);
    /* the first name that has an entry wins: the file's own name before its stem */
    TD_CHECK(parse(yard_json, "x", "a", &y) == TD_OK && strcmp(y.fixture, "a") == 0 && y.flipped == 2 &&
             y.positions == 10 && y.top1 == 0.9);
    TD_CHECK(parse(yard_json, "a", "b.gguf", &y) == TD_OK && strcmp(y.fixture, "a") == 0);
    /* no entry: not found, naming the file and what was looked for */
    TD_CHECK(parse(yard_json, "tandem-tiny-q8_0.gguf", "tandem-tiny-q8_0", &y) == TD_E_NOT_FOUND);
    TD_CHECKF(strstr(td_errmsg(), "y.json") && strstr(td_errmsg(), "'tandem-tiny-q8_0'"), "%s", td_errmsg());

    /* malformed: each names what is wrong */
    static const struct {
        const char *json, *says;
    } bad[] = {
        {"{\"fixture\": \"a\"}", "not a JSON list"},
        {"[{\"fixture\": \"a\", \"variants\": {\"A\": {\"logits\": {\"n\": 10", "not a JSON list"},
        {"[{\"fixture\": \"a\", \"variants\": {}}]", "variants.A"},
        {"[{\"fixture\": \"a\", \"variants\": {\"A\": {\"logits\": {\"n\": 10, \"top1\": 0.9},"
         " \"route_mismatch_positions\": []}}}]",
         "variants.A.logits.kld_mean_clean"},
        {"[{\"fixture\": \"a\", \"variants\": {\"A\": {\"logits\": {\"n\": 10, \"kld_mean_clean\": 0.1, \"top1\": 1.5},"
         " \"route_mismatch_positions\": []}}}]",
         "top1 is 1.5"},
        {"[{\"fixture\": \"a\", \"variants\": {\"A\": {\"logits\": {\"n\": 10, \"kld_mean_clean\": \"x\", \"top1\": 1}, "
         "\"route_mismatch_positions\": []}}}]",
         "kld_mean_clean"},
        {"[{\"fixture\": \"a\", \"variants\": {\"A\": {\"logits\": {\"n\": 10, \"kld_mean_clean\": 0.1, \"top1\": 1}}}}]",
         "route_mismatch_positions"},
        {"[{\"fixture\": \"a\", \"variants\": {\"A\": {\"logits\": {\"n\": 2, \"kld_mean_clean\": 0.1, \"top1\": 1},"
         " \"route_mismatch_positions\": [0, 1, 2]}}}]",
         "3 flipped positions of 2"},
        {"[{\"fixture\": \"a\", \"variants\": {\"A\": {\"logits\": {\"n\": 2.5, \"kld_mean_clean\": 0.1, \"top1\": 1},"
         " \"route_mismatch_positions\": []}}}]",
         "of 2.5"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        td_status st = parse(bad[i].json, "a", NULL, &y);
        TD_CHECKF(st == TD_E_FORMAT && strstr(td_errmsg(), bad[i].says) && strstr(td_errmsg(), "y.json"),
                  "case %zu: status %d, '%s'", i, (int)st, td_errmsg());
    }
    /* a file that is not there */
    TD_CHECK(td_bf16_yardstick_load("/nonexistent/bf16-reference.json", (const char *[]){"a"}, 1, &y) == TD_E_IO);
}

static td_eval_result result_at(double kld_clean, int64_t flipped, int64_t positions, int64_t top1)
{
    td_eval_result r = {0};
    r.routing_compared = true;
    r.all = (td_eval_part){.positions = positions, .top1 = top1, .flipped = flipped, .kld_mean_clean = kld_clean};
    return r;
}

static void test_verdict(void)
{
    td_bf16_yardstick y = {.positions = 50, .flipped = 2, .kld_mean_clean = 1e-4, .top1 = 0.96};
    td_bf16_limits lim = td_bf16_tier_limits(&y);
    TD_CHECK(lim.kld_mean_clean_max == 2e-4 && lim.flipped_max == 3 && fabs(lim.top1_min - 0.94) < 1e-12);
    td_eval_result r = result_at(2e-4, 3, 50, 47); /* every limit met exactly (47/50 = 0.94) */
    TD_CHECK(td_bf16_tier_passes(&r, &lim));
    r = result_at(2.01e-4, 0, 50, 50);
    TD_CHECK(!td_bf16_tier_passes(&r, &lim)); /* clean KL */
    r = result_at(0, 4, 50, 50);
    TD_CHECK(!td_bf16_tier_passes(&r, &lim)); /* one flipped position too many */
    r = result_at(0, 0, 50, 46);
    TD_CHECK(!td_bf16_tier_passes(&r, &lim)); /* top-1 */
    r = result_at(-1, 0, 50, 50);
    TD_CHECK(!td_bf16_tier_passes(&r, &lim)); /* no clean position: nothing shows the smooth error is small */
    r = result_at(0, 0, 50, 50);
    r.routing_compared = false;
    TD_CHECK(!td_bf16_tier_passes(&r, &lim)); /* flips unknown */
}

typedef struct run {
    td_model *m;
    td_engine *e;
    td_session *s;
} run;

static bool run_open(run *x, const char *model, td_kernels k, td_kv_type kv, int64_t max_batch)
{
    memset(x, 0, sizeof *x);
    td_engine_params ep = {.kernels = k, .n_threads = 2, .max_batch = max_batch};
    td_session_params sp = {.n_ctx = 256, .kv_type = kv};
    return TD_CHECKF(td_model_open(td_test_fixture(model), NULL, &x->m) == TD_OK, "%s: %s", model, td_errmsg()) &&
           TD_CHECKF(td_engine_open(x->m, &ep, &x->e) == TD_OK, "%s", td_errmsg()) &&
           TD_CHECKF(td_session_create(x->e, &sp, &x->s) == TD_OK, "%s", td_errmsg());
}

static void run_close(run *x)
{
    td_session_free(x->s);
    td_engine_close(x->e);
    td_model_close(x->m);
}

static bool eval(run *x, const char *ref, bool routing, td_eval_result *r)
{
    td_eval_params p = {.routing = routing, .routing_threads = 2};
    return TD_CHECKF(td_eval_run(x->s, td_test_fixture(ref), &p, r) == TD_OK, "%s: %s", ref, td_errmsg());
}

/* The exact path against itself: no position flips, so the clean KL is the KL; the positions are the
 * yardstick's (prompt, then one per greedy step after the first); and the exact path's experts are the
 * float64 reference's topk.L. A traced prefill longer than the batch runs in several traced calls. */
static void test_routing_exact(void)
{
    const char *model = "safetensors/tiny-dsv3-bf16", *ref = "safetensors/tiny-dsv3-bf16/reference.safetensors";
    for (int b = 0; b < 2; b++) {
        run x;
        td_eval_result r, plain;
        int64_t max_batch = b ? 16 : 0; /* 16 < the 40-token prompt */
        if (!run_open(&x, model, TD_KERNELS_REF, TD_KV_F32, max_batch) || !eval(&x, ref, true, &r)) {
            run_close(&x);
            continue;
        }
        TD_CHECK(r.routing_compared && r.all.flipped == 0 && r.prefill.flipped == 0 && r.decode.flipped == 0);
        TD_CHECK(r.all.kld_mean_clean == r.all.kld_mean && r.all.clean_kld_positions == r.all.kld_positions);
        TD_CHECK(r.prefill.positions == r.prompt_tokens && r.decode.positions == r.greedy_steps - 1);
        TD_CHECK(r.all.positions == r.prefill.positions + r.decode.positions && r.all.top1 == r.all.positions);
        TD_CHECKF(r.exact_route_mismatch == 0, "max_batch %lld: %lld", (long long)max_batch,
                  (long long)r.exact_route_mismatch);
        /* without routing: the same numbers, and no flips reported */
        run_close(&x);
        if (run_open(&x, model, TD_KERNELS_REF, TD_KV_F32, max_batch) && eval(&x, ref, false, &plain)) {
            TD_CHECK(!plain.routing_compared && plain.all.flipped == -1 && plain.all.kld_mean_clean == -1);
            TD_CHECK(plain.kld_mean == r.kld_mean && plain.logits_max_rel_err == r.logits_max_rel_err &&
                     plain.all.kld_mean == r.all.kld_mean && plain.exact_route_mismatch == -1);
        }
        run_close(&x);
    }
}

/* A bf16 KV cache sends one prompt position of this fixture to other experts (a near-tied router score):
 * eval finds it, and the clean positions keep the small error while the mean carries the flip. */
static void test_routing_flip(void)
{
    run x;
    td_eval_result r;
    if (run_open(&x, "safetensors/tiny-dsv3-qdirect-bf16", TD_KERNELS_REF, TD_KV_BF16, 0) &&
        eval(&x, "safetensors/tiny-dsv3-qdirect-bf16/reference.safetensors", true, &r)) {
        TD_CHECKF(r.all.flipped >= 1 && r.all.flipped == r.prefill.flipped + r.decode.flipped, "%lld flipped",
                  (long long)r.all.flipped);
        TD_CHECK(r.all.clean_kld_positions == r.all.kld_positions - r.all.flipped);
        TD_CHECKF(r.all.kld_mean_clean >= 0 && r.all.kld_mean_clean * 10 < r.all.kld_mean, "clean %g, all %g",
                  r.all.kld_mean_clean, r.all.kld_mean);
        TD_CHECK(r.exact_route_mismatch == 0); /* the exact path itself follows float64 */
    }
    run_close(&x);
}

/* Every fixture of the shared yardstick file counts the positions eval counts for it. */
static void test_yardstick_positions(void)
{
    static const char *const fx[][2] = {
        {"tiny-dsv3-bf16", "safetensors/tiny-dsv3-bf16/reference.safetensors"},
        {"tiny-dsv3-fp8", "safetensors/tiny-dsv3-fp8/reference.safetensors"},
        {"tiny-dsv3-qdirect-bf16", "safetensors/tiny-dsv3-qdirect-bf16/reference.safetensors"},
        {"tiny-dsv3-q8_0-legacy.gguf", "gguf/tiny-dsv3-q8_0-legacy.reference.safetensors"},
        {"tiny-dsv3-q4_k_m-mla-mtp.gguf", "gguf/tiny-dsv3-q4_k_m-mla-mtp.reference.safetensors"},
    };
    char path[4096];
    snprintf(path, sizeof path, "%s", td_test_fixture("bf16-reference.json"));
    for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++) {
        td_bf16_yardstick y;
        td_tensor_dir *dir = NULL;
        if (!TD_CHECKF(td_bf16_yardstick_load(path, &fx[i][0], 1, &y) == TD_OK, "%s", td_errmsg())) continue;
        TD_CHECK(td_tensor_dir_create(&dir) == TD_OK);
        if (TD_CHECKF(td_st_load(td_test_fixture(fx[i][1]), dir, NULL) == TD_OK, "%s", td_errmsg())) {
            int64_t T = td_tensor_dir_find(dir, "input_ids")->shape[0], G = td_tensor_dir_find(dir, "greedy_ids")->shape[0];
            TD_CHECKF(y.positions == T + G - 1, "%s: %lld positions, reference %lld + %lld", fx[i][0],
                      (long long)y.positions, (long long)T, (long long)G);
        }
        td_tensor_dir_free(dir);
    }
}

/* The planner and the session count the same KV bytes per token, for both cache types. */
static void test_kv_bytes(void)
{
    run x[2];
    td_kv_type types[2] = {TD_KV_F32, TD_KV_BF16};
    td_devices_params dp = {.topology = "synthetic:pack:1 numa:1 core:1 pu:1", .gpu_reserve = -1};
    td_devices d;
    TD_CHECK(td_devices_detect(&dp, &d) == TD_OK);
    int64_t bytes[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        td_plan *plan = NULL;
        if (run_open(&x[i], "gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf", TD_KERNELS_AUTO, types[i], 0) &&
            TD_CHECKF(td_plan_for_model(x[i].m, NULL, &d, 64, td_kv_type_bytes(types[i]), &plan) == TD_OK, "%s",
                      td_errmsg())) {
            bytes[i] = td_session_kv_bytes_per_token(x[i].s);
            TD_CHECKF(plan->kv_bytes_per_token == bytes[i], "%s: plan %lld, session %lld", td_kv_type_name(types[i]),
                      (long long)plan->kv_bytes_per_token, (long long)bytes[i]);
            TD_CHECK(td_session_kv_type(x[i].s) == types[i]);
        }
        td_plan_free(plan);
        run_close(&x[i]);
    }
    TD_CHECK(bytes[0] > 0 && bytes[0] == 2 * bytes[1]);
}

int main(void)
{
    test_yardstick_parse();
    test_verdict();
    test_routing_exact();
    test_routing_flip();
    test_yardstick_positions();
    test_kv_bytes();
    return td_test_finish();
}
