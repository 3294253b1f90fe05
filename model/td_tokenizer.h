/* td_tokenizer: DeepSeek-V3's byte-level BPE, exactly as Hugging Face `tokenizers` runs it.
 *
 * Encoding: added tokens (special or not) are split out of the raw text first (leftmost-longest match);
 * every other stretch goes through the pre-tokenizer, a sequence of regex splits (PCRE2, UTF + UCP) that
 * each cut every piece of the previous one into matches and the gaps between them; each final piece is
 * mapped to its byte-level symbols and merged by rank.
 * Decoding: tokens map back to their bytes, and the bytes to text with invalid UTF-8 replaced by U+FFFD;
 * the streaming decoder never emits half a character.
 *
 * The core is built from plain arrays (td_tokenizer_vocab), so each file format is a thin loader:
 * tokenizer.json (an HF directory) and GGUF metadata (tokenizer.ggml.*). */
#ifndef TD_TOKENIZER_H
#define TD_TOKENIZER_H

#include "td_status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct td_tokenizer td_tokenizer;

typedef enum td_token_attr {
    TD_TOKEN_NORMAL = 0,  /* a BPE vocabulary entry, stored in its byte-level form ("Ġthe") */
    TD_TOKEN_SPECIAL = 1, /* an added token marked special (control): matched in text, hidden on request */
    TD_TOKEN_ADDED = 2,   /* an added token that is not special: matched in text, always shown */
    TD_TOKEN_UNUSED = 3,  /* a hole in the id space: never produced, decodes to nothing */
    TD_TOKEN_ATTR_COUNT
} td_token_attr;

/* Flags of an added token (tokenizer.json "added_tokens" fields). */
enum {
    TD_ADDED_LSTRIP = 1,     /* the match swallows whitespace on its left */
    TD_ADDED_RSTRIP = 2,     /* ... and on its right */
    TD_ADDED_NORMALIZED = 4, /* matched in a second pass, after the non-normalized ones */
};

typedef enum td_pretok_kind {
    TD_PRETOK_DEEPSEEK_V3 = 0, /* \p{N}{1,3} | CJK runs | the V3 word regex, then ByteLevel */
    TD_PRETOK_CUSTOM = 1,      /* the split patterns given in td_tokenizer_vocab.split_patterns */
    TD_PRETOK_KIND_COUNT
} td_pretok_kind;

/* Everything a tokenizer is made of, as plain arrays (borrowed: td_tokenizer_create copies what it keeps). */
typedef struct td_tokenizer_vocab {
    int32_t n_tokens;
    const char *const *tokens;  /* [n_tokens] byte-level text of NORMAL tokens, literal text of added ones;
                                   NULL for a hole */
    const uint32_t *token_lens; /* [n_tokens] byte lengths, or NULL when the strings end in NUL */
    const uint8_t *attrs;       /* [n_tokens] td_token_attr, or NULL (all NORMAL) */
    const uint8_t *added_flags; /* [n_tokens] TD_ADDED_* for added tokens, or NULL (none) */
    int32_t n_merges;
    const char *const *merges;  /* [n_merges] "left right"; the rank of a merge is its index */
    const uint32_t *merge_lens; /* [n_merges] byte lengths, or NULL when NUL-terminated */
    td_pretok_kind pretok;
    int n_split_patterns; /* TD_PRETOK_CUSTOM: regexes applied in order, each "isolated" */
    const char *const *split_patterns;
    bool ignore_merges;             /* a piece that is itself a vocabulary entry is not merged (BPE option) */
    int32_t unk_id;                 /* -1: bytes without a token are dropped (as tokenizers does) */
    int32_t bos_id, eos_id, pad_id; /* -1 when unknown */
    bool add_bos, add_eos;          /* what "add special tokens" means for this tokenizer */
    const char *chat_template;      /* Jinja text from the file, kept for template detection (may be NULL) */
    const char *source;             /* file name, for messages */
} td_tokenizer_vocab;

/* The pre-tokenizer name of GGUF's tokenizer.ggml.pre -> kind; false if tandem does not know it. */
bool td_pretok_from_name(const char *name, td_pretok_kind *out);

td_status td_tokenizer_create(const td_tokenizer_vocab *v, td_tokenizer **out);
void td_tokenizer_free(td_tokenizer *t);

/* tokenizer.json: a file, or an HF directory that holds one (tokenizer_config.json beside it supplies
 * bos/eos and the chat template when present). */
td_status td_tokenizer_load_json(const char *path, td_tokenizer **out);
/* The same from text already in memory (source is for messages). */
td_status td_tokenizer_from_json_text(const char *text, size_t len, const char *source, td_tokenizer **out);
/* The vocabulary embedded in a GGUF file (tokenizer.ggml.*), or in one already open. */
td_status td_tokenizer_load_gguf(const char *path, td_tokenizer **out);
struct td_gguf;
td_status td_tokenizer_from_gguf(const struct td_gguf *g, td_tokenizer **out);
/* Any of: tokenizer.json, an HF directory, a .gguf file (its embedded vocabulary). */
td_status td_tokenizer_load(const char *path, td_tokenizer **out);
/* The tokenizer of an opened model: tokenizer.json beside config.json (HF), or the GGUF's metadata.
 * TD_E_NOT_FOUND, with a message saying where it looked, when the model has none. */
struct td_model;
td_status td_tokenizer_for_model(const struct td_model *m, td_tokenizer **out);

/* A stand-in for models without a tokenizer: id i is the added token "<i>". */
td_status td_tokenizer_placeholder(int64_t n_vocab, td_tokenizer **out);

int32_t td_tokenizer_n_tokens(const td_tokenizer *t);
int32_t td_tokenizer_bos(const td_tokenizer *t); /* -1 when none */
int32_t td_tokenizer_eos(const td_tokenizer *t);
td_token_attr td_tokenizer_attr(const td_tokenizer *t, int32_t id);
/* The id of the token whose stored text is exactly `text` (added tokens by content, normal tokens in
 * byte-level form), or -1. */
int32_t td_tokenizer_find(const td_tokenizer *t, const char *text);
/* The bytes a token decodes to (not NUL-terminated); NULL for a bad id. */
const char *td_tokenizer_token_bytes(const td_tokenizer *t, int32_t id, size_t *len);
/* The longest td_tokenizer_token_bytes, for sizing buffers. */
size_t td_tokenizer_max_token_bytes(const td_tokenizer *t);
const char *td_tokenizer_chat_template(const td_tokenizer *t); /* NULL when the file had none */
const char *td_tokenizer_source(const td_tokenizer *t);

/* A growable list of token ids. */
typedef struct td_tokens {
    int32_t *ids;
    int64_t n, cap;
} td_tokens;
td_status td_tokens_push(td_tokens *v, int32_t id);
void td_tokens_free(td_tokens *v);

/* Appends the ids of text[0..len) to out. The text must be valid UTF-8 (an error names the first bad
 * byte). add_special: BOS (and EOS) as the tokenizer's post-processing defines them. */
td_status td_tokenizer_encode(const td_tokenizer *t, const char *text, size_t len, bool add_special, td_tokens *out);

/* The text of n ids (NUL-terminated, td_free it), invalid UTF-8 replaced by U+FFFD as tokenizers does.
 * show_special false hides TD_TOKEN_SPECIAL tokens. An id outside the vocabulary is an error. */
td_status td_tokenizer_decode(const td_tokenizer *t, const int32_t *ids, int64_t n, bool show_special, char **out,
                              size_t *out_len);

/* Checks that id is a token of t; the error names the id and the vocabulary size. */
td_status td_tokenizer_check_id(const td_tokenizer *t, int64_t id);

/* Streaming decoder: feed ids one at a time, get the text that is complete so far. A character split
 * across tokens is held back until its last byte arrives. Sized at creation: pushing allocates nothing. */
typedef struct td_detok td_detok;
td_status td_detok_create(const td_tokenizer *t, bool show_special, td_detok **out);
void td_detok_free(td_detok *d);
/* The text this token completes (possibly empty); valid until the next call. A bad id gives NULL. */
const char *td_detok_push(td_detok *d, int32_t id, size_t *len);
/* Whatever is still held back (an unfinished character becomes U+FFFD); the decoder is then empty. */
const char *td_detok_flush(td_detok *d, size_t *len);
void td_detok_reset(td_detok *d);
void td_detok_show_special(td_detok *d, bool show);

/* Replaces invalid UTF-8 in src[0..n) by U+FFFD (maximal subparts, as Rust's from_utf8_lossy) into dst,
 * which holds at least 3*n bytes; returns the bytes written. */
size_t td_utf8_lossy(const uint8_t *src, size_t n, char *dst);
/* Length of the valid UTF-8 prefix of s[0..n) (== n when all valid). */
size_t td_utf8_valid_prefix(const uint8_t *s, size_t n);

#endif
