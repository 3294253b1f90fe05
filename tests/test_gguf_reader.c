/* The GGUF reader: every metadata type, typed getters, tensor infos and views, split files, and bad
 * input of every kind failing with a message that names the problem (never a crash). Files are built
 * byte by byte here, so that corrupt ones can be made on purpose. */
#include "td_test.h"

#include "td_alloc.h"
#include "td_gguf.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ a byte builder */

typedef td_test_bytes buf;

static void put(buf *b, const void *d, size_t n) { td_test_bytes_put(b, d, n); }
static void put_u8(buf *b, uint8_t v) { put(b, &v, 1); }
static void put_u16(buf *b, uint16_t v) { put(b, &v, 2); }
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_f32(buf *b, float v) { put(b, &v, 4); }
static void put_str(buf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_key(buf *b, const char *k, uint32_t type)
{
    put_str(b, k);
    put_u32(b, type);
}
static void pad_to(buf *b, size_t align)
{
    while (b->n % align) put_u8(b, 0);
}

typedef struct tinfo {
    const char *name;
    int nd;
    uint64_t ne[8];
    uint32_t type;
    uint64_t offset;
} tinfo;

/* Header: magic, version, counts, then the caller appends kvs and tensor infos. */
static void put_header(buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}

static void put_tinfo(buf *b, const tinfo *t)
{
    put_str(b, t->name);
    put_u32(b, (uint32_t)t->nd);
    for (int d = 0; d < t->nd; d++) put_u64(b, t->ne[d]);
    put_u32(b, t->type);
    put_u64(b, t->offset);
}

/* The reference file: 9 kvs of every kind, 3 tensors (F32 [4], Q8_0 [32 x 2], BF16 [8 x 2 x 2]). */
#define REF_N_KV 9
static size_t ref_kv_end; /* byte offset where the tensor infos start */

static void put_ref_kvs(buf *b)
{
    put_key(b, "general.architecture", 8);
    put_str(b, "deepseek2");
    put_key(b, "general.alignment", 4);
    put_u32(b, 32);
    put_key(b, "t.u16", 2);
    put_u16(b, 65535);
    put_key(b, "t.i8", 1);
    put_u8(b, (uint8_t)-5);
    put_key(b, "t.f32", 6);
    put_f32(b, 0.25f);
    put_key(b, "t.bool", 7);
    put_u8(b, 1);
    put_key(b, "t.strs", 9); /* array of 3 strings */
    put_u32(b, 8);
    put_u64(b, 3);
    put_str(b, "a");
    put_str(b, "");
    put_str(b, "hello");
    put_key(b, "t.nested", 9); /* array of 2 arrays: [[1, 2, 3], ["x", "yz"]] */
    put_u32(b, 9);
    put_u64(b, 2);
    put_u32(b, 5);
    put_u64(b, 3);
    put_u32(b, 1);
    put_u32(b, 2);
    put_u32(b, (uint32_t)-3);
    put_u32(b, 8);
    put_u64(b, 2);
    put_str(b, "x");
    put_str(b, "yz");
    put_key(b, "t.u64", 10);
    put_u64(b, 1ull << 40);
}

static const tinfo ref_tensors[3] = {
    {"norm.weight", 1, {4}, 0, 0},
    {"blk.0.q8", 2, {32, 2}, 8, 32},     /* 2 blocks of 34 bytes = 68 */
    {"blk.0.bf16", 3, {8, 2, 2}, 30, 128}, /* 64 bytes */
};

static buf make_ref(void)
{
    buf b = {0};
    put_header(&b, 3, 3, REF_N_KV);
    put_ref_kvs(&b);
    ref_kv_end = b.n;
    for (int i = 0; i < 3; i++) put_tinfo(&b, &ref_tensors[i]);
    pad_to(&b, 32);
    for (int i = 0; i < 192; i++) put_u8(&b, (uint8_t)i);
    return b;
}

/* ------------------------------------------------------------------ checks */

static td_status open_buf(const buf *b, td_gguf **g) { return td_gguf_open_memory(b->p, b->n, "test.gguf", g); }

/* Expects failure with `status` and a message containing `needle`. */
static void expect_fail(const buf *b, td_status status, const char *needle, const char *what)
{
    td_gguf *g = NULL;
    td_err_clear();
    td_status st = open_buf(b, &g);
    TD_CHECKF(st == status, "%s: status %s, expected %s (%s)", what, td_status_name(st), td_status_name(status),
              td_errmsg());
    TD_CHECKF(strstr(td_errmsg(), needle) != NULL, "%s: message '%s' lacks '%s'", what, td_errmsg(), needle);
    TD_CHECKF(strstr(td_errmsg(), "test.gguf") != NULL, "%s: message '%s' does not name the file", what,
              td_errmsg());
    TD_CHECK(g == NULL);
    td_gguf_close(g);
}

static void test_reference_file(void)
{
    buf b = make_ref();
    td_gguf *g;
    if (!TD_CHECK(open_buf(&b, &g) == TD_OK)) {
        fprintf(stderr, "%s\n", td_errmsg());
        free(b.p);
        return;
    }
    TD_CHECK(td_gguf_version(g) == 3 && td_gguf_alignment(g) == 32 && td_gguf_file_count(g) == 1);
    TD_CHECK(td_gguf_kv_count(g) == REF_N_KV);
    char s[32];
    TD_CHECK(td_gguf_get_str_copy(g, "general.architecture", s, sizeof s) == TD_OK && strcmp(s, "deepseek2") == 0);
    TD_CHECK(td_gguf_get_str_copy(g, "general.architecture", s, 5) == TD_E_FORMAT);
    int64_t i;
    uint64_t u;
    double f;
    bool bl;
    TD_CHECK(td_gguf_get_int(g, "t.u16", &i) == TD_OK && i == 65535);
    TD_CHECK(td_gguf_get_int(g, "t.i8", &i) == TD_OK && i == -5);
    TD_CHECK(td_gguf_get_uint(g, "t.i8", &u) == TD_E_FORMAT);
    TD_CHECK(td_gguf_get_uint(g, "t.u64", &u) == TD_OK && u == 1ull << 40);
    TD_CHECK(td_gguf_get_float(g, "t.f32", &f) == TD_OK && f == 0.25);
    TD_CHECK(td_gguf_get_bool(g, "t.bool", &bl) == TD_OK && bl);
    TD_CHECK(td_gguf_get_bool(g, "t.f32", &bl) == TD_E_FORMAT && strstr(td_errmsg(), "'t.f32'"));
    TD_CHECK(td_gguf_get_int(g, "t.bool", &i) == TD_E_FORMAT);
    TD_CHECK(td_gguf_get_int(g, "no.such.key", &i) == TD_E_NOT_FOUND && strstr(td_errmsg(), "no.such.key"));
    td_gguf_value arr, sub;
    const char *str;
    size_t len;
    TD_CHECK(td_gguf_get_array(g, "t.strs", &arr) == TD_OK && arr.len == 3 && arr.elem_type == TD_GGUF_STRING);
    TD_CHECK(td_gguf_array_str(&arr, 2, &str, &len) == TD_OK && len == 5 && memcmp(str, "hello", 5) == 0);
    TD_CHECK(td_gguf_array_str(&arr, 1, &str, &len) == TD_OK && len == 0);
    TD_CHECK(td_gguf_array_str(&arr, 3, &str, &len) == TD_E_ARG);
    TD_CHECK(td_gguf_array_int(&arr, 0, &i) == TD_E_FORMAT);
    TD_CHECK(td_gguf_get_array(g, "t.nested", &arr) == TD_OK && arr.len == 2 && arr.elem_type == TD_GGUF_ARRAY);
    TD_CHECK(td_gguf_array_elem(&arr, 0, &sub) == TD_OK && sub.len == 3 && sub.elem_type == TD_GGUF_I32);
    TD_CHECK(td_gguf_array_int(&sub, 2, &i) == TD_OK && i == -3);
    TD_CHECK(td_gguf_array_float(&sub, 1, &f) == TD_OK && f == 2.0);
    TD_CHECK(td_gguf_array_elem(&arr, 1, &sub) == TD_OK && sub.len == 2 && sub.elem_type == TD_GGUF_STRING);
    TD_CHECK(td_gguf_array_str(&sub, 1, &str, &len) == TD_OK && len == 2 && memcmp(str, "yz", 2) == 0);

    TD_CHECK(td_gguf_tensor_count(g) == 3);
    const td_gguf_tensor *t = td_gguf_find_tensor(g, "blk.0.bf16");
    TD_CHECK(t && t->n_dims == 3 && t->ne[0] == 8 && t->ne[2] == 2 && t->nbytes == 64);
    TD_CHECK(td_gguf_find_tensor(g, "nope") == NULL);
    td_tensor v;
    TD_CHECK(t && td_gguf_tensor_view(g, t, "renamed", &v) == TD_OK && v.type == TD_TYPE_BF16 && v.ndim == 3 &&
             v.shape[0] == 2 && v.shape[1] == 2 && v.shape[2] == 8 && strcmp(v.name, "renamed") == 0);
    TD_CHECK(t && (const uint8_t *)v.data == b.p + td_gguf_data_offset(g, 0) + 128 && v.data == t->data);
    t = td_gguf_find_tensor(g, "blk.0.q8");
    TD_CHECK(t && t->nbytes == 68 && td_gguf_tensor_view(g, t, NULL, &v) == TD_OK && v.type == TD_TYPE_Q8_0);
    td_gguf_close(g);
    free(b.p);
}

/* Every prefix of a valid file is refused cleanly (no crash, no read past the end: ASan watches). */
static void test_truncation(void)
{
    buf b = make_ref();
    size_t data_start = 0;
    {
        td_gguf *g;
        if (open_buf(&b, &g) == TD_OK) {
            data_start = td_gguf_data_offset(g, 0);
            td_gguf_close(g);
        }
    }
    int refused = 0, total = 0;
    for (size_t n = 0; n < b.n; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* an exact-size copy, so ASan sees any overread */
        memcpy(copy, b.p, n);
        td_gguf *g = NULL;
        td_status st = td_gguf_open_memory(copy, n, "cut.gguf", &g);
        total++;
        if (st != TD_OK) refused++;
        else td_gguf_close(g);
        /* inside the header everything fails; in the data section the last tensor no longer fits */
        if (n < data_start + 192) TD_CHECKF(st == TD_E_FORMAT, "prefix of %zu bytes: %s", n, td_status_name(st));
        free(copy);
    }
    TD_CHECK(refused == total);
    free(b.p);
}

static void test_bad_headers(void)
{
    buf b = {0};
    put(&b, "GGML", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, 0);
    expect_fail(&b, TD_E_FORMAT, "not a GGUF file", "bad magic");
    b.n = 0;
    put_header(&b, 1, 0, 0);
    expect_fail(&b, TD_E_UNSUPPORTED, "version 1", "version 1");
    b.n = 0;
    put_header(&b, 0x03000000u, 0, 0);
    expect_fail(&b, TD_E_UNSUPPORTED, "big-endian", "big-endian");
    b.n = 0;
    put_header(&b, 4, 0, 0);
    expect_fail(&b, TD_E_UNSUPPORTED, "version 4", "version 4");
    b.n = 0;
    put_header(&b, 2, 0, 0); /* version 2 is read like 3 */
    td_gguf *g;
    TD_CHECK(open_buf(&b, &g) == TD_OK);
    td_gguf_close(g);
    b.n = 0;
    put_header(&b, 3, 0, 1ull << 60);
    expect_fail(&b, TD_E_FORMAT, "metadata entries", "absurd kv count");
    b.n = 0;
    put_header(&b, 3, UINT64_MAX, 0);
    expect_fail(&b, TD_E_FORMAT, "tensors, more than", "absurd tensor count");
    free(b.p);
}

static void test_bad_metadata(void)
{
    buf b = {0};
    /* a key of absurd length */
    put_header(&b, 3, 0, 1);
    put_u64(&b, 1ull << 62);
    put_u64(&b, 0);
    expect_fail(&b, TD_E_FORMAT, "string of", "huge key length");
    b.n = 0;
    put_header(&b, 3, 0, 1);
    put_u64(&b, 0);
    put_u32(&b, 4);
    put_u32(&b, 0);
    expect_fail(&b, TD_E_FORMAT, "empty name", "empty key");
    b.n = 0;
    put_header(&b, 3, 0, 1);
    put_key(&b, "k", 13);
    put_u64(&b, 0);
    expect_fail(&b, TD_E_FORMAT, "unknown value type 13", "bad value type");
    b.n = 0;
    put_header(&b, 3, 0, 1);
    put_key(&b, "k", 7);
    put_u8(&b, 2);
    put_u64(&b, 0);
    expect_fail(&b, TD_E_FORMAT, "bool of value 2", "bool 2");
    b.n = 0;
    put_header(&b, 3, 0, 1);
    put_key(&b, "k", 9);
    put_u32(&b, 4);
    put_u64(&b, 1ull << 61);
    put_u64(&b, 0);
    expect_fail(&b, TD_E_FORMAT, "cannot fit", "huge array");
    b.n = 0;
    put_header(&b, 3, 0, 1);
    put_key(&b, "k", 9);
    put_u32(&b, 99);
    put_u64(&b, 1);
    expect_fail(&b, TD_E_FORMAT, "array of unknown value type 99", "array of bad type");
    b.n = 0;
    put_header(&b, 3, 0, 1);
    put_key(&b, "deep", 9);
    for (int d = 0; d < 12; d++) {
        put_u32(&b, 9);
        put_u64(&b, 1);
    }
    put_u32(&b, 4);
    put_u64(&b, 0);
    expect_fail(&b, TD_E_FORMAT, "nested more than", "deep nesting");
    b.n = 0;
    put_header(&b, 3, 0, 2);
    put_key(&b, "same", 4);
    put_u32(&b, 1);
    put_key(&b, "same", 4);
    put_u32(&b, 2);
    expect_fail(&b, TD_E_FORMAT, "'same' appears twice", "duplicate key");
    b.n = 0;
    put_header(&b, 3, 0, 1);
    put_key(&b, "general.alignment", 4);
    put_u32(&b, 48);
    expect_fail(&b, TD_E_FORMAT, "not a power of two", "alignment 48");
    b.n = 0;
    put_header(&b, 3, 0, 1);
    put_key(&b, "general.alignment", 8);
    put_str(&b, "32");
    expect_fail(&b, TD_E_FORMAT, "general.alignment", "alignment string");
    free(b.p);
}

/* The reference kvs, then one tensor info given by the caller, then a data section of `data` bytes. */
static buf one_tensor(const tinfo *t, size_t data)
{
    buf b = {0};
    put_header(&b, 3, 1, REF_N_KV);
    put_ref_kvs(&b);
    put_tinfo(&b, t);
    pad_to(&b, 32);
    for (size_t i = 0; i < data; i++) put_u8(&b, 0);
    return b;
}

static void expect_tensor_fail(const tinfo *t, size_t data, td_status st, const char *needle, const char *what)
{
    buf b = one_tensor(t, data);
    expect_fail(&b, st, needle, what);
    free(b.p);
}

static void test_bad_tensors(void)
{
    tinfo t = {"w", 2, {32, 2}, 8, 0};
    buf ok = one_tensor(&t, 68);
    td_gguf *g;
    TD_CHECK(open_buf(&ok, &g) == TD_OK);
    td_gguf_close(g);
    free(ok.p);
    expect_tensor_fail(&t, 67, TD_E_FORMAT, "run past the end", "one byte short");
    t.nd = 0;
    expect_tensor_fail(&t, 68, TD_E_FORMAT, "0 dimensions", "0 dims");
    t.nd = 5;
    expect_tensor_fail(&t, 68, TD_E_FORMAT, "5 dimensions", "5 dims");
    t = (tinfo){"w", 2, {1ull << 40, 1ull << 40}, 0, 0};
    expect_tensor_fail(&t, 68, TD_E_FORMAT, "overflow", "ne overflow");
    t = (tinfo){"w", 2, {48, 2}, 8, 0};
    expect_tensor_fail(&t, 200, TD_E_FORMAT, "not whole Q8_0 blocks", "row not whole blocks");
    t = (tinfo){"w", 2, {32, 2}, 8, 16};
    expect_tensor_fail(&t, 200, TD_E_FORMAT, "not a multiple of the alignment", "misaligned");
    t = (tinfo){"w", 2, {32, 2}, 8, 1ull << 62};
    expect_tensor_fail(&t, 200, TD_E_FORMAT, "run past the end", "offset past EOF");
    t = (tinfo){"w", 2, {32, 2}, 5000, 0};
    expect_tensor_fail(&t, 200, TD_E_FORMAT, "type id 5000", "absurd type id");
    t = (tinfo){"", 2, {32, 2}, 8, 0};
    expect_tensor_fail(&t, 200, TD_E_FORMAT, "empty name", "empty tensor name");
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    t = (tinfo){longname, 2, {32, 2}, 8, 0};
    expect_tensor_fail(&t, 200, TD_E_FORMAT, "the limit is 255", "long tensor name");

    /* two tensors: duplicate names, overlapping bytes */
    buf b = {0};
    tinfo a = {"x", 1, {32}, 8, 0}, c = {"x", 1, {32}, 8, 64};
    put_header(&b, 3, 2, 0);
    put_tinfo(&b, &a);
    put_tinfo(&b, &c);
    pad_to(&b, 32);
    for (int i = 0; i < 128; i++) put_u8(&b, 0);
    expect_fail(&b, TD_E_FORMAT, "'x' appears twice", "duplicate tensor");
    b.n = 0;
    c = (tinfo){"y", 1, {32}, 8, 32};
    put_header(&b, 3, 2, 0);
    put_tinfo(&b, &a);
    put_tinfo(&b, &c);
    pad_to(&b, 32);
    for (int i = 0; i < 128; i++) put_u8(&b, 0);
    expect_fail(&b, TD_E_FORMAT, "overlap", "overlapping tensors");
    free(b.p);
}

/* Types tandem cannot compute with parse fine but are refused when used, naming tensor and type. */
static void test_unsupported_types(void)
{
    struct {
        uint32_t id;
        uint64_t ne0;
        const char *needle;
    } cases[] = {{17, 256, "IQ2_XS"}, {21, 256, "IQ3_S"}, {29, 256, "IQ1_M"},  {34, 256, "TQ1_0"},
                 {39, 32, "MXFP4"},   {3, 32, "Q4_1"},    {200, 256, "id 200"}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tinfo t = {"blk.7.ffn_down_exps.weight", 2, {cases[k].ne0, 2}, cases[k].id, 0};
        buf b = one_tensor(&t, 1024);
        td_gguf *g;
        td_status st = open_buf(&b, &g);
        TD_CHECKF(st == TD_OK, "type %u: %s", cases[k].id, td_errmsg());
        if (st == TD_OK) {
            td_tensor v;
            td_type tt;
            const td_gguf_tensor *gt = td_gguf_tensor_at(g, 0);
            TD_CHECK(td_gguf_tensor_type(g, gt, &tt) == TD_E_UNSUPPORTED);
            TD_CHECK(td_gguf_tensor_view(g, gt, NULL, &v) == TD_E_UNSUPPORTED);
            TD_CHECKF(strstr(td_errmsg(), cases[k].needle) && strstr(td_errmsg(), "blk.7.ffn_down_exps.weight"),
                      "message: %s", td_errmsg());
            td_gguf_close(g);
        }
        free(b.p);
    }
}

/* ------------------------------------------------------------------ split files */

/* Part p (0-based) of n: split keys, one tensor "t<p>" (name overridable) of 32 F32, and the set identity
 * when set_id is not NULL (llama.cpp's gguf-split writes none). */
static void write_part_id(const char *dir, const char *stem, int p, int n, int64_t split_no, int64_t tensors_total,
                          const char *tname, const char *set_id)
{
    buf b = {0};
    int n_kv = (p == 0 ? 4 : 3) + (set_id != NULL);
    put_header(&b, 3, 1, (uint64_t)n_kv);
    if (p == 0) {
        put_key(&b, "general.architecture", 8);
        put_str(&b, "deepseek2");
    }
    put_key(&b, "split.no", 2);
    put_u16(&b, (uint16_t)split_no);
    put_key(&b, "split.count", 2);
    put_u16(&b, (uint16_t)n);
    put_key(&b, "split.tensors.count", 5);
    put_u32(&b, (uint32_t)tensors_total);
    if (set_id) {
        put_key(&b, TD_GGUF_SPLIT_SET_ID, 8);
        put_str(&b, set_id);
    }
    char name[32];
    snprintf(name, sizeof name, "t%d", p);
    tinfo t = {tname ? tname : name, 1, {32}, 0, 0};
    put_tinfo(&b, &t);
    pad_to(&b, 32);
    for (int i = 0; i < 32; i++) put_f32(&b, (float)(p * 100 + i));
    char path[512];
    snprintf(path, sizeof path, "%s/%s-%05d-of-%05d.gguf", dir, stem, p + 1, n);
    TD_CHECK(td_test_write_file(path, b.p, b.n));
    free(b.p);
}

static void write_part(const char *dir, const char *stem, int p, int n, int64_t split_no, int64_t tensors_total,
                       const char *tname)
{
    write_part_id(dir, stem, p, n, split_no, tensors_total, tname, NULL);
}

/* The parts of a set must agree on split.tensors.count and on the set identity (present in all or none). */
static void test_split_belonging(void)
{
    const char *dir = td_test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/s-00001-of-00003.gguf", dir);
    static const struct {
        const char *id[3];
        int64_t count[3];
        const char *refusal; /* NULL: opens */
    } cases[] = {
        {{"00000000000000aa", "00000000000000aa", "00000000000000aa"}, {3, 3, 3}, NULL},
        {{NULL, NULL, NULL}, {3, 3, 3}, NULL}, /* llama.cpp's gguf-split */
        {{"00000000000000aa", "00000000000000bb", "00000000000000aa"}, {3, 3, 3}, "another set"},
        {{"00000000000000aa", "00000000000000aa", NULL}, {3, 3, 3}, "another set"},
        {{NULL, "00000000000000aa", NULL}, {3, 3, 3}, "another set"},
        {{"00000000000000aa", "00000000000000aa", "00000000000000aa"}, {3, 4, 3}, "split.tensors.count = 4"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        for (int p = 0; p < 3; p++) write_part_id(dir, "s", p, 3, p, cases[k].count[p], NULL, cases[k].id[p]);
        td_gguf *g = NULL;
        td_status st = td_gguf_open(path, &g);
        if (!cases[k].refusal) {
            TD_CHECKF(st == TD_OK && td_gguf_tensor_count(g) == 3, "case %zu: %s", k, td_errmsg());
        } else {
            TD_CHECKF(st == TD_E_FORMAT && !g && strstr(td_errmsg(), cases[k].refusal), "case %zu: %s", k,
                      st == TD_OK ? "opened" : td_errmsg());
        }
        td_gguf_close(g);
    }
    for (int p = 1; p <= 3; p++) {
        snprintf(path, sizeof path, "%s/s-%05d-of-00003.gguf", dir, p);
        remove(path);
    }
}

/* The same checks on parts held in memory (what the fuzz target drives). */
static void test_split_memory(void)
{
    const char *dir = td_test_tmpdir();
    char path[512];
    char *data[3] = {NULL, NULL, NULL};
    uint64_t size[3];
    static const char *const ids[2][3] = {{"00000000000000aa", "00000000000000aa", "00000000000000aa"},
                                          {"00000000000000aa", "00000000000000cc", "00000000000000aa"}};
    for (int k = 0; k < 2; k++) {
        for (int p = 0; p < 3; p++) {
            write_part_id(dir, "mem", p, 3, p, 3, NULL, ids[k][p]);
            snprintf(path, sizeof path, "%s/mem-%05d-of-00003.gguf", dir, p + 1);
            td_free(data[p]);
            TD_CHECK(td_read_text_file(path, 1u << 20, &data[p], &size[p]) == TD_OK);
            remove(path);
            if (!data[p]) return;
        }
        const uint8_t *parts[3] = {(uint8_t *)data[0], (uint8_t *)data[1], (uint8_t *)data[2]};
        td_gguf *g = NULL;
        td_status st = td_gguf_open_memory_parts(parts, size, 3, "mem.gguf", &g);
        if (k == 0) {
            TD_CHECKF(st == TD_OK && td_gguf_file_count(g) == 3 && td_gguf_tensor_count(g) == 3, "%s", td_errmsg());
            td_gguf_close(g);
            const uint8_t *swapped[3] = {parts[1], parts[0], parts[2]};
            uint64_t swapped_size[3] = {size[1], size[0], size[2]};
            TD_CHECK(td_gguf_open_memory_parts(swapped, swapped_size, 3, "mem.gguf", &g) == TD_E_FORMAT &&
                     strstr(td_errmsg(), "split.no"));
            /* one part of three, alone */
            TD_CHECK(td_gguf_open_memory_parts(parts + 1, size + 1, 1, "mem.gguf", &g) == TD_E_FORMAT && !g);
            TD_CHECK(td_gguf_open_memory(parts[1], size[1], "mem.gguf", &g) == TD_OK); /* a single image */
            td_gguf_close(g);
        } else {
            TD_CHECK(st == TD_E_FORMAT && !g && strstr(td_errmsg(), "another set"));
        }
    }
    for (int p = 0; p < 3; p++) td_free(data[p]);
}

static void test_split(void)
{
    const char *dir = td_test_tmpdir();
    char path[512];
    for (int p = 0; p < 3; p++) write_part(dir, "m", p, 3, p, 3, NULL);
    for (int open_as = 1; open_as <= 3; open_as++) {
        snprintf(path, sizeof path, "%s/m-%05d-of-00003.gguf", dir, open_as);
        td_gguf *g;
        td_status st = td_gguf_open(path, &g);
        TD_CHECKF(st == TD_OK, "opening part %d: %s", open_as, td_errmsg());
        if (st != TD_OK) continue;
        TD_CHECK(td_gguf_file_count(g) == 3 && td_gguf_tensor_count(g) == 3);
        TD_CHECK(strstr(td_gguf_file_path(g, 0), "m-00001-of-00003.gguf") != NULL);
        char arch[16];
        TD_CHECK(td_gguf_get_str_copy(g, "general.architecture", arch, sizeof arch) == TD_OK);
        const td_gguf_tensor *t = td_gguf_find_tensor(g, "t2");
        float f;
        TD_CHECK(t && t->file == 2);
        if (t) {
            memcpy(&f, t->data + 4, 4);
            TD_CHECK(f == 201.0f);
        }
        /* the mappings move into a directory; views then carry the directory's file index */
        td_tensor_dir *tdir;
        int first = -1;
        TD_CHECK(td_tensor_dir_create(&tdir) == TD_OK && td_gguf_give_files(g, tdir, &first) == TD_OK);
        TD_CHECK(first == 0 && td_tensor_dir_file_count(tdir) == 3);
        td_tensor v;
        TD_CHECK(t && td_gguf_tensor_view(g, t, NULL, &v) == TD_OK && v.file == 2);
        td_gguf_close(g);
        td_tensor_dir_free(tdir);
    }
    /* a missing part */
    snprintf(path, sizeof path, "%s/m-00002-of-00003.gguf", dir);
    remove(path);
    snprintf(path, sizeof path, "%s/m-00001-of-00003.gguf", dir);
    td_gguf *g = NULL;
    TD_CHECK(td_gguf_open(path, &g) == TD_E_NOT_FOUND && strstr(td_errmsg(), "part 2 of 3") && !g);
    /* a part whose split.no does not match its name */
    write_part(dir, "m", 1, 3, 2, 3, NULL);
    TD_CHECK(td_gguf_open(path, &g) == TD_E_FORMAT && strstr(td_errmsg(), "split.no") && !g);
    /* a wrong total */
    for (int p = 0; p < 3; p++) write_part(dir, "m", p, 3, p, 4, NULL);
    TD_CHECK(td_gguf_open(path, &g) == TD_E_FORMAT && strstr(td_errmsg(), "split.tensors.count") && !g);
    /* the same tensor in two parts */
    for (int p = 0; p < 3; p++) write_part(dir, "m", p, 3, p, 3, p == 2 ? "t0" : NULL);
    TD_CHECK(td_gguf_open(path, &g) == TD_E_FORMAT && strstr(td_errmsg(), "'t0' appears twice") && !g);
    /* a renamed part */
    write_part(dir, "m", 0, 3, 0, 3, NULL);
    snprintf(path, sizeof path, "%s/m-00001-of-00003.gguf", dir);
    char renamed[600];
    snprintf(renamed, sizeof renamed, "%s/renamed.gguf", dir);
    TD_CHECK(rename(path, renamed) == 0);
    TD_CHECK(td_gguf_open(renamed, &g) == TD_E_FORMAT && strstr(td_errmsg(), "-00001-of-00003.gguf") && !g);
    for (int p = 1; p < 3; p++) {
        snprintf(path, sizeof path, "%s/m-%05d-of-00003.gguf", dir, p + 1);
        remove(path);
    }
    remove(renamed);
}

/* Out of memory anywhere while opening fails cleanly (LeakSanitizer checks nothing is left behind). */
static void test_oom(void)
{
    buf b = make_ref();
    int failures = 0;
    for (long n = 0; n < 64; n++) {
        td_alloc_fail_after(n);
        td_gguf *g = NULL;
        td_status st = open_buf(&b, &g);
        td_alloc_fail_after(-1);
        if (st == TD_OK) {
            td_gguf_close(g);
            break;
        }
        failures++;
        TD_CHECK(st == TD_E_NOMEM && g == NULL);
    }
    TD_CHECK(failures > 0);
    free(b.p);
}

int main(void)
{
    test_reference_file();
    test_truncation();
    test_bad_headers();
    test_bad_metadata();
    test_bad_tensors();
    test_unsupported_types();
    test_split();
    test_split_belonging();
    test_split_memory();
    test_oom();
    rmdir(td_test_tmpdir());
    return td_test_finish();
}
