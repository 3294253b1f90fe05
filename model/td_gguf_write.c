/* The GGUF writer: metadata serialized as added, tensors laid out at aligned offsets, one file or the
 * parts of a split model, each written under a temporary name and renamed when all are complete. */
#include "td_gguf_write.h"

#include "td_gguf_write_impl.h"

#include "td_alloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TD_GGUF_WRITE_CHUNK (32u << 20) /* bytes produced per fill call, at most (one row may exceed it) */
#define TD_GGUF_LLAMA_MAX_NAME 63       /* llama.cpp's limit on tensor names */

typedef struct td_wbuf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} td_wbuf;

static void td_wb_put(td_wbuf *b, const void *d, size_t n)
{
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 256;
        uint8_t *p = td_realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void td_wb_u32(td_wbuf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    td_wb_put(b, x, 4);
}

static void td_wb_u64(td_wbuf *b, uint64_t v)
{
    td_wb_u32(b, (uint32_t)v);
    td_wb_u32(b, (uint32_t)(v >> 32));
}

static void td_wb_str(td_wbuf *b, const char *s, size_t n)
{
    td_wb_u64(b, n);
    td_wb_put(b, s, n);
}

typedef struct td_wkv {
    char *key;
    td_gguf_vtype type;
    td_wbuf value; /* the serialized value, without key and type */
} td_wkv;

typedef struct td_wtensor {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[TD_GGUF_MAX_DIMS];
    const void *data;
    td_gguf_fill_fn fill;
    void *ctx;
    uint64_t nbytes, row_bytes;
    int64_t rows;
    uint64_t offset; /* inside its part's data section */
    int part;
} td_wtensor;

struct td_gguf_writer {
    td_wkv *kvs;
    size_t n_kv, cap_kv;
    td_wtensor *t;
    size_t n_t, cap_t;
};

td_status td_gguf_writer_create(td_gguf_writer **out)
{
    *out = td_calloc(1, sizeof **out);
    return *out ? TD_OK : td_fail(TD_E_NOMEM, "out of memory creating a GGUF writer");
}

void td_gguf_writer_free(td_gguf_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        td_free(w->kvs[i].key);
        td_free(w->kvs[i].value.p);
    }
    td_free(w->kvs);
    for (size_t i = 0; i < w->n_t; i++) td_free(w->t[i].name);
    td_free(w->t);
    td_free(w);
}

/* ------------------------------------------------------------------ metadata */

bool td_gguf_writer_has_key(const td_gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kvs[i].key, key) == 0) return true;
    return false;
}

/* A new entry whose value the caller serializes into the returned buffer. */
static td_status td_kv_new(td_gguf_writer *w, const char *key, td_gguf_vtype type, td_wbuf **value)
{
    size_t len = strlen(key);
    if (len == 0 || len > TD_GGUF_MAX_KEY) return td_fail(TD_E_ARG, "GGUF writer: bad metadata key '%.64s'", key);
    if (td_gguf_writer_has_key(w, key)) return td_fail(TD_E_ARG, "GGUF writer: metadata key '%s' set twice", key);
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        td_wkv *k = td_realloc(w->kvs, cap * sizeof *k);
        if (!k) return td_fail(TD_E_NOMEM, "out of memory");
        w->kvs = k;
        w->cap_kv = cap;
    }
    td_wkv *kv = &w->kvs[w->n_kv];
    memset(kv, 0, sizeof *kv);
    kv->key = td_strdup(key);
    if (!kv->key) return td_fail(TD_E_NOMEM, "out of memory");
    kv->type = type;
    w->n_kv++;
    *value = &kv->value;
    return TD_OK;
}

static td_status td_kv_done(td_wbuf *b)
{
    return b->oom ? td_fail(TD_E_NOMEM, "out of memory serializing GGUF metadata") : TD_OK;
}

static td_status td_set_scalar(td_gguf_writer *w, const char *key, td_gguf_vtype t, uint64_t bits)
{
    td_wbuf *b;
    TD_TRY(td_kv_new(w, key, t, &b));
    int sz = td_gguf_vtype_size(t);
    for (int i = 0; i < sz; i++) {
        uint8_t byte = (uint8_t)(bits >> (8 * i));
        td_wb_put(b, &byte, 1);
    }
    return td_kv_done(b);
}

td_status td_gguf_set_u32(td_gguf_writer *w, const char *key, uint32_t v) { return td_set_scalar(w, key, TD_GGUF_U32, v); }
td_status td_gguf_set_i32(td_gguf_writer *w, const char *key, int32_t v)
{
    return td_set_scalar(w, key, TD_GGUF_I32, (uint32_t)v);
}
td_status td_gguf_set_u64(td_gguf_writer *w, const char *key, uint64_t v) { return td_set_scalar(w, key, TD_GGUF_U64, v); }
td_status td_gguf_set_bool(td_gguf_writer *w, const char *key, bool v) { return td_set_scalar(w, key, TD_GGUF_BOOL, v); }

td_status td_gguf_set_f32(td_gguf_writer *w, const char *key, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    return td_set_scalar(w, key, TD_GGUF_F32, u);
}

td_status td_gguf_set_str(td_gguf_writer *w, const char *key, const char *s)
{
    td_wbuf *b;
    TD_TRY(td_kv_new(w, key, TD_GGUF_STRING, &b));
    td_wb_str(b, s, strlen(s));
    return td_kv_done(b);
}

td_status td_gguf_set_str_array(td_gguf_writer *w, const char *key, const char *const *items, const size_t *lens,
                                size_t n)
{
    td_wbuf *b;
    TD_TRY(td_kv_new(w, key, TD_GGUF_ARRAY, &b));
    td_wb_u32(b, TD_GGUF_STRING);
    td_wb_u64(b, n);
    for (size_t i = 0; i < n; i++) td_wb_str(b, items[i], lens ? lens[i] : strlen(items[i]));
    return td_kv_done(b);
}

td_status td_gguf_set_i32_array(td_gguf_writer *w, const char *key, const int32_t *v, size_t n)
{
    td_wbuf *b;
    TD_TRY(td_kv_new(w, key, TD_GGUF_ARRAY, &b));
    td_wb_u32(b, TD_GGUF_I32);
    td_wb_u64(b, n);
    for (size_t i = 0; i < n; i++) td_wb_u32(b, (uint32_t)v[i]);
    return td_kv_done(b);
}

td_status td_gguf_set_value(td_gguf_writer *w, const char *key, const td_gguf_value *v)
{
    td_wbuf *b;
    TD_TRY(td_kv_new(w, key, v->type, &b));
    if (v->type == TD_GGUF_STRING) {
        td_wb_str(b, (const char *)v->data, (size_t)v->len);
    } else if (v->type == TD_GGUF_ARRAY) { /* the payload is the serialized elements, nested ones included */
        td_wb_u32(b, v->elem_type);
        td_wb_u64(b, v->len);
        td_wb_put(b, v->data, (size_t)v->size);
    } else {
        td_wb_put(b, v->data, (size_t)v->size);
    }
    return td_kv_done(b);
}

/* ------------------------------------------------------------------ tensors */

static td_status td_tensor_new(td_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                               td_wtensor **out)
{
    const td_ggml_type_info *ti = td_ggml_type(type);
    size_t len = strlen(name);
    if (len == 0 || len > TD_GGUF_LLAMA_MAX_NAME)
        return td_fail(TD_E_ARG, "GGUF writer: tensor name '%.80s' must have 1 to %d bytes", name,
                       TD_GGUF_LLAMA_MAX_NAME);
    if (!ti) return td_fail(TD_E_ARG, "GGUF writer: tensor '%s': unknown ggml type %u", name, type);
    if (n_dims < 1 || n_dims > TD_GGUF_MAX_DIMS)
        return td_fail(TD_E_ARG, "GGUF writer: tensor '%s' has %d dimensions", name, n_dims);
    uint64_t rows = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 1 || ne[d] > (1ll << 40)) return td_fail(TD_E_ARG, "GGUF writer: tensor '%s': bad shape", name);
        if (d > 0) rows *= (uint64_t)ne[d];
    }
    if (ne[0] % ti->block_elems)
        return td_fail(TD_E_ARG, "GGUF writer: tensor '%s': rows of %lld are not whole %s blocks of %d", name,
                       (long long)ne[0], ti->name, ti->block_elems);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 256;
        td_wtensor *t = td_realloc(w->t, cap * sizeof *t);
        if (!t) return td_fail(TD_E_NOMEM, "out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    td_wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = td_strdup(name);
    if (!t->name) return td_fail(TD_E_NOMEM, "out of memory");
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < TD_GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->row_bytes = (uint64_t)(ne[0] / ti->block_elems) * (uint64_t)ti->block_bytes;
    t->rows = (int64_t)rows;
    t->nbytes = t->row_bytes * rows;
    w->n_t++;
    *out = t;
    return TD_OK;
}

td_status td_gguf_add_tensor(td_gguf_writer *w, const char *name, uint32_t ggml_type, int n_dims, const int64_t *ne,
                             const void *data)
{
    td_wtensor *t;
    TD_TRY(td_tensor_new(w, name, ggml_type, n_dims, ne, &t));
    t->data = data;
    return TD_OK;
}

td_status td_gguf_add_tensor_fn(td_gguf_writer *w, const char *name, uint32_t ggml_type, int n_dims,
                                const int64_t *ne, td_gguf_fill_fn fill, void *ctx)
{
    td_wtensor *t;
    TD_TRY(td_tensor_new(w, name, ggml_type, n_dims, ne, &t));
    t->fill = fill;
    t->ctx = ctx;
    return TD_OK;
}

size_t td_gguf_writer_tensor_count(const td_gguf_writer *w) { return w->n_t; }

uint64_t td_gguf_writer_data_bytes(const td_gguf_writer *w)
{
    uint64_t n = 0;
    for (size_t i = 0; i < w->n_t; i++) n += w->t[i].nbytes;
    return n;
}

/* ------------------------------------------------------------------ layout */

static int td_cmp_name_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static td_status td_check_unique(const td_gguf_writer *w)
{
    const char **names = td_malloc((w->n_t ? w->n_t : 1) * sizeof *names);
    if (!names) return td_fail(TD_E_NOMEM, "out of memory");
    for (size_t i = 0; i < w->n_t; i++) names[i] = w->t[i].name;
    qsort(names, w->n_t, sizeof *names, td_cmp_name_ptr);
    td_status st = TD_OK;
    for (size_t i = 1; i < w->n_t && st == TD_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            st = td_fail(TD_E_ARG, "GGUF writer: tensor '%s' added twice", names[i]);
    td_free(names);
    return st;
}

static uint64_t td_align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Spreads the tensors over the parts in order, by bytes, every part getting at least one. */
static void td_assign_parts(td_gguf_writer *w, int parts, uint64_t align)
{
    uint64_t total = td_gguf_writer_data_bytes(w), target = (total + (uint64_t)parts - 1) / (uint64_t)parts;
    int part = 0;
    size_t count = 0;
    uint64_t in_part = 0, offset = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        td_wtensor *t = &w->t[i];
        bool last = part == parts - 1;
        bool must = !last && count > 0 && w->n_t - i <= (size_t)(parts - 1 - part); /* one for each part left */
        bool full = !last && count > 0 && in_part + t->nbytes > target;
        if (must || full) {
            part++;
            count = 0;
            in_part = offset = 0;
        }
        t->part = part;
        t->offset = offset;
        offset = td_align_up(offset + t->nbytes, align);
        in_part += t->nbytes;
        count++;
    }
}

static void td_put_kv(td_wbuf *b, const td_wkv *kv)
{
    td_wb_str(b, kv->key, strlen(kv->key));
    td_wb_u32(b, kv->type);
    td_wb_put(b, kv->value.p, kv->value.n);
}

static void td_put_u16_kv(td_wbuf *b, const char *key, uint16_t v)
{
    td_wb_str(b, key, strlen(key));
    td_wb_u32(b, TD_GGUF_U16);
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    td_wb_put(b, x, 2);
}

/* FNV-1a, 64 bits: the set identity only has to tell apart sets that were not written together. */
static uint64_t td_fnv(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t td_fnv_u64(uint64_t h, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    return td_fnv(h, x, 8);
}

/* The identity of a split set: a hash of the metadata, the part count and the tensor table (names, types,
 * shapes, parts, offsets). It depends on nothing else, so the same conversion writes the same bytes; two
 * sets that differ in any of these (another type, --keep-mtp, another model) differ in it. */
static void td_split_identity(const td_gguf_writer *w, int parts, uint32_t align, char out[17])
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < w->n_kv; i++) {
        const td_wkv *kv = &w->kvs[i];
        h = td_fnv(h, kv->key, strlen(kv->key) + 1);
        h = td_fnv_u64(h, kv->type);
        h = td_fnv_u64(h, kv->value.n);
        h = td_fnv(h, kv->value.p, kv->value.n);
    }
    h = td_fnv_u64(h, align);
    h = td_fnv_u64(h, (uint64_t)parts);
    for (size_t i = 0; i < w->n_t; i++) {
        const td_wtensor *t = &w->t[i];
        h = td_fnv(h, t->name, strlen(t->name) + 1);
        h = td_fnv_u64(h, t->type);
        for (int d = 0; d < TD_GGUF_MAX_DIMS; d++) h = td_fnv_u64(h, (uint64_t)t->ne[d]);
        h = td_fnv_u64(h, (uint64_t)t->part);
        h = td_fnv_u64(h, t->offset);
    }
    snprintf(out, 17, "%016" PRIx64, h);
}

/* The header of one part, padded to the alignment. `set_id`: the split identity (parts > 1). */
static td_status td_build_header(const td_gguf_writer *w, int part, int parts, uint32_t align, const char *set_id,
                                 td_wbuf *b)
{
    size_t n_t = 0;
    for (size_t i = 0; i < w->n_t; i++) n_t += w->t[i].part == part;
    bool add_align = align != TD_GGUF_DEFAULT_ALIGNMENT && !td_gguf_writer_has_key(w, "general.alignment");
    uint64_t n_kv = (part == 0 ? w->n_kv + add_align : 0) + (parts > 1 ? 4 : 0);
    td_wb_put(b, TD_GGUF_MAGIC, 4);
    td_wb_u32(b, 3);
    td_wb_u64(b, n_t);
    td_wb_u64(b, n_kv);
    if (part == 0) {
        for (size_t i = 0; i < w->n_kv; i++) td_put_kv(b, &w->kvs[i]);
        if (add_align) {
            td_wb_str(b, "general.alignment", 17);
            td_wb_u32(b, TD_GGUF_U32);
            td_wb_u32(b, align);
        }
    }
    if (parts > 1) {
        td_put_u16_kv(b, "split.no", (uint16_t)part);
        td_put_u16_kv(b, "split.count", (uint16_t)parts);
        td_wb_str(b, "split.tensors.count", 19);
        td_wb_u32(b, TD_GGUF_I32);
        td_wb_u32(b, (uint32_t)w->n_t);
        td_wb_str(b, TD_GGUF_SPLIT_SET_ID, strlen(TD_GGUF_SPLIT_SET_ID));
        td_wb_u32(b, TD_GGUF_STRING);
        td_wb_str(b, set_id, strlen(set_id));
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const td_wtensor *t = &w->t[i];
        if (t->part != part) continue;
        td_wb_str(b, t->name, strlen(t->name));
        td_wb_u32(b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) td_wb_u64(b, (uint64_t)t->ne[d]);
        td_wb_u32(b, t->type);
        td_wb_u64(b, t->offset);
    }
    static const uint8_t zeros[64];
    while (!b->oom && b->n % align) td_wb_put(b, zeros, align - b->n % align > 64 ? 64 : align - b->n % align);
    return b->oom ? td_fail(TD_E_NOMEM, "out of memory building a GGUF header") : TD_OK;
}

/* ------------------------------------------------------------------ output */

typedef struct td_out {
    FILE *f;
    const char *path;
    uint64_t written;    /* into this file */
    uint64_t *total;     /* into every file of the write */
    uint64_t fail_after; /* td_gguf_write_params.fail_after_bytes */
} td_out;

static td_status td_out_write(td_out *o, const void *d, size_t n)
{
    if (o->fail_after && *o->total + n > o->fail_after)
        return td_fail(TD_E_IO, "%s: write failed after %" PRIu64 " bytes: injected failure (fail_after_bytes = %" PRIu64
                       ")", o->path, o->written, o->fail_after);
    *o->total += n;
    if (n && fwrite(d, 1, n, o->f) != n)
        return td_fail(TD_E_IO, "%s: write failed after %" PRIu64 " bytes: %s (disk full?)", o->path, o->written,
                       strerror(errno));
    o->written += n;
    return TD_OK;
}

static td_status td_out_zeros(td_out *o, uint64_t n)
{
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n > sizeof zeros ? sizeof zeros : (size_t)n;
        TD_TRY(td_out_write(o, zeros, k));
        n -= k;
    }
    return TD_OK;
}

static td_status td_write_tensor_data(td_out *o, const td_wtensor *t, uint8_t *chunk, size_t chunk_cap)
{
    if (t->data) return td_out_write(o, t->data, (size_t)t->nbytes);
    if (!t->fill) return td_fail(TD_E_ARG, "GGUF writer: tensor '%s' has no data", t->name);
    int64_t per = (int64_t)(chunk_cap / t->row_bytes);
    for (int64_t r = 0; r < t->rows; r += per) {
        int64_t n = t->rows - r < per ? t->rows - r : per;
        td_status st = t->fill(t->ctx, r, n, chunk);
        if (st != TD_OK) {
            td_err_context("writing tensor '%s'", t->name);
            return st;
        }
        TD_TRY(td_out_write(o, chunk, (size_t)((uint64_t)n * t->row_bytes)));
    }
    return TD_OK;
}

/* Part `part` into its temporary file (renamed later, with the others), or into the caller's descriptor. */
static td_status td_write_part(const td_gguf_writer *w, td_tmp_outputs *tmp, const char *path, int part, int parts,
                               uint32_t align, const char *set_id, const td_gguf_write_params *p, uint8_t *chunk,
                               size_t chunk_cap, uint64_t *total)
{
    td_wbuf hdr = {0};
    td_out o = {.path = path, .total = total, .fail_after = p->fail_after_bytes};
    td_status st = td_build_header(w, part, parts, align, set_id, &hdr);
    struct stat existing;
    if (st == TD_OK && !tmp && p->fd > 0) { /* a descriptor: written in place, no temporary file, no rename */
        int fd = dup(p->fd);
        if (fd < 0 || !(o.f = fdopen(fd, "wb"))) {
            st = td_fail(TD_E_IO, "%s: cannot write to descriptor %d: %s", path, p->fd, strerror(errno));
            if (fd >= 0) close(fd);
        }
    } else if (st == TD_OK && stat(path, &existing) == 0 && !S_ISREG(existing.st_mode)) {
        st = td_fail(TD_E_ARG, "%s exists and is not a regular file; the writer renames a new file over it, so "
                     "give the path of a file", path);
    } else if (st == TD_OK) {
        st = td_tmp_output_open(tmp, part, path, &o.f);
    }
    const char *written = tmp ? td_tmp_output_path(tmp, part) : path; /* the file the messages name */
    if (st == TD_OK) st = td_out_write(&o, hdr.p, hdr.n);
    uint64_t data_end = 0;
    for (size_t i = 0; i < w->n_t && st == TD_OK; i++) {
        const td_wtensor *t = &w->t[i];
        if (t->part != part) continue;
        data_end = td_align_up(t->offset + t->nbytes, align);
        if (p->sparse) continue;
        st = td_write_tensor_data(&o, t, chunk, chunk_cap);
        if (st == TD_OK) st = td_out_zeros(&o, data_end - t->offset - t->nbytes);
        if (st == TD_OK && p->progress) /* by tensors: a line that ends when the file does */
            fprintf(stderr, "\rtandem: writing %s: tensor %zu of %zu", path, i + 1, w->n_t);
    }
    if (st == TD_OK && p->sparse && ftruncate(fileno(o.f), (off_t)(hdr.n + data_end)) != 0)
        st = td_fail(TD_E_IO, "%s: cannot extend to %" PRIu64 " bytes: %s", written, (uint64_t)(hdr.n + data_end),
                     strerror(errno));
    if (o.f && fclose(o.f) != 0 && st == TD_OK)
        st = td_fail(TD_E_IO, "%s: close failed: %s (disk full?)", written, strerror(errno));
    td_free(hdr.p);
    if (p->progress && st == TD_OK) fprintf(stderr, "\n");
    return st;
}

void td_gguf_split_path(const char *path, int no, int count, char *out, size_t cap)
{
    size_t n = strlen(path);
    if (n > 5 && strcmp(path + n - 5, ".gguf") == 0) n -= 5;
    snprintf(out, cap, "%.*s-%05d-of-%05d.gguf", (int)n, path, no, count);
}

td_status td_gguf_write(td_gguf_writer *w, const char *path, const td_gguf_write_params *params)
{
    static const td_gguf_write_params defaults = {0};
    const td_gguf_write_params *p = params ? params : &defaults;
    uint32_t align = p->alignment ? p->alignment : TD_GGUF_DEFAULT_ALIGNMENT;
    int parts = p->parts > 1 ? p->parts : 1;
    if (align & (align - 1)) return td_fail(TD_E_ARG, "GGUF writer: alignment %u is not a power of two", align);
    if (p->fd > 0 && parts > 1) return td_fail(TD_E_ARG, "GGUF writer: a descriptor takes one part, not %d", parts);
    if (parts > 99999 || (parts > 1 && (size_t)parts > w->n_t))
        return td_fail(TD_E_ARG, "GGUF writer: cannot split %zu tensors into %d parts", w->n_t, parts);
    if (parts > 1 && td_gguf_writer_has_key(w, TD_GGUF_SPLIT_SET_ID))
        return td_fail(TD_E_ARG, "GGUF writer: '%s' is written by the writer itself", TD_GGUF_SPLIT_SET_ID);
    TD_TRY(td_check_unique(w));
    td_assign_parts(w, parts, align);
    char set_id[17] = "";
    if (parts > 1) td_split_identity(w, parts, align, set_id);
    uint64_t max_row = 0;
    for (size_t i = 0; i < w->n_t; i++)
        if (w->t[i].row_bytes > max_row) max_row = w->t[i].row_bytes;
    size_t cap = max_row > TD_GGUF_WRITE_CHUNK ? (size_t)max_row : TD_GGUF_WRITE_CHUNK;
    uint8_t *chunk = p->sparse ? NULL : td_malloc(cap);
    if (!p->sparse && !chunk) return td_fail(TD_E_NOMEM, "out of memory for a %zu-byte write buffer", cap);
    td_tmp_outputs *tmp = NULL; /* none when writing to a descriptor */
    td_status st = p->fd > 0 ? TD_OK : td_tmp_outputs_create(parts, p->remove_on_signal, &tmp);
    uint64_t total = 0;
    for (int part = 0; part < parts && st == TD_OK; part++) {
        char file[4200];
        if (parts > 1) td_gguf_split_path(path, part + 1, parts, file, sizeof file);
        else snprintf(file, sizeof file, "%s", path);
        st = td_write_part(w, tmp, file, part, parts, align, set_id, p, chunk, cap, &total);
    }
    if (st == TD_OK && tmp) st = td_tmp_outputs_commit(tmp);
    td_tmp_outputs_free(tmp);
    td_free(chunk);
    return st;
}
