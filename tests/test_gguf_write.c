/* The GGUF writer, checked through the reader: every metadata kind, tensors from memory and from fill
 * callbacks, split output, sparse skeletons, a byte-exact copy of a fixture, and refusals. */
#include "td_test.h"

#include "td_alloc.h"
#include "td_gguf_write.h"
#include "td_mmap.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", td_test_tmpdir(), name);
    return buf[k];
}

/* rows of a Q8_0 tensor: block b of row r has d = 1.0 (f16 0x3c00) and qs[j] = r + b + j */
static td_status fill_q8(void *ctx, int64_t row0, int64_t nrows, uint8_t *dst)
{
    int64_t ne0 = *(const int64_t *)ctx;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t b = 0; b < ne0 / 32; b++) {
            uint8_t *blk = dst + (r * (ne0 / 32) + b) * 34;
            blk[0] = 0x00;
            blk[1] = 0x3c;
            for (int j = 0; j < 32; j++) blk[2 + j] = (uint8_t)(row0 + r + b + j);
        }
    return TD_OK;
}

static td_status fill_fails(void *ctx, int64_t row0, int64_t nrows, uint8_t *dst)
{
    (void)ctx;
    (void)row0;
    (void)nrows;
    (void)dst;
    return td_fail(TD_E_IO, "source went away");
}

static float f32s[6] = {1, 2, 3, 4, 5, 6};
static int64_t q8_ne[2] = {64, 3};

static td_gguf_writer *make_writer(void)
{
    td_gguf_writer *w;
    if (td_gguf_writer_create(&w) != TD_OK) return NULL;
    const char *strs[] = {"a", "", "héllo"};
    int32_t ints[] = {-1, 0, 7};
    TD_CHECK(td_gguf_set_str(w, "general.architecture", "deepseek2") == TD_OK);
    TD_CHECK(td_gguf_set_u32(w, "k.u32", 4000000000u) == TD_OK);
    TD_CHECK(td_gguf_set_i32(w, "k.i32", -5) == TD_OK);
    TD_CHECK(td_gguf_set_u64(w, "k.u64", 1ull << 50) == TD_OK);
    TD_CHECK(td_gguf_set_f32(w, "k.f32", 0.1f) == TD_OK);
    TD_CHECK(td_gguf_set_bool(w, "k.bool", true) == TD_OK);
    TD_CHECK(td_gguf_set_str_array(w, "k.strs", strs, NULL, 3) == TD_OK);
    TD_CHECK(td_gguf_set_i32_array(w, "k.ints", ints, 3) == TD_OK);
    TD_CHECK(td_gguf_set_u32(w, "k.u32", 1) == TD_E_ARG); /* set twice */
    int64_t ne1[1] = {6};
    TD_CHECK(td_gguf_add_tensor(w, "norm.weight", 0, 1, ne1, f32s) == TD_OK);
    TD_CHECK(td_gguf_add_tensor_fn(w, "blk.0.q8.weight", 8, 2, q8_ne, fill_q8, &q8_ne[0]) == TD_OK);
    int64_t ne3[3] = {2, 1, 3};
    TD_CHECK(td_gguf_add_tensor(w, "blk.0.f32x3.weight", 0, 3, ne3, f32s) == TD_OK);
    return w;
}

static void check_contents(td_gguf *g)
{
    int64_t i;
    double f;
    bool b;
    char s[32];
    td_gguf_value arr;
    const char *str;
    size_t len;
    TD_CHECK(td_gguf_get_str_copy(g, "general.architecture", s, sizeof s) == TD_OK && strcmp(s, "deepseek2") == 0);
    TD_CHECK(td_gguf_get_int(g, "k.u32", &i) == TD_OK && i == 4000000000ll);
    TD_CHECK(td_gguf_get_int(g, "k.i32", &i) == TD_OK && i == -5);
    TD_CHECK(td_gguf_get_int(g, "k.u64", &i) == TD_OK && i == 1ll << 50);
    TD_CHECK(td_gguf_get_float(g, "k.f32", &f) == TD_OK && (float)f == 0.1f);
    TD_CHECK(td_gguf_get_bool(g, "k.bool", &b) == TD_OK && b);
    TD_CHECK(td_gguf_get_array(g, "k.strs", &arr) == TD_OK && arr.len == 3);
    TD_CHECK(td_gguf_array_str(&arr, 2, &str, &len) == TD_OK && len == strlen("héllo") && !memcmp(str, "héllo", len));
    TD_CHECK(td_gguf_get_array(g, "k.ints", &arr) == TD_OK && td_gguf_array_int(&arr, 0, &i) == TD_OK && i == -1);
    const td_gguf_tensor *t = td_gguf_find_tensor(g, "norm.weight");
    TD_CHECK(t && t->nbytes == sizeof f32s && memcmp(t->data, f32s, sizeof f32s) == 0);
    t = td_gguf_find_tensor(g, "blk.0.q8.weight");
    uint8_t want[3 * 2 * 34];
    fill_q8(&q8_ne[0], 0, 3, want);
    TD_CHECK(t && t->nbytes == sizeof want && memcmp(t->data, want, sizeof want) == 0);
    t = td_gguf_find_tensor(g, "blk.0.f32x3.weight");
    TD_CHECK(t && t->n_dims == 3 && t->ne[2] == 3 && memcmp(t->data, f32s, sizeof f32s) == 0);
}

static void test_round_trip(void)
{
    td_gguf_writer *w = make_writer();
    if (!w) return;
    const char *path = tmp_path("one.gguf");
    TD_CHECKF(td_gguf_write(w, path, NULL) == TD_OK, "%s", td_errmsg());
    td_gguf *g;
    td_status st = td_gguf_open(path, &g);
    TD_CHECKF(st == TD_OK, "%s", td_errmsg());
    if (st == TD_OK) {
        TD_CHECK(td_gguf_file_count(g) == 1 && td_gguf_kv_count(g) == 8 && td_gguf_alignment(g) == 32);
        check_contents(g);
        td_gguf_close(g);
    }
    struct stat sb;
    mode_t mask = umask(022);
    umask(mask);
    TD_CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == (0666 & ~mask)); /* not mkstemp's 0600 */
    /* a larger alignment is written as general.alignment */
    td_gguf_write_params p = {.alignment = 4096};
    TD_CHECK(td_gguf_write(w, path, &p) == TD_OK);
    if (td_gguf_open(path, &g) == TD_OK) {
        TD_CHECK(td_gguf_alignment(g) == 4096 && td_gguf_data_offset(g, 0) % 4096 == 0);
        check_contents(g);
        td_gguf_close(g);
    }
    unlink(path);
    td_gguf_writer_free(w);
}

static void test_split_and_sparse(void)
{
    td_gguf_writer *w = make_writer();
    if (!w) return;
    td_gguf_write_params p = {.parts = 3};
    const char *stem = tmp_path("split.gguf");
    TD_CHECKF(td_gguf_write(w, stem, &p) == TD_OK, "%s", td_errmsg());
    char part2[600];
    td_gguf_split_path(stem, 2, 3, part2, sizeof part2);
    TD_CHECK(strstr(part2, "split-00002-of-00003.gguf") != NULL);
    td_gguf *g;
    td_status st = td_gguf_open(part2, &g);
    TD_CHECKF(st == TD_OK, "%s", td_errmsg());
    if (st == TD_OK) {
        TD_CHECK(td_gguf_file_count(g) == 3 && td_gguf_tensor_count(g) == 3);
        check_contents(g);
        td_gguf_close(g);
    }
    /* sparse: the same layout, data regions left as holes */
    p.sparse = true;
    TD_CHECK(td_gguf_write(w, stem, &p) == TD_OK);
    st = td_gguf_open(part2, &g);
    TD_CHECKF(st == TD_OK, "%s", td_errmsg());
    if (st == TD_OK) {
        const td_gguf_tensor *t = td_gguf_find_tensor(g, "blk.0.q8.weight");
        TD_CHECK(t && t->data[0] == 0 && t->data[t->nbytes - 1] == 0);
        td_gguf_close(g);
    }
    for (int i = 1; i <= 3; i++) {
        char f[600];
        td_gguf_split_path(stem, i, 3, f, sizeof f);
        unlink(f);
    }
    p = (td_gguf_write_params){.parts = 4};
    TD_CHECK(td_gguf_write(w, stem, &p) == TD_E_ARG); /* more parts than tensors */
    td_gguf_writer_free(w);
}

/* ------------------------------------------------------------------ failures, signals, mixed sets */

/* Files in the test folder whose names contain `part`. */
static int count_files(const char *part)
{
    DIR *d = opendir(td_test_tmpdir());
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, part) != NULL;
    if (d) closedir(d);
    return n;
}

static char *read_all(const char *path, uint64_t *len)
{
    char *p = NULL;
    return td_read_text_file(path, 1u << 20, &p, len) == TD_OK ? p : NULL;
}

static bool same_file(const char *a, const char *b)
{
    uint64_t na = 0, nb = 0;
    char *pa = read_all(a, &na), *pb = read_all(b, &nb);
    bool same = pa && pb && na == nb && memcmp(pa, pb, (size_t)na) == 0;
    td_free(pa);
    td_free(pb);
    return same;
}

/* The set identity of one part, read back. */
static bool part_set_id(const char *stem, int no, int count, char *out, size_t cap)
{
    char path[600];
    td_gguf_split_path(stem, no, count, path, sizeof path);
    uint64_t len = 0;
    uint8_t *buf = (uint8_t *)read_all(path, &len);
    td_gguf *g = NULL;
    bool ok = buf && td_gguf_open_memory(buf, len, path, &g) == TD_OK &&
              td_gguf_get_str_copy(g, TD_GGUF_SPLIT_SET_ID, out, cap) == TD_OK;
    td_gguf_close(g);
    td_free(buf);
    return ok;
}

/* A fill that fails (or raises a signal) when it reaches the tensor named in ctx. */
typedef struct {
    int64_t ne0;
    int sig; /* 0: fail with an error */
} trap_ctx;

static td_status fill_trap(void *ctx, int64_t row0, int64_t nrows, uint8_t *dst)
{
    const trap_ctx *t = ctx;
    (void)row0;
    (void)nrows;
    (void)dst;
    if (t->sig) raise(t->sig);
    return td_fail(TD_E_IO, "disk full (simulated)");
}

/* A writer like make_writer() whose last tensor (in the last part of a 3-way split) traps. */
static td_gguf_writer *make_trapped_writer(trap_ctx *trap)
{
    td_gguf_writer *w = make_writer();
    if (!w) return NULL;
    int64_t ne[2] = {64, 2};
    TD_CHECK(td_gguf_add_tensor_fn(w, "zz.last.weight", 8, 2, ne, fill_trap, trap) == TD_OK);
    return w;
}

static void remove_set(const char *stem, int count)
{
    for (int i = 1; i <= count; i++) {
        char f[600];
        td_gguf_split_path(stem, i, count, f, sizeof f);
        unlink(f);
    }
}

/* Only whole sets are renamed into place: a write that fails in its last part leaves the previous set as
 * it was, with no temporary file; an injected full disk does the same; the identity tells sets apart. */
static void test_failed_split_keeps_old_set(void)
{
    char stem[512], other[512], again[512]; /* (tmp_path's buffers are reused) */
    snprintf(stem, sizeof stem, "%s", tmp_path("keep.gguf"));
    snprintf(other, sizeof other, "%s", tmp_path("other.gguf"));
    snprintf(again, sizeof again, "%s", tmp_path("again.gguf"));
    td_gguf_write_params p = {.parts = 3};
    td_gguf_writer *w = make_writer();
    if (!w) return;
    TD_CHECKF(td_gguf_write(w, stem, &p) == TD_OK, "%s", td_errmsg());
    TD_CHECK(td_gguf_write(w, again, &p) == TD_OK);
    char id0[32] = "", id[32] = "";
    TD_CHECK(part_set_id(stem, 1, 3, id0, sizeof id0) && strlen(id0) == 16);
    for (int i = 2; i <= 3; i++) TD_CHECK(part_set_id(stem, i, 3, id, sizeof id) && strcmp(id, id0) == 0);
    char a[600], b[600];
    for (int i = 1; i <= 3; i++) { /* the same write, the same bytes (identity included) */
        td_gguf_split_path(stem, i, 3, a, sizeof a);
        td_gguf_split_path(again, i, 3, b, sizeof b);
        TD_CHECK(same_file(a, b));
    }

    trap_ctx trap = {.ne0 = 64};
    td_gguf_writer *bad = make_trapped_writer(&trap);
    if (!bad) goto done;
    TD_CHECK(td_gguf_write(bad, stem, &p) == TD_E_IO && strstr(td_errmsg(), "disk full (simulated)"));
    for (int i = 1; i <= 3; i++) {
        td_gguf_split_path(stem, i, 3, a, sizeof a);
        td_gguf_split_path(again, i, 3, b, sizeof b);
        TD_CHECKF(same_file(a, b), "part %d changed by a failed write", i);
    }
    TD_CHECK(count_files(".tmp.") == 0);
    /* a full disk, injected part-way through the second part */
    p.fail_after_bytes = 700;
    TD_CHECK(td_gguf_write(w, stem, &p) == TD_E_IO && strstr(td_errmsg(), "injected"));
    TD_CHECK(count_files(".tmp.") == 0);
    p.fail_after_bytes = 0;

    /* another set (one more tensor): another identity; one of its parts among ours is refused */
    td_gguf_writer *w2 = make_writer();
    int64_t ne[2] = {64, 2};
    TD_CHECK(w2 && td_gguf_add_tensor_fn(w2, "zz.last.weight", 8, 2, ne, fill_q8, &q8_ne[0]) == TD_OK);
    TD_CHECK(w2 && td_gguf_write(w2, other, &p) == TD_OK);
    TD_CHECK(part_set_id(other, 1, 3, id, sizeof id) && strcmp(id, id0) != 0);
    td_gguf_split_path(other, 3, 3, a, sizeof a);
    td_gguf_split_path(stem, 3, 3, b, sizeof b);
    TD_CHECK(rename(a, b) == 0);
    td_gguf *g = NULL;
    td_gguf_split_path(stem, 1, 3, a, sizeof a);
    TD_CHECKF(td_gguf_open(a, &g) == TD_E_FORMAT && !g && strstr(td_errmsg(), "another set"), "%s", td_errmsg());
    td_gguf_writer_free(w2);
    td_gguf_writer_free(bad);

done:
    remove_set(stem, 3);
    remove_set(other, 3);
    remove_set(again, 3);
    td_gguf_writer_free(w);
}

/* SIGINT or SIGTERM in the middle of a write: the process ends by the signal, its temporary files are
 * gone, and the previous output is whole. */
static void test_signal_removes_temporaries(void)
{
    char stem[512];
    snprintf(stem, sizeof stem, "%s", tmp_path("sig.gguf"));
    td_gguf_write_params p = {.parts = 3};
    td_gguf_writer *w = make_writer();
    if (!w) return;
    TD_CHECK(td_gguf_write(w, stem, &p) == TD_OK);
    td_gguf_writer_free(w);
    char first[600];
    td_gguf_split_path(stem, 1, 3, first, sizeof first);
    static const int sigs[2] = {SIGTERM, SIGINT};
    for (int k = 0; k < 2; k++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            trap_ctx trap = {.ne0 = 64, .sig = sigs[k]};
            td_gguf_writer *bad = make_trapped_writer(&trap);
            td_gguf_write_params q = {.parts = 3, .remove_on_signal = true};
            if (bad) td_gguf_write(bad, stem, &q);
            _exit(3); /* not reached: the signal ends the child */
        }
        int status = 0;
        TD_CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
        TD_CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == sigs[k], "signal %d: status %#x", sigs[k], status);
        TD_CHECKF(count_files(".tmp.") == 0, "signal %d left temporary files", sigs[k]);
        td_gguf *g = NULL;
        TD_CHECKF(td_gguf_open(first, &g) == TD_OK, "%s", td_errmsg());
        td_gguf_close(g);
    }
    remove_set(stem, 3);
}

/* Every metadata value and tensor of a fixture, copied through the writer, comes back byte for byte. */
static void test_copy_fixture(void)
{
    td_gguf *src;
    if (td_gguf_open(td_test_fixture("gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf"), &src) != TD_OK) return;
    td_gguf_writer *w;
    TD_CHECK(td_gguf_writer_create(&w) == TD_OK);
    for (size_t i = 0; i < td_gguf_kv_count(src); i++) {
        const td_gguf_kv *kv = td_gguf_kv_at(src, i);
        TD_CHECK(td_gguf_set_value(w, kv->key, &kv->v) == TD_OK);
    }
    for (size_t i = 0; i < td_gguf_tensor_count(src); i++) {
        const td_gguf_tensor *t = td_gguf_tensor_at(src, i);
        TD_CHECK(td_gguf_add_tensor(w, t->name, t->ggml_type, t->n_dims, t->ne, t->data) == TD_OK);
    }
    const char *path = tmp_path("copy.gguf");
    TD_CHECKF(td_gguf_write(w, path, NULL) == TD_OK, "%s", td_errmsg());
    td_gguf_writer_free(w);
    /* the fixture was written by another writer with the same layout rules: identical bytes */
    FILE *a = fopen(td_test_fixture("gguf/tiny-dsv3-q4_k_m-mla-mtp.gguf"), "rb"), *b = fopen(path, "rb");
    bool same = a && b;
    while (same) {
        int x = fgetc(a), y = fgetc(b);
        if (x != y) same = false;
        if (x == EOF || y == EOF) break;
    }
    if (a) fclose(a);
    if (b) fclose(b);
    TD_CHECK(same);
    unlink(path);
    td_gguf_close(src);
}

static void test_refusals(void)
{
    td_gguf_writer *w;
    TD_CHECK(td_gguf_writer_create(&w) == TD_OK);
    int64_t ne[2] = {48, 2};
    TD_CHECK(td_gguf_add_tensor(w, "x", 8, 2, ne, NULL) == TD_E_ARG && strstr(td_errmsg(), "whole Q8_0 blocks"));
    TD_CHECK(td_gguf_add_tensor(w, "x", 999, 2, ne, NULL) == TD_E_ARG);
    TD_CHECK(td_gguf_add_tensor(w, "x", 0, 5, ne, NULL) == TD_E_ARG);
    char long_name[80];
    memset(long_name, 'n', 79);
    long_name[79] = 0;
    TD_CHECK(td_gguf_add_tensor(w, long_name, 0, 2, ne, f32s) == TD_E_ARG);
    int64_t ne1[1] = {2};
    TD_CHECK(td_gguf_add_tensor(w, "dup", 0, 1, ne1, f32s) == TD_OK);
    TD_CHECK(td_gguf_add_tensor(w, "dup", 0, 1, ne1, f32s) == TD_OK);
    TD_CHECK(td_gguf_write(w, tmp_path("dup.gguf"), NULL) == TD_E_ARG && strstr(td_errmsg(), "'dup' added twice"));
    td_gguf_writer_free(w);

    TD_CHECK(td_gguf_writer_create(&w) == TD_OK);
    TD_CHECK(td_gguf_add_tensor_fn(w, "bad", 8, 2, q8_ne, fill_fails, NULL) == TD_OK);
    const char *path = tmp_path("fail.gguf");
    TD_CHECK(td_gguf_write(w, path, NULL) == TD_E_IO && strstr(td_errmsg(), "'bad'") &&
             strstr(td_errmsg(), "source went away"));
    TD_CHECK(access(path, F_OK) != 0 && count_files(".tmp.") == 0); /* nothing left behind */
    TD_CHECK(td_gguf_write(w, "/nonexistent-dir/x.gguf", NULL) == TD_E_IO && strstr(td_errmsg(), "nonexistent"));
    td_gguf_writer_free(w);
}

/* Into an open descriptor (what td_synth_open does with a memfd): the same bytes as the file, nothing
 * created beside the name it is given; and a target that is not a regular file is refused, not renamed
 * over (writing to /dev/null once replaced the device with a file). */
static void test_descriptor_and_special_targets(void)
{
    td_gguf_writer *w = make_writer();
    if (!w) return;
    const char *file = tmp_path("file.gguf"), *via = tmp_path("via-fd.gguf");
    TD_CHECK(td_gguf_write(w, file, NULL) == TD_OK);
    FILE *f = fopen(via, "wb");
    TD_CHECK(f != NULL);
    if (f) {
        td_gguf_write_params p = {.fd = fileno(f)};
        TD_CHECKF(td_gguf_write(w, "(descriptor)", &p) == TD_OK, "%s", td_errmsg());
        fclose(f);
        TD_CHECK(access("(descriptor).tmp", F_OK) != 0 && access("(descriptor)", F_OK) != 0);
        td_gguf *g;
        if (td_gguf_open(via, &g) == TD_OK) {
            check_contents(g);
            td_gguf_close(g);
        } else {
            TD_CHECKF(false, "%s", td_errmsg());
        }
        struct stat a, b;
        TD_CHECK(stat(file, &a) == 0 && stat(via, &b) == 0 && a.st_size == b.st_size);
        td_gguf_write_params two = {.fd = 1, .parts = 2};
        TD_CHECK(td_gguf_write(w, "x", &two) == TD_E_ARG);
    }
    const char *fifo = tmp_path("fifo");
    TD_CHECK(mkfifo(fifo, 0600) == 0);
    TD_CHECK(td_gguf_write(w, fifo, NULL) == TD_E_ARG && strstr(td_errmsg(), "not a regular file"));
    struct stat st;
    TD_CHECK(stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
    TD_CHECK(td_gguf_write(w, td_test_tmpdir(), NULL) == TD_E_ARG); /* a directory */
    unlink(fifo);
    unlink(file);
    unlink(via);
    td_gguf_writer_free(w);
}

static void test_oom(void)
{
    int refused = 0;
    for (long n = 0; n < 200; n++) {
        td_alloc_fail_after(n);
        td_gguf_writer *w = NULL;
        td_status st = td_gguf_writer_create(&w);
        if (st == TD_OK) st = td_gguf_set_str(w, "a", "b");
        const char *strs[] = {"x", "y"};
        if (st == TD_OK) st = td_gguf_set_str_array(w, "arr", strs, NULL, 2);
        int64_t ne1[1] = {6};
        if (st == TD_OK) st = td_gguf_add_tensor(w, "t", 0, 1, ne1, f32s);
        if (st == TD_OK) st = td_gguf_write(w, tmp_path("oom.gguf"), NULL);
        td_alloc_fail_after(-1);
        td_gguf_writer_free(w);
        if (st == TD_OK) break;
        TD_CHECK(st == TD_E_NOMEM);
        refused++;
    }
    TD_CHECK(refused > 3);
    unlink(tmp_path("oom.gguf"));
}

int main(void)
{
    test_round_trip();
    test_split_and_sparse();
    test_failed_split_keeps_old_set();
    test_signal_removes_temporaries();
    test_copy_fixture();
    test_refusals();
    test_descriptor_and_special_targets();
    test_oom();
    rmdir(td_test_tmpdir());
    return td_test_finish();
}
