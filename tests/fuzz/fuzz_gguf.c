/* libFuzzer target: the GGUF header parser on arbitrary bytes, then every accessor on whatever it
 * accepted (metadata of each type, array elements including nested ones, tensor types and views). */
#include "td_gguf.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void td_fuzz_value(const td_gguf_value *v, int depth)
{
    int64_t i;
    double f;
    td_gguf_value_int(v, &i);
    td_gguf_value_float(v, &f);
    if (v->type != TD_GGUF_ARRAY || depth > 3) return;
    /* the first and last few elements: enough to reach every element kind without quadratic walks */
    for (uint64_t k = 0; k < v->len; k++) {
        if (k == 8 && v->len > 16) k = v->len - 8;
        td_gguf_value e;
        if (td_gguf_array_elem(v, k, &e) != TD_OK) continue;
        const char *s;
        size_t len;
        td_gguf_array_str(v, k, &s, &len);
        td_gguf_array_int(v, k, &i);
        td_gguf_array_float(v, k, &f);
        td_fuzz_value(&e, depth + 1);
    }
    td_gguf_value e;
    td_gguf_array_elem(v, v->len, &e); /* out of range: refused */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    td_gguf *g;
    if (td_gguf_open_memory(data, size, "fuzz.gguf", &g) != TD_OK) return 0;
    for (size_t i = 0; i < td_gguf_kv_count(g); i++) {
        const td_gguf_kv *kv = td_gguf_kv_at(g, i);
        int64_t iv;
        uint64_t uv;
        double fv;
        bool bv;
        char buf[64];
        td_gguf_get_int(g, kv->key, &iv);
        td_gguf_get_uint(g, kv->key, &uv);
        td_gguf_get_float(g, kv->key, &fv);
        td_gguf_get_bool(g, kv->key, &bv);
        td_gguf_get_str_copy(g, kv->key, buf, sizeof buf);
        td_fuzz_value(&kv->v, 0);
    }
    for (size_t i = 0; i < td_gguf_tensor_count(g); i++) {
        const td_gguf_tensor *t = td_gguf_tensor_at(g, i);
        td_tensor view;
        if (td_gguf_find_tensor(g, t->name) != t) __builtin_trap();
        if (td_gguf_tensor_view(g, t, NULL, &view) == TD_OK) {
            /* the parser promised the bytes are inside the input */
            volatile uint8_t sink = 0;
            if (view.nbytes) sink ^= ((const uint8_t *)view.data)[view.nbytes - 1];
            (void)sink;
        }
    }
    td_gguf_close(g);
    return 0;
}
