/* A stand-in vocabulary for models that carry no tokenizer (the safetensors fixtures): every id is an
 * added token "<id>", so the generator can stream text and benchmarks can run on any model. */
#include "td_alloc.h"
#include "td_tokenizer.h"

#include <stdio.h>

td_status td_tokenizer_placeholder(int64_t n_vocab, td_tokenizer **out)
{
    *out = NULL;
    if (n_vocab < 1 || n_vocab > INT32_MAX)
        return td_fail(TD_E_ARG, "placeholder vocabulary of %lld tokens is out of range", (long long)n_vocab);
    char **names = td_calloc((size_t)n_vocab, sizeof *names);
    uint8_t *attrs = td_calloc((size_t)n_vocab, 1);
    td_status st = names && attrs ? TD_OK : td_fail(TD_E_NOMEM, "out of memory");
    for (int64_t i = 0; st == TD_OK && i < n_vocab; i++) {
        if (!(names[i] = td_malloc(24))) st = td_fail(TD_E_NOMEM, "out of memory");
        else snprintf(names[i], 24, "<%lld>", (long long)i);
        attrs[i] = TD_TOKEN_ADDED;
    }
    td_tokenizer_vocab v = {.n_tokens = (int32_t)n_vocab,
                            .tokens = (const char *const *)names,
                            .attrs = attrs,
                            .pretok = TD_PRETOK_DEEPSEEK_V3,
                            .unk_id = -1,
                            .bos_id = -1,
                            .eos_id = -1,
                            .pad_id = -1,
                            .source = "placeholder tokens"};
    if (st == TD_OK) st = td_tokenizer_create(&v, out);
    for (int64_t i = 0; names && i < n_vocab; i++) td_free(names[i]);
    td_free(names);
    td_free(attrs);
    return st;
}
