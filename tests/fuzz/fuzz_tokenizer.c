/* libFuzzer: the tokenizer.json loader on arbitrary text (inputs starting with '{'), the GGUF vocabulary
 * loader on GGUF images (inputs starting with "GGUF"), and the encoder on arbitrary bytes otherwise. A tokenizer built
 * from plain arrays (every byte, a few merges, DeepSeek's pre-tokenizer and two added tokens) must give back the input
 * exactly for any valid UTF-8, and refuse anything else cleanly. */
#include "td_alloc.h"
#include "td_gguf.h"
#include "td_tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static td_tokenizer *td_fuzz_tokenizer(void)
{
    static td_tokenizer *t;
    if (t) return t;
    enum { N = 256 + 7 };
    static char bufs[N][16];
    const char *tokens[N];
    uint8_t attrs[N] = {0};
    for (int b = 0; b < 256; b++) {
        /* GPT-2's byte alphabet */
        int cp = b, n = 0;
        bool self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        if (!self) {
            for (int i = 0; i < b; i++) n += !((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174);
            cp = 256 + n;
        }
        if (cp < 0x80)
            bufs[b][0] = (char)cp;
        else {
            bufs[b][0] = (char)(0xC0 | (cp >> 6));
            bufs[b][1] = (char)(0x80 | (cp & 0x3F));
        }
        tokens[b] = bufs[b];
    }
    const char *extra[] = {"th", "the", "\xc4\xa0t", "\xc4\xa0th", "\xc4\xa0the", "<|s|>", "<think>"};
    for (int i = 0; i < 7; i++) tokens[256 + i] = extra[i];
    attrs[261] = TD_TOKEN_SPECIAL;
    attrs[262] = TD_TOKEN_ADDED;
    const char *merges[] = {"t h", "th e", "\xc4\xa0 t", "\xc4\xa0t h", "\xc4\xa0th e"};
    td_tokenizer_vocab v = {.n_tokens = N,
                            .tokens = tokens,
                            .attrs = attrs,
                            .n_merges = 5,
                            .merges = merges,
                            .pretok = TD_PRETOK_DEEPSEEK_V3,
                            .unk_id = -1,
                            .bos_id = 261,
                            .eos_id = -1,
                            .pad_id = -1,
                            .add_bos = true,
                            .source = "fuzz"};
    if (td_tokenizer_create(&v, &t) != TD_OK) abort();
    return t;
}

static void td_fuzz_encode(const uint8_t *data, size_t size)
{
    td_tokenizer *t = td_fuzz_tokenizer();
    td_tokens ids = {0};
    td_status st = td_tokenizer_encode(t, (const char *)data, size, false, &ids);
    if (st != TD_OK) {
        if (td_utf8_valid_prefix(data, size) == size) abort(); /* valid text must always encode */
        td_tokens_free(&ids);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    if (td_tokenizer_decode(t, ids.ids, ids.n, true, &text, &len) != TD_OK) abort();
    if (len != size || memcmp(text, data, size) != 0) abort(); /* byte-level BPE loses nothing */
    td_detok *d;
    if (td_detok_create(t, true, &d) != TD_OK) abort();
    size_t at = 0, k;
    for (int64_t i = 0; i <= ids.n; i++) {
        const char *p = i < ids.n ? td_detok_push(d, ids.ids[i], &k) : td_detok_flush(d, &k);
        if (!p || at + k > size || memcmp(p, data + at, k) != 0) abort();
        at += k;
    }
    if (at != size) abort();
    td_detok_free(d);
    td_free(text);
    td_tokens_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool gguf = size >= 4 && memcmp(data, "GGUF", 4) == 0;
    if (gguf || (size > 0 && data[0] == '{')) {
        td_tokenizer *t = NULL;
        td_gguf *g = NULL;
        td_status st = TD_E_FORMAT;
        if (!gguf)
            st = td_tokenizer_from_json_text((const char *)data, size, "fuzz.json", &t);
        else if (td_gguf_open_memory(data, size, "fuzz.gguf", &g) == TD_OK)
            st = td_tokenizer_from_gguf(g, &t);
        td_gguf_close(g);
        if (st == TD_OK) {
            td_tokens ids = {0};
            td_tokenizer_encode(t, "Hello, world! 123 <think>", 24, true, &ids);
            char *s = NULL;
            td_tokenizer_decode(t, ids.ids, ids.n, false, &s, NULL);
            td_free(s);
            td_tokens_free(&ids);
            td_tokenizer_free(t);
        }
        return 0;
    }
    td_fuzz_encode(data, size);
    return 0;
}
