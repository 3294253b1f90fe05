/* `tandem inspect` on a 400 GB split GGUF reads only headers.
 *
 * The model is DeepSeek-V3 at its real shapes (from shared/fixtures/real/deepseek-v3-config.json) in a
 * Q4_K_M-like mix, MLA layout, written as 9 split parts whose data regions are sparse holes: a few MB of
 * headers on disk, ~400 GB apparent. The test runs the real `tandem inspect` on the third part, then checks
 *  - what it printed (files, layers, experts, tensor count and bytes, layout, DeepSeek-V3 groups 8/4
 *    recognised from a file without group keys);
 *  - that no page of any data region beyond the first 4 MiB after a header (kernel read-around of the
 *    header's last pages) entered the page cache (mincore), and the files' allocated blocks did not grow;
 *  - and prints the time and the peak memory of the inspect process (measured, not asserted beyond sanity).
 * Everything is removed at the end. */
#include "td_test.h"

#include "td_gguf_model.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define N_PARTS 9
#define SLACK_BYTES (4u << 20) /* read-around allowed after each header */

enum { Q4_K = 12, Q6_K = 14, Q8_0 = 8, F32 = 0 };

typedef struct model {
    td_gguf_writer *w;
    size_t n_tensors;
    uint64_t bytes;
} model;

static void add(model *m, const char *name, uint32_t type, int nd, int64_t a, int64_t b, int64_t c)
{
    int64_t ne[3] = {a, b, c};
    td_status st = td_gguf_add_tensor(m->w, name, type, nd, ne, NULL);
    TD_CHECKF(st == TD_OK, "%s", td_errmsg());
    const td_ggml_type_info *ti = td_ggml_type(type);
    m->bytes += (uint64_t)(a / ti->block_elems) * (uint64_t)ti->block_bytes * (uint64_t)(nd > 1 ? b : 1) *
                (uint64_t)(nd > 2 ? c : 1);
    m->n_tensors++;
}

/* The tensors llama.cpp writes for DeepSeek-V3 in the MLA layout; types of a Q4_K_M-like mix. */
static void add_tensors(model *m, const td_hparams *hp)
{
    int64_t H = hp->hidden_size, V = hp->vocab_size, nh = hp->n_heads, r = hp->kv_lora_rank;
    int64_t dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim, ql = hp->q_lora_rank;
    int64_t E = hp->n_routed_experts, Im = hp->moe_intermediate_size, I = hp->intermediate_size;
    add(m, "token_embd.weight", Q4_K, 2, H, V, 1);
    add(m, "output_norm.weight", F32, 1, H, 1, 1);
    add(m, "output.weight", Q6_K, 2, H, V, 1);
    for (int l = 0; l < hp->n_layers; l++) {
        char n[96];
#define T(suffix, type, nd, a, b, c)                                                                                   \
    snprintf(n, sizeof n, "blk.%d.%s", l, suffix);                                                                     \
    add(m, n, type, nd, a, b, c)
        T("attn_norm.weight", F32, 1, H, 1, 1);
        T("ffn_norm.weight", F32, 1, H, 1, 1);
        T("attn_q_a.weight", Q4_K, 2, H, ql, 1);
        T("attn_q_a_norm.weight", F32, 1, ql, 1, 1);
        T("attn_q_b.weight", Q4_K, 2, ql, nh * (dn + dr), 1);
        T("attn_kv_a_mqa.weight", Q4_K, 2, H, r + dr, 1);
        T("attn_kv_a_norm.weight", F32, 1, r, 1, 1);
        T("attn_k_b.weight", Q8_0, 3, dn, r, nh);
        T("attn_v_b.weight", Q4_K, 3, r, dv, nh);
        T("attn_output.weight", Q4_K, 2, nh * dv, H, 1);
        if (!td_hparams_layer_is_moe(hp, l)) {
            T("ffn_gate.weight", Q4_K, 2, H, I, 1);
            T("ffn_up.weight", Q4_K, 2, H, I, 1);
            T("ffn_down.weight", Q6_K, 2, I, H, 1);
            continue;
        }
        T("ffn_gate_inp.weight", F32, 2, H, E, 1);
        T("exp_probs_b.bias", F32, 1, E, 1, 1);
        T("ffn_gate_exps.weight", Q4_K, 3, H, Im, E);
        T("ffn_up_exps.weight", Q4_K, 3, H, Im, E);
        T("ffn_down_exps.weight", Q6_K, 3, Im, H, E);
        T("ffn_gate_shexp.weight", Q4_K, 2, H, Im * hp->n_shared_experts, 1);
        T("ffn_up_shexp.weight", Q4_K, 2, H, Im * hp->n_shared_experts, 1);
        T("ffn_down_shexp.weight", Q6_K, 2, Im * hp->n_shared_experts, H, 1);
#undef T
    }
}

/* A tokenizer as big as the real one (129280 tokens), so the first header has its real weight. */
static void add_tokenizer(model *m, const td_hparams *hp)
{
    size_t n = (size_t)hp->vocab_size;
    char **tokens = malloc(n * sizeof *tokens);
    int32_t *types = malloc(n * sizeof *types);
    for (size_t i = 0; i < n; i++) {
        tokens[i] = malloc(24);
        snprintf(tokens[i], 24, "tok%zu", i);
        types[i] = 1;
    }
    TD_CHECK(td_gguf_set_str(m->w, "tokenizer.ggml.model", "gpt2") == TD_OK);
    TD_CHECK(td_gguf_set_str_array(m->w, "tokenizer.ggml.tokens", (const char *const *)tokens, NULL, n) == TD_OK);
    TD_CHECK(td_gguf_set_i32_array(m->w, "tokenizer.ggml.token_type", types, n) == TD_OK);
    for (size_t i = 0; i < n; i++) free(tokens[i]);
    free(tokens);
    free(types);
}

typedef struct part_state {
    char path[600];
    uint64_t size, data_offset;
    blkcnt_t blocks;
} part_state;

/* Bytes of the pages of [off, off + len) of a mapped part that are in the page cache. */
static uint64_t resident(const part_state *p, const uint8_t *map, uint64_t off, uint64_t len)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t start = off / page * page, end = off + len < p->size ? off + len : p->size;
    if (start >= end) return 0;
    size_t pages = (size_t)((end - start + page - 1) / page);
    unsigned char *vec = malloc(pages);
    uint64_t total = 0;
    if (!vec || mincore((void *)(map + start), (size_t)(end - start), vec) != 0) total = UINT64_MAX;
    for (size_t k = 0; vec && total != UINT64_MAX && k < pages; k++) total += (vec[k] & 1) ? page : 0;
    free(vec);
    return total;
}

/* Residency far from the headers, sampled where a loader would read: the first and last page of every
 * tensor (that starts past the read-around slack) and one page every 256 MiB. Plus the slack itself. */
typedef struct residency {
    uint64_t far, near;
} residency;

static residency measure(const part_state *parts, const td_gguf *g)
{
    residency r = {0, 0};
    const uint8_t *maps[N_PARTS];
    for (int i = 0; i < N_PARTS; i++) {
        int fd = open(parts[i].path, O_RDONLY);
        void *p = fd >= 0 ? mmap(NULL, (size_t)parts[i].size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
        if (fd >= 0) close(fd);
        maps[i] = p == MAP_FAILED ? NULL : p;
        if (!maps[i]) {
            r.far = UINT64_MAX;
            continue;
        }
        r.near += resident(&parts[i], maps[i], parts[i].data_offset, SLACK_BYTES);
        for (uint64_t off = parts[i].data_offset + SLACK_BYTES; off < parts[i].size; off += 256u << 20)
            r.far += resident(&parts[i], maps[i], off, 1);
    }
    for (size_t k = 0; k < td_gguf_tensor_count(g); k++) {
        const td_gguf_tensor *t = td_gguf_tensor_at(g, k);
        const part_state *p = &parts[t->file];
        uint64_t start = p->data_offset + t->offset;
        if (!maps[t->file] || start < p->data_offset + SLACK_BYTES) continue;
        r.far += resident(p, maps[t->file], start, 1) + resident(p, maps[t->file], start + t->nbytes - 1, 1);
    }
    for (int i = 0; i < N_PARTS; i++)
        if (maps[i]) munmap((void *)maps[i], (size_t)parts[i].size);
    return r;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs `tandem inspect <path> --json` with stdout in out_path; returns its exit status. */
static int run_inspect(const char *tandem, const char *path, const char *out_path, struct rusage *ru, double *secs)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char *argv[] = {(char *)tandem, "inspect", (char *)path, "--json", NULL};
    pid_t pid;
    double t0 = now_s();
    int rc = posix_spawn(&pid, tandem, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return -1;
    int status;
    if (wait4(pid, &status, 0, ru) != pid) return -1;
    *secs = now_s() - t0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void check_output(const char *out_path, const model *m, const td_hparams *hp)
{
    FILE *f = fopen(out_path, "rb");
    char buf[8192] = {0};
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    cJSON *j = cJSON_ParseWithLength(buf, n);
    TD_CHECKF(j != NULL, "inspect printed no JSON: %.200s", buf);
    if (!j) return;
#define NUM(k) cJSON_GetNumberValue(cJSON_GetObjectItem(j, k))
    TD_CHECK(NUM("files") == N_PARTS);
    TD_CHECK(NUM("layers") == hp->n_layers && NUM("experts") == hp->n_routed_experts);
    TD_CHECK(NUM("hidden_size") == hp->hidden_size && NUM("kv_lora_rank") == hp->kv_lora_rank);
    TD_CHECK(NUM("tensors") == (double)m->n_tensors && NUM("tensor_bytes") == (double)m->bytes);
    TD_CHECK(NUM("expert_groups") == hp->n_group && NUM("expert_groups_used") == hp->topk_group);
    TD_CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "attention_layout")), "mla") == 0);
    TD_CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "mtp")));
    const cJSON *cls = cJSON_GetObjectItem(j, "bytes_by_module_class");
    double routed = cJSON_GetNumberValue(cJSON_GetObjectItem(cls, "routed experts"));
    TD_CHECKF(routed > 0.9 * (double)m->bytes, "routed experts %.0f of %llu bytes", routed,
              (unsigned long long)m->bytes);
#undef NUM
    cJSON_Delete(j);
}

int main(void)
{
    const char *tandem = getenv("TANDEM");
    if (!tandem || access(tandem, X_OK) != 0) return td_test_skip("TANDEM (the tandem program) is not set");
    td_hparams hp;
    if (td_hparams_load(td_test_fixture("real/deepseek-v3-config.json"), &hp) != TD_OK)
        return td_test_skip("deepseek-v3-config.json not found (TANDEM_SHARED?)");

    model m = {0};
    if (td_gguf_writer_create(&m.w) != TD_OK) return 1;
    /* a file converted before late 2025: no expert_group_* keys, which inspect must recognise as 8/4 */
    td_gguf_hparams_opts o = {.name = "DeepSeek-V3 (sparse skeleton)", .mla = true, .groups = false};
    TD_CHECKF(td_gguf_put_hparams(m.w, &hp, &o) == TD_OK, "%s", td_errmsg());
    add_tokenizer(&m, &hp);
    add_tensors(&m, &hp);
    char stem[600];
    snprintf(stem, sizeof stem, "%s/DeepSeek-V3-Q4_K_M.gguf", td_test_tmpdir());
    part_state parts[N_PARTS];
    memset(parts, 0, sizeof parts);
    for (int i = 0; i < N_PARTS; i++) td_gguf_split_path(stem, i + 1, N_PARTS, parts[i].path, sizeof parts[i].path);
    td_gguf_write_params wp = {.parts = N_PARTS, .sparse = true};
    td_status st = td_gguf_write(m.w, stem, &wp);
    TD_CHECKF(st == TD_OK, "%s", td_errmsg());

    uint64_t apparent = 0, on_disk = 0;
    for (int i = 0; i < N_PARTS && st == TD_OK; i++) {
        struct stat sb;
        TD_CHECK(stat(parts[i].path, &sb) == 0);
        parts[i].size = (uint64_t)sb.st_size;
        parts[i].blocks = sb.st_blocks;
        apparent += parts[i].size;
        on_disk += (uint64_t)sb.st_blocks * 512u;
    }
    if (st == TD_OK && on_disk > apparent / 1000) {
        for (int i = 0; i < N_PARTS; i++) unlink(parts[i].path);
        rmdir(td_test_tmpdir());
        td_gguf_writer_free(m.w);
        return td_test_skip("this file system does not keep sparse files sparse");
    }
    td_gguf *g = NULL;
    if (st == TD_OK) TD_CHECKF(td_gguf_open(parts[0].path, &g) == TD_OK, "%s", td_errmsg()); /* headers only */
    if (g) {
        for (int i = 0; i < N_PARTS; i++) parts[i].data_offset = td_gguf_data_offset(g, i);
        residency before = measure(parts, g);
        struct rusage ru;
        double secs = 0;
        char out[700];
        snprintf(out, sizeof out, "%s/inspect.json", td_test_tmpdir());
        int rc = run_inspect(tandem, parts[2].path, out, &ru, &secs);
        TD_CHECKF(rc == 0, "tandem inspect exited with %d", rc);
        check_output(out, &m, &hp);
        unlink(out);
        residency after = measure(parts, g);
        for (int i = 0; i < N_PARTS; i++) {
            struct stat sb;
            TD_CHECK(stat(parts[i].path, &sb) == 0 && sb.st_blocks == parts[i].blocks);
        }
        TD_CHECKF(before.far == 0 && after.far == 0, "%llu bytes of weights were paged in",
                  (unsigned long long)after.far);
        TD_CHECKF(after.near <= (uint64_t)N_PARTS * SLACK_BYTES, "%llu bytes resident past the headers",
                  (unsigned long long)after.near);
        TD_CHECKF(ru.ru_maxrss < 512 * 1024, "inspect peaked at %ld KiB", ru.ru_maxrss);
        fprintf(stderr,
                "sparse split GGUF: %d parts, %zu tensors, %.1f GB apparent, %.1f MB on disk; inspect took %.3f s, "
                "peak RSS %.1f MiB; data regions resident afterwards: %.1f KiB within %u MiB of a header (kernel "
                "read-around), %llu B sampled elsewhere\n",
                N_PARTS, m.n_tensors, (double)apparent / 1e9, (double)on_disk / 1e6, secs, (double)ru.ru_maxrss / 1024,
                (double)after.near / 1024, SLACK_BYTES >> 20, (unsigned long long)after.far);
        TD_CHECKF(apparent > 300e9, "apparent size %.1f GB: not DeepSeek-V3 sized", (double)apparent / 1e9);
        td_gguf_close(g);
    }
    for (int i = 0; i < N_PARTS; i++) unlink(parts[i].path);
    rmdir(td_test_tmpdir());
    td_gguf_writer_free(m.w);
    return td_test_finish();
}
