/* The vocabulary embedded in GGUF metadata (tokenizer.ggml.*): waits for the GGUF reader. */
#include "td_model.h"
#include "td_tokenizer_impl.h"

td_status td_tokenizer_load_gguf(const char *path, td_tokenizer **out)
{
    *out = NULL;
    return td_fail(TD_E_UNSUPPORTED, "%s: reading a tokenizer from GGUF needs the GGUF reader", path);
}

td_status td_tokenizer_from_model_gguf(const struct td_model *m, td_tokenizer **out)
{
    return td_tokenizer_load_gguf(m->path, out);
}
