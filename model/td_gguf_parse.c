/* The GGUF header parser: one file's metadata and tensor infos, every length and count checked against
 * the bytes that remain before it is trusted. */
#include "td_gguf_impl.h"

#include "td_alloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------ a bounded cursor */

typedef struct td_rd {
    const uint8_t *p;
    uint64_t size, pos;
    const char *path;
    char what[320]; /* what is being read, for messages */
} td_rd;

static uint64_t td_rd_left(const td_rd *r) { return r->size - r->pos; }

static td_status td_rd_bytes(td_rd *r, uint64_t n, const uint8_t **out)
{
    if (n > td_rd_left(r))
        return td_fail(TD_E_FORMAT,
                       "%s: truncated in %s: %" PRIu64 " bytes needed at offset %" PRIu64 " but the file ends at %" PRIu64
                       " (incomplete download, or not a GGUF file?)",
                       r->path, r->what, n, r->pos, r->size);
    *out = r->p + r->pos;
    r->pos += n;
    return TD_OK;
}

static td_status td_rd_u32(td_rd *r, uint32_t *out)
{
    const uint8_t *b = NULL;
    TD_TRY(td_rd_bytes(r, 4, &b));
    *out = td_le32(b);
    return TD_OK;
}

static td_status td_rd_u64(td_rd *r, uint64_t *out)
{
    const uint8_t *b = NULL;
    TD_TRY(td_rd_bytes(r, 8, &b));
    *out = td_le64(b);
    return TD_OK;
}

/* A length-prefixed string of at most max_len bytes. */
static td_status td_rd_string(td_rd *r, uint64_t max_len, const uint8_t **s, uint64_t *len)
{
    TD_TRY(td_rd_u64(r, len));
    if (*len > max_len)
        return td_fail(TD_E_FORMAT, "%s: %s: a string of %" PRIu64 " bytes at offset %" PRIu64 " (the limit is %" PRIu64
                       "; corrupt file?)",
                       r->path, r->what, *len, r->pos - 8, max_len);
    return td_rd_bytes(r, *len, s);
}

/* A name (key or tensor): non-empty, no NUL inside; copied as a C string. */
static td_status td_rd_name(td_rd *r, uint64_t max_len, char **out)
{
    const uint8_t *s = NULL;
    uint64_t len;
    TD_TRY(td_rd_string(r, max_len, &s, &len));
    if (len == 0) return td_fail(TD_E_FORMAT, "%s: %s: empty name at offset %" PRIu64, r->path, r->what, r->pos - 8);
    if (memchr(s, 0, (size_t)len))
        return td_fail(TD_E_FORMAT, "%s: %s: the name at offset %" PRIu64 " contains a NUL byte", r->path, r->what,
                       r->pos - len);
    *out = td_strndup((const char *)s, (size_t)len);
    if (!*out) return td_fail(TD_E_NOMEM, "%s: out of memory", r->path);
    return TD_OK;
}

/* ------------------------------------------------------------------ metadata values */

const char *td_gguf_vtype_name(td_gguf_vtype t)
{
    static const char *const names[TD_GGUF_VTYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
    return (t >= 0 && t < TD_GGUF_VTYPE_COUNT) ? names[t] : "?";
}

int td_gguf_vtype_size(td_gguf_vtype t)
{
    static const int sizes[TD_GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return (t >= 0 && t < TD_GGUF_VTYPE_COUNT) ? sizes[t] : 0;
}

static td_status td_rd_value(td_rd *r, uint32_t type, int depth, bool index, td_gguf_value *v);

static td_status td_rd_array(td_rd *r, int depth, bool index, td_gguf_value *v)
{
    uint32_t et;
    uint64_t n;
    TD_TRY(td_rd_u32(r, &et));
    TD_TRY(td_rd_u64(r, &n));
    if (et >= TD_GGUF_VTYPE_COUNT)
        return td_fail(TD_E_FORMAT, "%s: %s: array of unknown value type %u", r->path, r->what, et);
    if (et == TD_GGUF_ARRAY && depth + 1 >= TD_GGUF_MAX_ARRAY_DEPTH)
        return td_fail(TD_E_FORMAT, "%s: %s: arrays nested more than %d deep", r->path, r->what,
                       TD_GGUF_MAX_ARRAY_DEPTH);
    int esz = td_gguf_vtype_size((td_gguf_vtype)et);
    uint64_t min_elem = esz ? (uint64_t)esz : (et == TD_GGUF_STRING ? 8u : 12u);
    if (n > td_rd_left(r) / min_elem)
        return td_fail(TD_E_FORMAT,
                       "%s: %s: an array of %" PRIu64 " %s values cannot fit in the %" PRIu64
                       " bytes left (truncated or corrupt file)",
                       r->path, r->what, n, td_gguf_vtype_name((td_gguf_vtype)et), td_rd_left(r));
    uint64_t start = r->pos;
    v->elem_type = (td_gguf_vtype)et;
    v->len = n;
    v->data = r->p + start;
    if (esz) {
        const uint8_t *b = NULL;
        TD_TRY(td_rd_bytes(r, n * (uint64_t)esz, &b));
        if (et == TD_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (b[i] > 1)
                    return td_fail(TD_E_FORMAT, "%s: %s: element %" PRIu64 " is a bool of value %u (must be 0 or 1)",
                                   r->path, r->what, i, b[i]);
    } else {
        uint64_t *offs = index ? td_malloc((size_t)n * sizeof *offs) : NULL;
        if (index && !offs) return td_fail(TD_E_NOMEM, "%s: out of memory indexing %s", r->path, r->what);
        for (uint64_t i = 0; i < n; i++) {
            if (offs) offs[i] = r->pos - start;
            td_gguf_value ev;
            td_status st = td_rd_value(r, et, depth + 1, false, &ev);
            if (st != TD_OK) {
                td_free(offs);
                return st;
            }
        }
        v->offsets = offs;
    }
    v->size = r->pos - start;
    return TD_OK;
}

static td_status td_rd_value(td_rd *r, uint32_t type, int depth, bool index, td_gguf_value *v)
{
    memset(v, 0, sizeof *v);
    if (type >= TD_GGUF_VTYPE_COUNT)
        return td_fail(TD_E_FORMAT, "%s: %s: unknown value type %u (corrupt file, or a newer GGUF?)", r->path, r->what,
                       type);
    v->type = (td_gguf_vtype)type;
    int sz = td_gguf_vtype_size(v->type);
    if (sz) {
        TD_TRY(td_rd_bytes(r, (uint64_t)sz, &v->data));
        v->size = (uint64_t)sz;
        if (type == TD_GGUF_BOOL && v->data[0] > 1)
            return td_fail(TD_E_FORMAT, "%s: %s: a bool of value %u (must be 0 or 1)", r->path, r->what, v->data[0]);
        return TD_OK;
    }
    if (type == TD_GGUF_STRING) {
        TD_TRY(td_rd_string(r, UINT64_MAX, &v->data, &v->len));
        v->size = v->len;
        return TD_OK;
    }
    return td_rd_array(r, depth, index, v);
}

/* ------------------------------------------------------------------ header */

static td_status td_parse_preamble(td_rd *r, td_gguf_part *part, uint64_t *n_tensors, uint64_t *n_kv)
{
    snprintf(r->what, sizeof r->what, "the file header");
    const uint8_t *m = NULL;
    TD_TRY(td_rd_bytes(r, 4, &m));
    if (memcmp(m, TD_GGUF_MAGIC, 4) != 0)
        return td_fail(TD_E_FORMAT, "%s: not a GGUF file (it starts with %02x %02x %02x %02x, not 'GGUF')", r->path,
                       m[0], m[1], m[2], m[3]);
    TD_TRY(td_rd_u32(r, &part->version));
    if (part->version == 1)
        return td_fail(TD_E_UNSUPPORTED,
                       "%s: GGUF version 1 (files from before September 2023) is not supported; convert the model again",
                       r->path);
    if ((part->version & 0xffff) == 0 && part->version >> 16)
        return td_fail(TD_E_UNSUPPORTED, "%s: a big-endian GGUF file (version bytes %08x); use a little-endian one",
                       r->path, part->version);
    if (part->version != 2 && part->version != 3)
        return td_fail(TD_E_UNSUPPORTED, "%s: GGUF version %u is not supported (tandem reads versions 2 and 3)",
                       r->path, part->version);
    TD_TRY(td_rd_u64(r, n_tensors));
    TD_TRY(td_rd_u64(r, n_kv));
    /* a key is at least 8 + 1 + 4 + 1 bytes and a tensor info 8 + 1 + 4 + 8 + 4 + 8 */
    if (*n_kv > td_rd_left(r) / 14)
        return td_fail(TD_E_FORMAT, "%s: the header claims %" PRIu64 " metadata entries, more than %" PRIu64
                       " bytes left can hold (truncated or corrupt file)",
                       r->path, *n_kv, td_rd_left(r));
    if (*n_tensors > td_rd_left(r) / 33)
        return td_fail(TD_E_FORMAT, "%s: the header claims %" PRIu64 " tensors, more than %" PRIu64
                       " bytes left can hold (truncated or corrupt file)",
                       r->path, *n_tensors, td_rd_left(r));
    return TD_OK;
}

static int td_cmp_kv_index(const void *a, const void *b, void *ctx)
{
    const td_gguf_kv *kvs = ctx;
    return strcmp(kvs[*(const size_t *)a].key, kvs[*(const size_t *)b].key);
}

static td_status td_parse_kvs(td_rd *r, td_gguf_part *part, uint64_t n_kv)
{
    part->kvs = td_calloc((size_t)n_kv, sizeof *part->kvs);
    part->kv_sorted = td_calloc((size_t)n_kv, sizeof *part->kv_sorted);
    if (!part->kvs || !part->kv_sorted) return td_fail(TD_E_NOMEM, "%s: out of memory", r->path);
    for (uint64_t i = 0; i < n_kv; i++) {
        snprintf(r->what, sizeof r->what, "metadata entry #%" PRIu64, i);
        td_gguf_kv *kv = &part->kvs[i];
        char *key;
        TD_TRY(td_rd_name(r, TD_GGUF_MAX_KEY, &key));
        kv->key = key;
        part->n_kv++;
        snprintf(r->what, sizeof r->what, "metadata key '%.200s'", key);
        uint32_t type;
        TD_TRY(td_rd_u32(r, &type));
        TD_TRY(td_rd_value(r, type, 0, true, &kv->v));
    }
    for (size_t i = 0; i < part->n_kv; i++) part->kv_sorted[i] = i;
    qsort_r(part->kv_sorted, part->n_kv, sizeof *part->kv_sorted, td_cmp_kv_index, part->kvs);
    for (size_t i = 1; i < part->n_kv; i++) {
        const char *a = part->kvs[part->kv_sorted[i - 1]].key, *b = part->kvs[part->kv_sorted[i]].key;
        if (strcmp(a, b) == 0)
            return td_fail(TD_E_FORMAT, "%s: metadata key '%.200s' appears twice (corrupt file)", r->path, a);
    }
    return TD_OK;
}

const td_gguf_kv *td_gguf_part_find_kv(const td_gguf_part *part, const char *key)
{
    size_t lo = 0, hi = part->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const td_gguf_kv *kv = &part->kvs[part->kv_sorted[mid]];
        int c = strcmp(kv->key, key);
        if (c == 0) return kv;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* An optional integer key of this part, range-checked; -1 when absent. */
static td_status td_part_int_key(const td_gguf_part *part, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    *out = -1;
    const td_gguf_kv *kv = td_gguf_part_find_kv(part, key);
    if (!kv) return TD_OK;
    int64_t v;
    if (!td_gguf_value_int(&kv->v, &v) || kv->v.type == TD_GGUF_BOOL || v < lo || v > hi)
        return td_fail(TD_E_FORMAT, "%s: metadata key '%s' must be an integer in %" PRId64 "..%" PRId64 " (it is a %s)",
                       part->path, key, lo, hi, td_gguf_vtype_name(kv->v.type));
    *out = v;
    return TD_OK;
}

static td_status td_parse_layout_keys(td_gguf_part *part)
{
    int64_t align;
    TD_TRY(td_part_int_key(part, "general.alignment", 1, 1 << 30, &align));
    if (align < 0) align = TD_GGUF_DEFAULT_ALIGNMENT;
    if (align & (align - 1))
        return td_fail(TD_E_FORMAT, "%s: general.alignment = %" PRId64 " is not a power of two", part->path, align);
    part->alignment = (uint32_t)align;
    TD_TRY(td_part_int_key(part, "split.no", 0, 65535, &part->split_no));
    TD_TRY(td_part_int_key(part, "split.count", 0, 65535, &part->split_count));
    TD_TRY(td_part_int_key(part, "split.tensors.count", 0, INT32_MAX, &part->split_tensors));
    part->split_set_id = td_gguf_part_find_kv(part, TD_GGUF_SPLIT_SET_ID);
    if (part->split_set_id && part->split_set_id->v.type != TD_GGUF_STRING)
        return td_fail(TD_E_FORMAT, "%s: metadata key '%s' must be a string (it is a %s)", part->path,
                       TD_GGUF_SPLIT_SET_ID, td_gguf_vtype_name(part->split_set_id->v.type));
    return TD_OK;
}

/* ------------------------------------------------------------------ tensor infos */

static td_status td_parse_tensor_shape(td_rd *r, td_gguf_tensor *t)
{
    uint32_t nd;
    TD_TRY(td_rd_u32(r, &nd));
    if (nd < 1 || nd > TD_GGUF_MAX_DIMS)
        return td_fail(TD_E_FORMAT, "%s: %s has %u dimensions (GGUF allows 1 to %d)", r->path, r->what, nd,
                       TD_GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t count = 1;
    for (int d = 0; d < TD_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t ne;
        TD_TRY(td_rd_u64(r, &ne));
        if (ne > (uint64_t)INT64_MAX || (ne && count > (uint64_t)INT64_MAX / ne))
            return td_fail(TD_E_FORMAT, "%s: %s: dimension %u = %" PRIu64 " makes the element count overflow", r->path,
                           r->what, d, ne);
        t->ne[d] = (int64_t)ne;
        count *= ne;
    }
    return TD_OK;
}

static td_status td_parse_tensor_type(td_rd *r, td_gguf_tensor *t)
{
    TD_TRY(td_rd_u32(r, &t->ggml_type));
    if (t->ggml_type >= 1024)
        return td_fail(TD_E_FORMAT, "%s: %s has type id %u, which no ggml-based program defines (corrupt file)",
                       r->path, r->what, t->ggml_type);
    const td_ggml_type_info *ti = td_ggml_type(t->ggml_type);
    t->nbytes = 0;
    if (!ti) return TD_OK; /* unknown: refused when the tensor is used, with its name and id */
    if (t->ne[0] % ti->block_elems)
        return td_fail(TD_E_FORMAT, "%s: %s: rows of %" PRId64 " elements are not whole %s blocks of %d", r->path,
                       r->what, t->ne[0], ti->name, ti->block_elems);
    uint64_t blocks = (uint64_t)(t->ne[0] / ti->block_elems);
    for (int d = 1; d < t->n_dims; d++) blocks *= (uint64_t)t->ne[d]; /* cannot overflow: <= element count */
    if (blocks > UINT64_MAX / (uint64_t)ti->block_bytes)
        return td_fail(TD_E_FORMAT, "%s: %s: byte size overflows", r->path, r->what);
    t->nbytes = blocks * (uint64_t)ti->block_bytes;
    return TD_OK;
}

static td_status td_parse_tensors(td_rd *r, td_gguf_part *part, uint64_t n)
{
    part->tensors = td_calloc((size_t)n, sizeof *part->tensors);
    if (!part->tensors) return td_fail(TD_E_NOMEM, "%s: out of memory", r->path);
    for (uint64_t i = 0; i < n; i++) {
        td_gguf_tensor *t = &part->tensors[i];
        snprintf(r->what, sizeof r->what, "tensor info #%" PRIu64, i);
        char *name;
        TD_TRY(td_rd_name(r, TD_GGUF_MAX_NAME, &name));
        t->name = name;
        t->file = 0;
        part->n_tensors++;
        snprintf(r->what, sizeof r->what, "tensor '%s'", name);
        TD_TRY(td_parse_tensor_shape(r, t));
        TD_TRY(td_parse_tensor_type(r, t));
        TD_TRY(td_rd_u64(r, &t->offset));
    }
    return TD_OK;
}

static int td_cmp_tensor_offset(const void *a, const void *b)
{
    const td_gguf_tensor *x = *(const td_gguf_tensor *const *)a, *y = *(const td_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Every tensor's bytes lie inside the data section, aligned, and no two overlap. */
static td_status td_check_tensor_data(td_gguf_part *part)
{
    uint64_t data_size = part->data_offset <= part->size ? part->size - part->data_offset : 0;
    for (size_t i = 0; i < part->n_tensors; i++) {
        td_gguf_tensor *t = &part->tensors[i];
        if (t->offset % part->alignment)
            return td_fail(TD_E_FORMAT, "%s: tensor '%s': data offset %" PRIu64 " is not a multiple of the alignment %u",
                           part->path, t->name, t->offset, part->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return td_fail(TD_E_FORMAT,
                           "%s: tensor '%s': its %" PRIu64 " bytes at data offset %" PRIu64
                           " run past the end of the file (data section of %" PRIu64 " bytes; incomplete download?)",
                           part->path, t->name, t->nbytes, t->offset, data_size);
        t->data = part->base ? part->base + part->data_offset + t->offset : NULL;
    }
    const td_gguf_tensor **order = td_malloc((part->n_tensors ? part->n_tensors : 1) * sizeof *order);
    if (!order) return td_fail(TD_E_NOMEM, "%s: out of memory", part->path);
    for (size_t i = 0; i < part->n_tensors; i++) order[i] = &part->tensors[i];
    qsort(order, part->n_tensors, sizeof *order, td_cmp_tensor_offset);
    td_status st = TD_OK;
    for (size_t i = 1; i < part->n_tensors && st == TD_OK; i++) {
        const td_gguf_tensor *a = order[i - 1], *b = order[i];
        if (a->nbytes && b->nbytes && a->offset + a->nbytes > b->offset)
            st = td_fail(TD_E_FORMAT, "%s: tensors '%s' and '%s' overlap in the data section (offsets %" PRIu64
                         " and %" PRIu64 "; corrupt file)",
                         part->path, a->name, b->name, a->offset, b->offset);
    }
    td_free(order);
    return st;
}

td_status td_gguf_parse_part(td_gguf_part *part)
{
    td_rd r = {.p = part->base, .size = part->size, .path = part->path};
    uint64_t n_tensors, n_kv;
    part->split_no = part->split_count = part->split_tensors = -1;
    part->dir_index = -1;
    TD_TRY(td_parse_preamble(&r, part, &n_tensors, &n_kv));
    TD_TRY(td_parse_kvs(&r, part, n_kv));
    TD_TRY(td_parse_layout_keys(part));
    TD_TRY(td_parse_tensors(&r, part, n_tensors));
    uint64_t a = part->alignment;
    part->data_offset = r.pos + (a - r.pos % a) % a;
    return td_check_tensor_data(part);
}

void td_gguf_part_free(td_gguf_part *part)
{
    for (size_t i = 0; i < part->n_kv; i++) {
        td_free((void *)part->kvs[i].key);
        td_free((void *)part->kvs[i].v.offsets);
    }
    td_free(part->kvs);
    td_free(part->kv_sorted);
    for (size_t i = 0; i < part->n_tensors; i++) td_free((void *)part->tensors[i].name);
    td_free(part->tensors);
    if (part->owns_map) td_mapped_file_close(&part->map);
    td_free(part->path);
    memset(part, 0, sizeof *part);
}
