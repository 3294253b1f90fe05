/* Typed access to GGUF metadata: scalars of any integer width, floats, bools, strings and arrays
 * (nested ones included), each checked for kind and range with messages that name the key. */
#include "td_gguf_impl.h"

#include <inttypes.h>
#include <stdio.h>

size_t td_gguf_kv_count(const td_gguf *g) { return g->parts[0].n_kv; }
const td_gguf_kv *td_gguf_kv_at(const td_gguf *g, size_t i) { return i < g->parts[0].n_kv ? &g->parts[0].kvs[i] : NULL; }
const td_gguf_kv *td_gguf_find_kv(const td_gguf *g, const char *key) { return td_gguf_part_find_kv(&g->parts[0], key); }

bool td_gguf_value_int(const td_gguf_value *v, int64_t *out)
{
    const uint8_t *p = v->data;
    switch (v->type) {
    case TD_GGUF_U8:
    case TD_GGUF_BOOL: *out = p[0]; return true;
    case TD_GGUF_I8: *out = (int8_t)p[0]; return true;
    case TD_GGUF_U16: *out = td_le16(p); return true;
    case TD_GGUF_I16: *out = (int16_t)td_le16(p); return true;
    case TD_GGUF_U32: *out = td_le32(p); return true;
    case TD_GGUF_I32: *out = (int32_t)td_le32(p); return true;
    case TD_GGUF_I64: *out = (int64_t)td_le64(p); return true;
    case TD_GGUF_U64:
        if (td_le64(p) > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)td_le64(p);
        return true;
    default: return false;
    }
}

bool td_gguf_value_float(const td_gguf_value *v, double *out)
{
    if (v->type == TD_GGUF_F32) {
        uint32_t u = td_le32(v->data);
        float f;
        memcpy(&f, &u, sizeof f);
        *out = f;
        return true;
    }
    if (v->type == TD_GGUF_F64) {
        uint64_t u = td_le64(v->data);
        memcpy(out, &u, sizeof *out);
        return true;
    }
    int64_t i;
    if (v->type != TD_GGUF_BOOL && td_gguf_value_int(v, &i)) {
        *out = (double)i;
        return true;
    }
    return false;
}

static td_status td_kv_lookup(const td_gguf *g, const char *key, const td_gguf_kv **out)
{
    *out = td_gguf_find_kv(g, key);
    if (!*out) return td_fail(TD_E_NOT_FOUND, "%s: metadata key '%s' is missing", g->parts[0].path, key);
    return TD_OK;
}

static td_status td_kv_kind_error(const td_gguf *g, const td_gguf_kv *kv, const char *want)
{
    return td_fail(TD_E_FORMAT, "%s: metadata key '%s' is a %s, expected %s", g->parts[0].path, kv->key,
                   td_gguf_vtype_name(kv->v.type), want);
}

td_status td_gguf_get_int(const td_gguf *g, const char *key, int64_t *out)
{
    const td_gguf_kv *kv;
    TD_TRY(td_kv_lookup(g, key, &kv));
    if (kv->v.type == TD_GGUF_BOOL || !td_gguf_value_int(&kv->v, out)) return td_kv_kind_error(g, kv, "an integer");
    return TD_OK;
}

td_status td_gguf_get_uint(const td_gguf *g, const char *key, uint64_t *out)
{
    const td_gguf_kv *kv;
    TD_TRY(td_kv_lookup(g, key, &kv));
    if (kv->v.type == TD_GGUF_U64) {
        *out = td_le64(kv->v.data);
        return TD_OK;
    }
    int64_t v;
    if (kv->v.type == TD_GGUF_BOOL || !td_gguf_value_int(&kv->v, &v) || v < 0)
        return td_kv_kind_error(g, kv, "a non-negative integer");
    *out = (uint64_t)v;
    return TD_OK;
}

td_status td_gguf_get_float(const td_gguf *g, const char *key, double *out)
{
    const td_gguf_kv *kv;
    TD_TRY(td_kv_lookup(g, key, &kv));
    if (!td_gguf_value_float(&kv->v, out)) return td_kv_kind_error(g, kv, "a number");
    return TD_OK;
}

td_status td_gguf_get_bool(const td_gguf *g, const char *key, bool *out)
{
    const td_gguf_kv *kv;
    TD_TRY(td_kv_lookup(g, key, &kv));
    if (kv->v.type != TD_GGUF_BOOL) return td_kv_kind_error(g, kv, "a bool");
    *out = kv->v.data[0] != 0;
    return TD_OK;
}

td_status td_gguf_get_str(const td_gguf *g, const char *key, const char **s, size_t *len)
{
    const td_gguf_kv *kv;
    TD_TRY(td_kv_lookup(g, key, &kv));
    if (kv->v.type != TD_GGUF_STRING) return td_kv_kind_error(g, kv, "a string");
    *s = (const char *)kv->v.data;
    *len = (size_t)kv->v.len;
    return TD_OK;
}

td_status td_gguf_get_str_copy(const td_gguf *g, const char *key, char *buf, size_t cap)
{
    const char *s;
    size_t len;
    TD_TRY(td_gguf_get_str(g, key, &s, &len));
    if (len >= cap || memchr(s, 0, len))
        return td_fail(TD_E_FORMAT, "%s: metadata key '%s': the string is longer than %zu bytes or holds a NUL",
                       g->parts[0].path, key, cap - 1);
    memcpy(buf, s, len);
    buf[len] = '\0';
    return TD_OK;
}

td_status td_gguf_get_array(const td_gguf *g, const char *key, td_gguf_value *out)
{
    const td_gguf_kv *kv;
    TD_TRY(td_kv_lookup(g, key, &kv));
    if (kv->v.type != TD_GGUF_ARRAY) return td_kv_kind_error(g, kv, "an array");
    *out = kv->v;
    return TD_OK;
}

/* ------------------------------------------------------------------ array elements */

/* The size of the element at p (validated by the parser, so it lies inside the array's payload). */
static uint64_t td_elem_size(td_gguf_vtype t, const uint8_t *p)
{
    int sz = td_gguf_vtype_size(t);
    if (sz) return (uint64_t)sz;
    if (t == TD_GGUF_STRING) return 8 + td_le64(p);
    td_gguf_vtype et = (td_gguf_vtype)td_le32(p);
    uint64_t n = td_le64(p + 4), off = 12;
    for (uint64_t i = 0; i < n; i++) off += td_elem_size(et, p + off);
    return off;
}

td_status td_gguf_array_elem(const td_gguf_value *arr, uint64_t i, td_gguf_value *out)
{
    if (arr->type != TD_GGUF_ARRAY || i >= arr->len)
        return td_fail(TD_E_ARG, "array element %" PRIu64 " requested from a value of %" PRIu64 " elements", i,
                       arr->type == TD_GGUF_ARRAY ? arr->len : 0);
    memset(out, 0, sizeof *out);
    out->type = arr->elem_type;
    int sz = td_gguf_vtype_size(arr->elem_type);
    const uint8_t *p;
    if (sz) {
        p = arr->data + i * (uint64_t)sz;
    } else if (arr->offsets) {
        p = arr->data + arr->offsets[i];
    } else { /* inside a nested array: walk */
        p = arr->data;
        for (uint64_t k = 0; k < i; k++) p += td_elem_size(arr->elem_type, p);
    }
    if (sz) {
        out->data = p;
        out->size = (uint64_t)sz;
    } else if (arr->elem_type == TD_GGUF_STRING) {
        out->len = td_le64(p);
        out->data = p + 8;
        out->size = out->len;
    } else {
        out->elem_type = (td_gguf_vtype)td_le32(p);
        out->len = td_le64(p + 4);
        out->data = p + 12;
        out->size = td_elem_size(arr->elem_type, p) - 12;
    }
    return TD_OK;
}

td_status td_gguf_array_int(const td_gguf_value *arr, uint64_t i, int64_t *out)
{
    td_gguf_value v;
    TD_TRY(td_gguf_array_elem(arr, i, &v));
    if (!td_gguf_value_int(&v, out))
        return td_fail(TD_E_FORMAT, "array element %" PRIu64 " is a %s, expected an integer", i,
                       td_gguf_vtype_name(v.type));
    return TD_OK;
}

td_status td_gguf_array_float(const td_gguf_value *arr, uint64_t i, double *out)
{
    td_gguf_value v;
    TD_TRY(td_gguf_array_elem(arr, i, &v));
    if (!td_gguf_value_float(&v, out))
        return td_fail(TD_E_FORMAT, "array element %" PRIu64 " is a %s, expected a number", i,
                       td_gguf_vtype_name(v.type));
    return TD_OK;
}

td_status td_gguf_array_str(const td_gguf_value *arr, uint64_t i, const char **s, size_t *len)
{
    td_gguf_value v;
    TD_TRY(td_gguf_array_elem(arr, i, &v));
    if (v.type != TD_GGUF_STRING)
        return td_fail(TD_E_FORMAT, "array element %" PRIu64 " is a %s, expected a string", i,
                       td_gguf_vtype_name(v.type));
    *s = (const char *)v.data;
    *len = (size_t)v.len;
    return TD_OK;
}
