#include "td_safetensors.h"

#include "td_alloc.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

bool td_st_dtype(const char *s, td_type *out)
{
    static const struct {
        const char *name;
        td_type type;
    } map[] = {
        {"F32", TD_TYPE_F32}, {"F16", TD_TYPE_F16}, {"BF16", TD_TYPE_BF16}, {"F64", TD_TYPE_F64},
        {"F8_E4M3", TD_TYPE_F8_E4M3}, {"I8", TD_TYPE_I8}, {"U8", TD_TYPE_U8}, {"I16", TD_TYPE_I16},
        {"I32", TD_TYPE_I32}, {"I64", TD_TYPE_I64}, {"BOOL", TD_TYPE_BOOL},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(s, map[i].name) == 0) {
            *out = map[i].type;
            return true;
        }
    }
    return false;
}

void td_st_header_free(td_st_header *h)
{
    if (!h) return;
    for (int i = 0; i < h->n_entries; i++) td_free(h->entries[i].name);
    td_free(h->entries);
    for (int i = 0; i < h->n_meta; i++) {
        td_free(h->meta_keys[i]);
        td_free(h->meta_values[i]);
    }
    td_free(h->meta_keys);
    td_free(h->meta_values);
    memset(h, 0, sizeof *h);
}

/* A JSON number that is a non-negative integer representable exactly (< 2^53). */
static bool td_json_u64(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || floor(d) != d) return false;
    *out = (uint64_t)d;
    return true;
}

static td_status td_st_parse_meta(const cJSON *meta, const char *path, td_st_header *out)
{
    if (!cJSON_IsObject(meta))
        return td_fail(TD_E_FORMAT, "%s: __metadata__ must be an object of strings", path);
    int n = cJSON_GetArraySize(meta);
    out->meta_keys = td_calloc((size_t)n, sizeof(char *));
    out->meta_values = td_calloc((size_t)n, sizeof(char *));
    if (!out->meta_keys || !out->meta_values) return td_fail(TD_E_NOMEM, "%s: out of memory", path);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, meta)
    {
        if (!cJSON_IsString(kv))
            return td_fail(TD_E_FORMAT, "%s: __metadata__ value '%s' must be a string", path, kv->string);
        out->meta_keys[out->n_meta] = td_strdup(kv->string);
        out->meta_values[out->n_meta] = td_strdup(kv->valuestring);
        if (!out->meta_keys[out->n_meta] || !out->meta_values[out->n_meta]) {
            out->n_meta++;
            return td_fail(TD_E_NOMEM, "%s: out of memory", path);
        }
        out->n_meta++;
    }
    return TD_OK;
}

static td_status td_st_parse_entry(const cJSON *e, const char *path, uint64_t data_size, td_st_entry *out)
{
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return td_fail(TD_E_FORMAT, "%s: tensor '%s': entry must be an object", path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dtype)) return td_fail(TD_E_FORMAT, "%s: tensor '%s': missing string 'dtype'", path, name);
    if (!td_st_dtype(dtype->valuestring, &out->type))
        return td_fail(TD_E_UNSUPPORTED,
                       "%s: tensor '%s': unknown dtype '%s' (supported: F32 F16 BF16 F64 F8_E4M3 I8 U8 I16 I32 "
                       "I64 BOOL)",
                       path, name, dtype->valuestring);
    if (!cJSON_IsArray(shape)) return td_fail(TD_E_FORMAT, "%s: tensor '%s': missing array 'shape'", path, name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > TD_MAX_DIMS)
        return td_fail(TD_E_UNSUPPORTED, "%s: tensor '%s' has %d dimensions (at most %d are supported)", path,
                       name, nd, TD_MAX_DIMS);
    out->ndim = nd;
    uint64_t count = 1;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (!td_json_u64(cJSON_GetArrayItem(shape, i), &d) || d > (1ull << 40))
            return td_fail(TD_E_FORMAT, "%s: tensor '%s': shape[%d] is not a sensible non-negative integer", path,
                           name, i);
        out->shape[i] = (int64_t)d;
        if (d != 0 && count > UINT64_MAX / d)
            return td_fail(TD_E_FORMAT, "%s: tensor '%s': shape overflows", path, name);
        count *= d;
    }
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !td_json_u64(cJSON_GetArrayItem(offs, 0), &out->begin) ||
        !td_json_u64(cJSON_GetArrayItem(offs, 1), &out->end))
        return td_fail(TD_E_FORMAT, "%s: tensor '%s': 'data_offsets' must be [begin, end] integers", path, name);
    if (out->begin > out->end)
        return td_fail(TD_E_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] run backwards", path, name,
                       (unsigned long long)out->begin, (unsigned long long)out->end);
    if (out->end > data_size)
        return td_fail(TD_E_FORMAT,
                       "%s: tensor '%s': data ends at %llu but the data region has %llu bytes (truncated file?)",
                       path, name, (unsigned long long)out->end, (unsigned long long)data_size);
    uint64_t want;
    if (count > (1ull << 50) || !td_type_nbytes(out->type, (int64_t)count, &want) || want != out->end - out->begin)
        return td_fail(TD_E_FORMAT, "%s: tensor '%s': shape needs %llu elements of %s but data_offsets give %llu bytes",
                       path, name, (unsigned long long)count, dtype->valuestring,
                       (unsigned long long)(out->end - out->begin));
    out->name = td_strdup(name);
    if (!out->name) return td_fail(TD_E_NOMEM, "%s: out of memory", path);
    return TD_OK;
}

static int td_st_cmp_begin(const void *a, const void *b)
{
    const td_st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : (x->end > y->end);
}

static int td_st_cmp_name(const void *a, const void *b)
{
    return strcmp((*(const td_st_entry *const *)a)->name, (*(const td_st_entry *const *)b)->name);
}

static td_status td_st_check_layout(td_st_header *h, const char *path)
{
    /* Overlap: sort by offset, each tensor must start at or after the previous end. */
    qsort(h->entries, (size_t)h->n_entries, sizeof *h->entries, td_st_cmp_begin);
    for (int i = 1; i < h->n_entries; i++) {
        const td_st_entry *p = &h->entries[i - 1], *c = &h->entries[i];
        if (c->begin < p->end && c->end > c->begin)
            return td_fail(TD_E_FORMAT, "%s: tensors '%s' and '%s' overlap (bytes %llu..%llu and %llu..%llu)", path,
                           p->name, c->name, (unsigned long long)p->begin, (unsigned long long)p->end,
                           (unsigned long long)c->begin, (unsigned long long)c->end);
    }
    /* Duplicate names: JSON objects may repeat keys; the format may not. */
    const td_st_entry **by_name = td_malloc((size_t)(h->n_entries ? h->n_entries : 1) * sizeof *by_name);
    if (!by_name) return td_fail(TD_E_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < h->n_entries; i++) by_name[i] = &h->entries[i];
    qsort(by_name, (size_t)h->n_entries, sizeof *by_name, td_st_cmp_name);
    for (int i = 1; i < h->n_entries; i++) {
        if (strcmp(by_name[i - 1]->name, by_name[i]->name) == 0) {
            td_status st = td_fail(TD_E_FORMAT, "%s: tensor '%s' is listed twice in the header", path, by_name[i]->name);
            td_free(by_name);
            return st;
        }
    }
    td_free(by_name);
    return TD_OK;
}

td_status td_st_parse(const uint8_t *bytes, uint64_t size, const char *path, td_st_header *out)
{
    memset(out, 0, sizeof *out);
    if (size == 0) return td_fail(TD_E_FORMAT, "%s: empty file (0 bytes): a download that did not finish?", path);
    if (size < 8)
        return td_fail(TD_E_FORMAT, "%s: %llu bytes is too short for a safetensors file (a truncated download?)",
                       path, (unsigned long long)size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | bytes[i];
    if (hlen > size - 8)
        return td_fail(TD_E_FORMAT,
                       "%s: header length %llu runs past the end of the file (%llu bytes): a truncated download?",
                       path, (unsigned long long)hlen, (unsigned long long)size);
    if (hlen > TD_ST_MAX_HEADER)
        return td_fail(TD_E_FORMAT, "%s: header length %llu exceeds the format's 100 MB limit", path,
                       (unsigned long long)hlen);
    if (hlen < 2) return td_fail(TD_E_FORMAT, "%s: empty header", path);
    out->data_offset = 8 + hlen;
    uint64_t data_size = size - out->data_offset;

    const char *json_end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)bytes + 8, (size_t)hlen, &json_end, false);
    if (!root) {
        const char *err = cJSON_GetErrorPtr();
        long at = err ? (long)(err - (const char *)bytes - 8) : -1;
        return td_fail(TD_E_FORMAT, "%s: header is not valid JSON (near byte %ld of the header)", path, at);
    }
    td_status st = TD_OK;
    if (!cJSON_IsObject(root)) {
        st = td_fail(TD_E_FORMAT, "%s: header must be a JSON object", path);
        goto done;
    }
    int n = cJSON_GetArraySize(root);
    out->entries = td_calloc((size_t)(n ? n : 1), sizeof *out->entries);
    if (!out->entries) {
        st = td_fail(TD_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, root)
    {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (out->meta_keys) {
                st = td_fail(TD_E_FORMAT, "%s: __metadata__ appears twice", path);
                goto done;
            }
            st = td_st_parse_meta(item, path, out);
        } else {
            st = td_st_parse_entry(item, path, data_size, &out->entries[out->n_entries]);
            if (st == TD_OK) out->n_entries++;
        }
        if (st != TD_OK) goto done;
    }
    st = td_st_check_layout(out, path);
done:
    cJSON_Delete(root);
    if (st != TD_OK) td_st_header_free(out);
    return st;
}

td_status td_st_load(const char *path, td_tensor_dir *dir, const char *only_prefix)
{
    td_mapped_file mf;
    TD_TRY(td_mapped_file_open(path, &mf));
    td_st_header h;
    td_status st = td_st_parse(mf.data, mf.size, path, &h);
    if (st != TD_OK) {
        td_mapped_file_close(&mf);
        return st;
    }
    const uint8_t *base = mf.data;
    uint64_t data_offset = h.data_offset;
    int file_index = -1;
    size_t plen = only_prefix ? strlen(only_prefix) : 0;
    int wanted = 0;
    for (int i = 0; i < h.n_entries; i++) wanted += !plen || strncmp(h.entries[i].name, only_prefix, plen) == 0;
    if (wanted == 0 && plen) {
        td_mapped_file_close(&mf);
        goto done;
    }
    st = td_tensor_dir_add_file(dir, &mf, &file_index);
    if (st != TD_OK) {
        td_mapped_file_close(&mf);
        goto done;
    }
    for (int i = 0; i < h.n_entries && st == TD_OK; i++) {
        const td_st_entry *e = &h.entries[i];
        if (plen && strncmp(e->name, only_prefix, plen) != 0) continue;
        td_tensor t = {.name = e->name, .type = e->type, .ndim = e->ndim, .file = file_index,
                       .data = base + data_offset + e->begin, .nbytes = e->end - e->begin};
        memcpy(t.shape, e->shape, sizeof t.shape);
        st = td_tensor_dir_add(dir, &t);
    }
    for (int i = 0; i < h.n_meta && st == TD_OK && !plen; i++) st = td_tensor_dir_set_meta(dir, h.meta_keys[i], h.meta_values[i]);
done:
    td_st_header_free(&h);
    return st;
}
