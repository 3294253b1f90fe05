/* The logits of the engine as it was before the backend seam (commit 7029d55), pinned as bytes: every
 * fixture and the bundled model, one prefill of the reference prompt plus its greedy continuation
 * decoded through the cache, with an f32 cache. A refactoring of the forward pass that changes one bit
 * of one logit fails here. tests/data/logits-pins.txt holds one FNV-1a hash per model and kernel choice;
 * the fast kernels' bits depend on the ISA, so their lines name it and other CPUs skip them.
 * TANDEM_WRITE_PINS=<file> writes the hashes of this build instead (how the file was made: this program
 * built against 7029d55, where the session had f32 caches only). */
#include "td_cpu.h"
#include "td_engine.h"
#include "td_safetensors.h"
#include "td_test.h"

#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* The hash of the prompt's logits and every greedy step's logits, or 0 on failure. */
static uint64_t run(const char *model_path, const char *ref_path, td_kernels k, char *isa, size_t isa_cap)
{
    td_model *m = NULL;
    td_engine *e = NULL;
    td_session *s = NULL;
    td_tensor_dir *dir = NULL;
    uint64_t h = 0;
    if (!TD_CHECKF(td_model_open(model_path, NULL, &m) == TD_OK, "%s: %s", model_path, td_errmsg())) return 0;
    td_engine_params ep = {.kernels = k, .n_threads = 2};
    td_session_params sp = {.n_ctx = 256};
#ifndef TD_PINS_OLD_ENGINE
    sp.kv_type = TD_KV_F32;
#endif
    if (!TD_CHECK(td_engine_open(m, &ep, &e) == TD_OK && td_session_create(e, &sp, &s) == TD_OK)) goto done;
    snprintf(isa, isa_cap, "%s", td_cpu_kernel_name(td_engine_cpu(e), TD_TYPE_Q4_K, 4096, 2));
    if (!TD_CHECK(td_tensor_dir_create(&dir) == TD_OK && td_st_load(ref_path, dir, NULL) == TD_OK)) goto done;
    const td_tensor *ids = td_tensor_dir_find(dir, "input_ids"), *greedy = td_tensor_dir_find(dir, "greedy_ids");
    int64_t T = ids->shape[0], G = greedy->shape[0], V = m->hp.vocab_size;
    float *logits = malloc((size_t)(T * V) * sizeof(float));
    if (TD_CHECK(td_session_forward(s, ids->data, T, logits, NULL) == TD_OK)) {
        h = fnv1a(0xcbf29ce484222325ull, logits, (size_t)(T * V) * sizeof(float));
        const int32_t *g = greedy->data;
        for (int64_t i = 0; i + 1 < G; i++) {
            if (!TD_CHECK(td_session_forward(s, &g[i], 1, NULL, NULL) == TD_OK)) {
                h = 0;
                break;
            }
            h = fnv1a(h, td_session_logits(s), (size_t)V * sizeof(float));
        }
    }
    free(logits);
done:
    td_tensor_dir_free(dir);
    td_session_free(s);
    td_engine_close(e);
    td_model_close(m);
    return h;
}

/* The pinned hash for "name kernels", or 0 when the file has no line for it. */
static uint64_t pinned(const char *file, const char *name, const char *kernels)
{
    FILE *f = fopen(file, "r");
    if (!f) return 0;
    char line[512], n[256], k[64];
    unsigned long long h = 0, found = 0;
    while (fgets(line, sizeof line, f))
        if (line[0] != '#' && sscanf(line, "%255s %63s %llx", n, k, &h) == 3 && !strcmp(n, name) && !strcmp(k, kernels))
            found = h;
    fclose(f);
    return found;
}

int main(void)
{
    const char *write = getenv("TANDEM_WRITE_PINS");
    char pins[4096];
    snprintf(pins, sizeof pins, "%s/tests/data/logits-pins.txt", getenv("TANDEM_SOURCE_DIR") ? getenv("TANDEM_SOURCE_DIR") : "..");
    FILE *out = write ? fopen(write, "w") : NULL;
    if (write && !out) return td_test_skip("cannot write TANDEM_WRITE_PINS");
    struct {
        const char *name, *model, *ref; /* fixture-relative, or source-relative with "src:" */
    } cases[] = {
        {"tiny-dsv3-bf16", "safetensors/tiny-dsv3-bf16", "safetensors/tiny-dsv3-bf16/reference.safetensors"},
        {"tiny-dsv3-fp8", "safetensors/tiny-dsv3-fp8", "safetensors/tiny-dsv3-fp8/reference.safetensors"},
        {"tiny-dsv3-qdirect-bf16", "safetensors/tiny-dsv3-qdirect-bf16",
         "safetensors/tiny-dsv3-qdirect-bf16/reference.safetensors"},
        {"tiny-dsv3-q4_k_m-mla-mtp", "gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf", "gguf/tiny-dsv3-q4_k_m-mla-mtp.reference.safetensors"},
        {"tiny-dsv3-q8_0-legacy", "gguf/tiny-dsv3-q8_0-legacy.gguf", "gguf/tiny-dsv3-q8_0-legacy.reference.safetensors"},
        {"tandem-tiny", "src:models/tandem-tiny-q8_0.gguf", "src:models/tandem-tiny.reference.safetensors"},
    };
    const char *src = getenv("TANDEM_SOURCE_DIR") ? getenv("TANDEM_SOURCE_DIR") : "..";
    int compared = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char model[4096], ref[4096];
        if (!strncmp(cases[c].model, "src:", 4)) {
            snprintf(model, sizeof model, "%s/%s", src, cases[c].model + 4);
            snprintf(ref, sizeof ref, "%s/%s", src, cases[c].ref + 4);
        } else {
            snprintf(model, sizeof model, "%s", td_test_fixture(cases[c].model));
            snprintf(ref, sizeof ref, "%s", td_test_fixture(cases[c].ref));
        }
        td_kernels ks[2] = {TD_KERNELS_REF, TD_KERNELS_AUTO};
        for (int i = 0; i < 2; i++) {
            char isa[64], label[96];
            uint64_t h = run(model, ref, ks[i], isa, sizeof isa);
            if (ks[i] == TD_KERNELS_REF) snprintf(label, sizeof label, "ref");
            else snprintf(label, sizeof label, "auto:%s", isa);
            if (out) {
                fprintf(out, "%s %s %016llx\n", cases[c].name, label, (unsigned long long)h);
                continue;
            }
            uint64_t want = pinned(pins, cases[c].name, label);
            if (!want) {
                printf("skip %s %s: no pin for this kernel choice\n", cases[c].name, label);
                continue;
            }
            compared++;
            TD_CHECKF(h == want, "%s %s: logits hash %016llx, pinned %016llx", cases[c].name, label,
                      (unsigned long long)h, (unsigned long long)want);
        }
    }
    if (out) {
        fclose(out);
        return td_test_finish();
    }
    TD_CHECKF(compared >= 6, "only %d pinned runs compared (every reference-kernel run has a pin)", compared);
    return td_test_finish();
}
