/* libFuzzer target: loading the parts of a split model as one (td_gguf_open_memory_parts): split.no and
 * split.count against each part's place, split.tensors.count and the set identity across parts, tensor
 * names unique across parts; then whatever opened is walked.
 * Input: byte 0 gives the part count (1 + b % 4), then count - 1 little-endian u32 part lengths, then the
 * parts back to back (the last one takes the rest). */
#include "td_gguf.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TD_FUZZ_MAX_PARTS 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int n = 1 + data[0] % TD_FUZZ_MAX_PARTS;
    size_t pos = 1 + 4 * (size_t)(n - 1);
    if (pos > size) return 0;
    const uint8_t *parts[TD_FUZZ_MAX_PARTS];
    uint64_t sizes[TD_FUZZ_MAX_PARTS];
    for (int p = 0; p < n; p++) {
        uint64_t len = size - pos;
        if (p < n - 1) {
            const uint8_t *l = data + 1 + 4 * p;
            len = (uint64_t)l[0] | (uint64_t)l[1] << 8 | (uint64_t)l[2] << 16 | (uint64_t)l[3] << 24;
            if (len > size - pos) return 0;
        }
        parts[p] = data + pos;
        sizes[p] = len;
        pos += len;
    }
    td_gguf *g;
    if (td_gguf_open_memory_parts(parts, sizes, n, "fuzz.gguf", &g) != TD_OK) return 0;
    if (td_gguf_file_count(g) != n) __builtin_trap();
    char buf[64];
    for (size_t i = 0; i < td_gguf_kv_count(g); i++) {
        const td_gguf_kv *kv = td_gguf_kv_at(g, i);
        td_gguf_get_str_copy(g, kv->key, buf, sizeof buf);
    }
    for (size_t i = 0; i < td_gguf_tensor_count(g); i++) {
        const td_gguf_tensor *t = td_gguf_tensor_at(g, i);
        if (td_gguf_find_tensor(g, t->name) != t || t->file < 0 || t->file >= n) __builtin_trap();
        td_tensor view;
        if (td_gguf_tensor_view(g, t, NULL, &view) == TD_OK && view.nbytes) {
            /* the bytes lie inside the part the tensor belongs to */
            const uint8_t *d = (const uint8_t *)view.data;
            if (d < parts[t->file] || d + view.nbytes > parts[t->file] + sizes[t->file]) __builtin_trap();
        }
    }
    td_gguf_close(g);
    return 0;
}
