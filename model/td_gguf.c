/* Opening a GGUF model: one file or every part of a split model, the combined tensor index, and the
 * tensor views handed to the model loader. */
#include "td_gguf_impl.h"

#include "td_alloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------ split names */

/* "<prefix>-00003-of-00009.gguf": the prefix length, part number (1-based) and count; false otherwise. */
static bool td_split_name(const char *path, size_t *prefix_len, int *no, int *count)
{
    static const char tail[] = "-NNNNN-of-NNNNN.gguf";
    size_t n = strlen(path), t = sizeof tail - 1;
    if (n < t + 1) return false;
    const char *s = path + n - t;
    for (size_t i = 0; i < t; i++) {
        if (tail[i] == 'N') {
            if (s[i] < '0' || s[i] > '9') return false;
        } else if (s[i] != tail[i]) {
            return false;
        }
    }
    *no = atoi(s + 1);
    *count = atoi(s + 10);
    *prefix_len = n - t;
    return true;
}

/* ------------------------------------------------------------------ opening */

static td_status td_part_map(td_gguf_part *part, const char *path)
{
    memset(part, 0, sizeof *part);
    part->split_no = part->split_count = part->split_tensors = -1;
    part->dir_index = -1;
    part->path = td_strdup(path);
    if (!part->path) return td_fail(TD_E_NOMEM, "out of memory");
    TD_TRY(td_mapped_file_open(path, &part->map));
    part->owns_map = true;
    part->base = part->map.data;
    part->size = part->map.size;
    return td_gguf_parse_part(part);
}

static int td_cmp_tensor_name(const void *a, const void *b, void *ctx)
{
    const td_gguf_tensor *t = ctx;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

/* Joins the parts' tensors into one list and one sorted name index; names must be unique. */
static td_status td_gguf_index(td_gguf *g)
{
    size_t n = 0;
    for (int p = 0; p < g->n_parts; p++) n += g->parts[p].n_tensors;
    g->tensors = td_malloc((n ? n : 1) * sizeof *g->tensors);
    g->by_name = td_malloc((n ? n : 1) * sizeof *g->by_name);
    if (!g->tensors || !g->by_name) return td_fail(TD_E_NOMEM, "out of memory indexing %zu tensors", n);
    for (int p = 0; p < g->n_parts; p++) {
        for (size_t i = 0; i < g->parts[p].n_tensors; i++) {
            g->tensors[g->n_tensors] = g->parts[p].tensors[i];
            g->tensors[g->n_tensors].file = p;
            g->by_name[g->n_tensors] = g->n_tensors;
            g->n_tensors++;
        }
    }
    qsort_r(g->by_name, n, sizeof *g->by_name, td_cmp_tensor_name, g->tensors);
    for (size_t i = 1; i < n; i++) {
        const td_gguf_tensor *a = &g->tensors[g->by_name[i - 1]], *b = &g->tensors[g->by_name[i]];
        if (strcmp(a->name, b->name) == 0)
            return td_fail(TD_E_FORMAT, "tensor '%s' appears twice (in %s and %s); the file is corrupt", a->name,
                           g->parts[a->file].path, g->parts[b->file].path);
    }
    return TD_OK;
}

static bool td_same_set_id(const td_gguf_kv *a, const td_gguf_kv *b)
{
    if (!a || !b) return !a && !b;
    return a->v.len == b->v.len && memcmp(a->v.data, b->v.data, (size_t)a->v.len) == 0;
}

/* "'0123456789abcdef'" or "none" (llama.cpp's gguf-split writes none). */
static const char *td_set_id_text(const td_gguf_kv *id, char *buf, size_t cap)
{
    if (!id) return "none";
    snprintf(buf, cap, "'%.*s'", (int)(id->v.len > 64 ? 64 : id->v.len), (const char *)id->v.data);
    return buf;
}

/* The parts must belong together: each one in its place, with the same split.count, split.tensors.count
 * and set identity as the first, and the tensors they hold adding up to split.tensors.count. */
static td_status td_check_split(const td_gguf *g)
{
    const td_gguf_part *p0 = &g->parts[0];
    int64_t total = 0;
    for (int p = 0; p < g->n_parts; p++) {
        const td_gguf_part *part = &g->parts[p];
        if (part->split_no != p || part->split_count != g->n_parts)
            return td_fail(TD_E_FORMAT,
                           "%s: split.no = %" PRId64 " and split.count = %" PRId64
                           " do not match its name (part %d of %d); were parts of different models mixed?",
                           part->path, part->split_no, part->split_count, p + 1, g->n_parts);
        if (!td_same_set_id(part->split_set_id, p0->split_set_id)) {
            char a[80], b[80];
            return td_fail(TD_E_FORMAT,
                           "%s: this part belongs to another set than part 1 (%s): set identity %s here, %s there "
                           "(%s); an interrupted or failed write may have mixed them: write the whole set again",
                           part->path, p0->path, td_set_id_text(part->split_set_id, a, sizeof a),
                           td_set_id_text(p0->split_set_id, b, sizeof b), TD_GGUF_SPLIT_SET_ID);
        }
        if (part->split_tensors != p0->split_tensors)
            return td_fail(TD_E_FORMAT,
                           "%s: split.tensors.count = %" PRId64 " but part 1 (%s) says %" PRId64
                           "; the parts come from different sets: convert or download the whole set again",
                           part->path, part->split_tensors, p0->path, p0->split_tensors);
        total += (int64_t)part->n_tensors;
    }
    int64_t want = p0->split_tensors;
    if (want >= 0 && want != total)
        return td_fail(TD_E_FORMAT, "%s: split.tensors.count = %" PRId64 " but the %d parts hold %" PRId64
                       " tensors (a part is missing or from another model)",
                       p0->path, want, g->n_parts, total);
    return TD_OK;
}

/* The given part is parsed; find and parse its siblings, then put all parts in order. */
static td_status td_open_split(td_gguf *g, const char *path, size_t prefix_len, int no, int count)
{
    td_gguf_part first = g->parts[0];
    td_gguf_part *parts = td_calloc((size_t)count, sizeof *parts);
    if (!parts) return td_fail(TD_E_NOMEM, "out of memory");
    td_free(g->parts);
    g->parts = parts;
    g->n_parts = count;
    parts[no - 1] = first;
    char *sib = td_malloc(prefix_len + 32);
    if (!sib) return td_fail(TD_E_NOMEM, "out of memory");
    td_status st = TD_OK;
    for (int p = 0; p < count && st == TD_OK; p++) {
        if (p == no - 1) continue;
        snprintf(sib, prefix_len + 32, "%.*s-%05d-of-%05d.gguf", (int)prefix_len, path, p + 1, count);
        if (!td_path_exists(sib)) {
            st = td_fail(TD_E_NOT_FOUND, "%s: part %d of %d (%s) is missing; all parts must be in the same directory",
                         path, p + 1, count, sib);
            break;
        }
        st = td_part_map(&parts[p], sib);
    }
    td_free(sib);
    return st;
}

static td_status td_gguf_open_parts(td_gguf *g, const char *path)
{
    g->parts = td_calloc(1, sizeof *g->parts);
    if (!g->parts) return td_fail(TD_E_NOMEM, "out of memory");
    g->n_parts = 1;
    TD_TRY(td_part_map(&g->parts[0], path));
    const td_gguf_part *p0 = &g->parts[0];
    size_t prefix_len;
    int no, count;
    bool named = td_split_name(path, &prefix_len, &no, &count);
    bool keyed = p0->split_count > 1;
    if (!named && !keyed) return TD_OK;
    if (!named)
        return td_fail(TD_E_FORMAT,
                       "%s: part %" PRId64 " of a %" PRId64
                       "-part split model, but its name does not end in -%05d-of-%05d.gguf; restore the original "
                       "file names",
                       path, p0->split_no + 1, p0->split_count, (int)p0->split_no + 1, (int)p0->split_count);
    if (count <= 1 && !keyed) return TD_OK;
    if (no < 1 || no > count)
        return td_fail(TD_E_FORMAT, "%s: the name says part %d of %d, which cannot be", path, no, count);
    if (p0->split_count != count || p0->split_no != no - 1)
        return td_fail(TD_E_FORMAT,
                       "%s: the name says part %d of %d but split.no = %" PRId64 " and split.count = %" PRId64
                       " (0-based part number); restore the original file names",
                       path, no, count, p0->split_no, p0->split_count);
    TD_TRY(td_open_split(g, path, prefix_len, no, count));
    return td_check_split(g);
}

td_status td_gguf_open(const char *path, td_gguf **out)
{
    *out = NULL;
    td_gguf *g = td_calloc(1, sizeof *g);
    if (!g) return td_fail(TD_E_NOMEM, "out of memory");
    td_status st = td_gguf_open_parts(g, path);
    if (st == TD_OK) st = td_gguf_index(g);
    if (st != TD_OK) {
        td_gguf_close(g);
        return st;
    }
    *out = g;
    return TD_OK;
}

/* as_set: check the parts as the parts of one split model */
static td_status td_open_memory(const uint8_t *const *data, const uint64_t *size, int n, const char *name, bool as_set,
                                td_gguf **out)
{
    *out = NULL;
    if (n < 1 || n > 65535) return td_fail(TD_E_ARG, "%s: %d parts (1 to 65535)", name, n);
    td_gguf *g = td_calloc(1, sizeof *g);
    if (!g) return td_fail(TD_E_NOMEM, "out of memory");
    td_status st = TD_OK;
    g->parts = td_calloc((size_t)n, sizeof *g->parts);
    if (!g->parts) st = td_fail(TD_E_NOMEM, "out of memory");
    else g->n_parts = n;
    for (int p = 0; p < n && st == TD_OK; p++) {
        td_gguf_part *part = &g->parts[p];
        char label[64];
        snprintf(label, sizeof label, n > 1 ? "part %d of %s" : "%.0d%s", p + 1, name);
        part->path = td_strdup(n > 1 ? label : name);
        part->base = data[p];
        part->size = size[p];
        if (!part->path) st = td_fail(TD_E_NOMEM, "out of memory");
        if (st == TD_OK) st = td_gguf_parse_part(part);
    }
    /* parts given as a set must say so, as files named -0000N-of-0000M.gguf must */
    if (st == TD_OK && as_set && (n > 1 || g->parts[0].split_count > 1)) st = td_check_split(g);
    if (st == TD_OK) st = td_gguf_index(g);
    if (st != TD_OK) {
        td_gguf_close(g);
        return st;
    }
    *out = g;
    return TD_OK;
}

td_status td_gguf_open_memory(const uint8_t *data, uint64_t size, const char *name, td_gguf **out)
{
    return td_open_memory(&data, &size, 1, name, false, out);
}

td_status td_gguf_open_memory_parts(const uint8_t *const *data, const uint64_t *size, int n, const char *name,
                                    td_gguf **out)
{
    return td_open_memory(data, size, n, name, true, out);
}

void td_gguf_close(td_gguf *g)
{
    if (!g) return;
    for (int p = 0; p < g->n_parts; p++) td_gguf_part_free(&g->parts[p]);
    td_free(g->parts);
    td_free(g->tensors);
    td_free(g->by_name);
    td_free(g);
}

/* ------------------------------------------------------------------ files */

int td_gguf_file_count(const td_gguf *g) { return g->n_parts; }
const char *td_gguf_file_path(const td_gguf *g, int part) { return g->parts[part].path; }
uint64_t td_gguf_file_size(const td_gguf *g, int part) { return g->parts[part].size; }
uint64_t td_gguf_data_offset(const td_gguf *g, int part) { return g->parts[part].data_offset; }
uint32_t td_gguf_version(const td_gguf *g) { return g->parts[0].version; }
uint32_t td_gguf_alignment(const td_gguf *g) { return g->parts[0].alignment; }

td_status td_gguf_give_files(td_gguf *g, td_tensor_dir *dir, int *first)
{
    for (int p = 0; p < g->n_parts; p++) {
        td_gguf_part *part = &g->parts[p];
        if (!part->owns_map) continue;
        TD_TRY(td_tensor_dir_add_file(dir, &part->map, &part->dir_index));
        part->owns_map = false;
    }
    if (first) *first = g->parts[0].dir_index;
    return TD_OK;
}

/* ------------------------------------------------------------------ tensors */

size_t td_gguf_tensor_count(const td_gguf *g) { return g->n_tensors; }
const td_gguf_tensor *td_gguf_tensor_at(const td_gguf *g, size_t i) { return i < g->n_tensors ? &g->tensors[i] : NULL; }

const td_gguf_tensor *td_gguf_find_tensor(const td_gguf *g, const char *name)
{
    size_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const td_gguf_tensor *t = &g->tensors[g->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

td_status td_gguf_tensor_type(const td_gguf *g, const td_gguf_tensor *t, td_type *out)
{
    const td_ggml_type_info *ti = td_ggml_type(t->ggml_type);
    const char *path = g->parts[t->file].path;
    if (!ti)
        return td_fail(TD_E_UNSUPPORTED,
                       "%s: tensor '%s' uses ggml type id %u, which ggml does not define (a type private to another "
                       "project, such as ik_llama.cpp's IQ*_K); tandem reads F32 F16 BF16 Q4_0 Q5_0 Q8_0 Q2_K..Q6_K "
                       "IQ4_NL IQ4_XS IQ2_XXS IQ1_S: requantize the model with one of those",
                       path, t->name, t->ggml_type);
    if (ti->type == TD_TYPE_COUNT)
        return td_fail(TD_E_UNSUPPORTED,
                       "%s: tensor '%s' is stored as %s, which tandem does not support; tandem reads F32 F16 BF16 Q4_0 "
                       "Q5_0 Q8_0 Q2_K..Q6_K IQ4_NL IQ4_XS IQ2_XXS IQ1_S: pick a GGUF made with those",
                       path, t->name, ti->name);
    *out = ti->type;
    return TD_OK;
}

td_status td_gguf_tensor_view(const td_gguf *g, const td_gguf_tensor *t, const char *name, td_tensor *out)
{
    td_type type;
    TD_TRY(td_gguf_tensor_type(g, t, &type));
    memset(out, 0, sizeof *out);
    out->name = name ? name : t->name;
    out->type = type;
    out->ndim = t->n_dims;
    for (int d = 0; d < t->n_dims; d++) out->shape[d] = t->ne[t->n_dims - 1 - d];
    out->data = t->data;
    out->nbytes = t->nbytes;
    out->file = g->parts[t->file].dir_index;
    return TD_OK;
}
