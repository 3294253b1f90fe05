#include "td_tensor.h"

#include "td_alloc.h"

#include <stdio.h>
#include <string.h>

struct td_tensor_dir {
    td_tensor *tensors;
    size_t count, cap;
    uint32_t *slots; /* open addressing: index+1, 0 = empty */
    size_t n_slots;  /* power of two, > 2*count */
    td_mapped_file *files;
    int n_files, cap_files;
    void **owned;
    size_t n_owned, cap_owned;
    char **meta_keys, **meta_values;
    size_t n_meta, cap_meta;
};

int64_t td_tensor_numel(const td_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

const char *td_tensor_shape_str(const td_tensor *t, char *buf, size_t cap)
{
    size_t used = 0;
    used += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
    return buf;
}

static uint64_t td_hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

td_status td_tensor_dir_create(td_tensor_dir **out)
{
    *out = td_calloc(1, sizeof **out);
    if (!*out) return td_fail(TD_E_NOMEM, "out of memory creating a tensor directory");
    return TD_OK;
}

void td_tensor_dir_free(td_tensor_dir *dir)
{
    if (!dir) return;
    for (size_t i = 0; i < dir->count; i++) td_free((void *)dir->tensors[i].name);
    td_free(dir->tensors);
    td_free(dir->slots);
    for (int i = 0; i < dir->n_files; i++) td_mapped_file_close(&dir->files[i]);
    td_free(dir->files);
    for (size_t i = 0; i < dir->n_owned; i++) td_free(dir->owned[i]);
    td_free(dir->owned);
    for (size_t i = 0; i < dir->n_meta; i++) {
        td_free(dir->meta_keys[i]);
        td_free(dir->meta_values[i]);
    }
    td_free(dir->meta_keys);
    td_free(dir->meta_values);
    td_free(dir);
}

td_status td_tensor_dir_add_file(td_tensor_dir *dir, td_mapped_file *file, int *index)
{
    if (dir->n_files == dir->cap_files) {
        int cap = dir->cap_files ? dir->cap_files * 2 : 4;
        td_mapped_file *f = td_realloc(dir->files, (size_t)cap * sizeof *f);
        if (!f) return td_fail(TD_E_NOMEM, "out of memory adding file %s", file->path);
        dir->files = f;
        dir->cap_files = cap;
    }
    dir->files[dir->n_files] = *file;
    memset(file, 0, sizeof *file);
    if (index) *index = dir->n_files;
    dir->n_files++;
    return TD_OK;
}

const td_mapped_file *td_tensor_dir_file(const td_tensor_dir *dir, int index)
{
    return (index >= 0 && index < dir->n_files) ? &dir->files[index] : NULL;
}

int td_tensor_dir_file_count(const td_tensor_dir *dir) { return dir->n_files; }

static size_t td_find_slot(const td_tensor_dir *dir, const char *name)
{
    size_t mask = dir->n_slots - 1;
    size_t i = (size_t)td_hash_name(name) & mask;
    while (dir->slots[i] && strcmp(dir->tensors[dir->slots[i] - 1].name, name) != 0) i = (i + 1) & mask;
    return i;
}

static td_status td_rehash(td_tensor_dir *dir, size_t n_slots)
{
    uint32_t *slots = td_calloc(n_slots, sizeof *slots);
    if (!slots) return td_fail(TD_E_NOMEM, "out of memory growing the tensor directory");
    td_free(dir->slots);
    dir->slots = slots;
    dir->n_slots = n_slots;
    for (size_t k = 0; k < dir->count; k++) dir->slots[td_find_slot(dir, dir->tensors[k].name)] = (uint32_t)(k + 1);
    return TD_OK;
}

td_status td_tensor_dir_add(td_tensor_dir *dir, const td_tensor *t)
{
    if (dir->count >= UINT32_MAX - 1) return td_fail(TD_E_FORMAT, "too many tensors");
    if (dir->n_slots < 2 * (dir->count + 1)) TD_TRY(td_rehash(dir, dir->n_slots ? dir->n_slots * 2 : 64));
    size_t slot = td_find_slot(dir, t->name);
    if (dir->slots[slot]) {
        const td_tensor *prev = &dir->tensors[dir->slots[slot] - 1];
        const td_mapped_file *pf = td_tensor_dir_file(dir, prev->file);
        const td_mapped_file *nf = td_tensor_dir_file(dir, t->file);
        return td_fail(TD_E_FORMAT, "tensor '%s' appears twice (in %s and %s); the model files are inconsistent",
                       t->name, pf ? pf->path : "memory", nf ? nf->path : "memory");
    }
    if (dir->count == dir->cap) {
        size_t cap = dir->cap ? dir->cap * 2 : 256;
        td_tensor *n = td_realloc(dir->tensors, cap * sizeof *n);
        if (!n) return td_fail(TD_E_NOMEM, "out of memory adding tensor %s", t->name);
        dir->tensors = n;
        dir->cap = cap;
    }
    td_tensor copy = *t;
    copy.name = td_strdup(t->name);
    if (!copy.name) return td_fail(TD_E_NOMEM, "out of memory adding tensor %s", t->name);
    dir->tensors[dir->count] = copy;
    dir->slots[slot] = (uint32_t)(dir->count + 1);
    dir->count++;
    return TD_OK;
}

td_status td_tensor_dir_add_owned(td_tensor_dir *dir, const td_tensor *t, void *owned_data)
{
    if (dir->n_owned == dir->cap_owned) {
        size_t cap = dir->cap_owned ? dir->cap_owned * 2 : 16;
        void **n = td_realloc(dir->owned, cap * sizeof *n);
        if (!n) {
            td_free(owned_data);
            return td_fail(TD_E_NOMEM, "out of memory adding tensor %s", t->name);
        }
        dir->owned = n;
        dir->cap_owned = cap;
    }
    dir->owned[dir->n_owned++] = owned_data;
    td_tensor copy = *t;
    copy.data = owned_data;
    copy.file = -1;
    return td_tensor_dir_add(dir, &copy);
}

const td_tensor *td_tensor_dir_find(const td_tensor_dir *dir, const char *name)
{
    if (!dir->n_slots) return NULL;
    uint32_t s = dir->slots[td_find_slot(dir, name)];
    return s ? &dir->tensors[s - 1] : NULL;
}

size_t td_tensor_dir_count(const td_tensor_dir *dir) { return dir->count; }

const td_tensor *td_tensor_dir_at(const td_tensor_dir *dir, size_t i)
{
    return i < dir->count ? &dir->tensors[i] : NULL;
}

td_status td_tensor_dir_set_meta(td_tensor_dir *dir, const char *key, const char *value)
{
    for (size_t i = 0; i < dir->n_meta; i++) {
        if (strcmp(dir->meta_keys[i], key) == 0) {
            char *v = td_strdup(value);
            if (!v) return td_fail(TD_E_NOMEM, "out of memory");
            td_free(dir->meta_values[i]);
            dir->meta_values[i] = v;
            return TD_OK;
        }
    }
    if (dir->n_meta == dir->cap_meta) {
        size_t cap = dir->cap_meta ? dir->cap_meta * 2 : 8;
        char **k = td_realloc(dir->meta_keys, cap * sizeof *k);
        if (!k) return td_fail(TD_E_NOMEM, "out of memory");
        dir->meta_keys = k;
        char **v = td_realloc(dir->meta_values, cap * sizeof *v);
        if (!v) return td_fail(TD_E_NOMEM, "out of memory");
        dir->meta_values = v;
        dir->cap_meta = cap;
    }
    char *k = td_strdup(key), *v = td_strdup(value);
    if (!k || !v) {
        td_free(k);
        td_free(v);
        return td_fail(TD_E_NOMEM, "out of memory");
    }
    dir->meta_keys[dir->n_meta] = k;
    dir->meta_values[dir->n_meta] = v;
    dir->n_meta++;
    return TD_OK;
}

const char *td_tensor_dir_meta(const td_tensor_dir *dir, const char *key)
{
    for (size_t i = 0; i < dir->n_meta; i++)
        if (strcmp(dir->meta_keys[i], key) == 0) return dir->meta_values[i];
    return NULL;
}
