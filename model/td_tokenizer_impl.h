/* Internals of td_tokenizer shared by its files: the tables built at creation and the pre-tokenizer. */
#ifndef TD_TOKENIZER_IMPL_H
#define TD_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include "td_tokenizer.h"

#include <pcre2.h>

#define TD_TOK_MAX_SPLITS 8

/* Open-addressing map from a byte string to a token id (the strings live in the tokenizer's arena). */
typedef struct td_strmap {
    int32_t *slots; /* [cap] token id, -1 empty */
    uint32_t mask;  /* cap - 1 */
} td_strmap;

/* Open-addressing map from a pair of ids to the merge that joins them. */
typedef struct td_mergemap {
    uint64_t *keys; /* [cap] (left << 32 | right) + 1, 0 empty */
    int32_t *rank;  /* [cap] */
    int32_t *id;    /* [cap] the merged token */
    uint32_t mask;
} td_mergemap;

typedef struct td_pretok {
    int n;
    pcre2_code *re[TD_TOK_MAX_SPLITS];
    bool jit[TD_TOK_MAX_SPLITS];
} td_pretok;

struct td_tokenizer {
    int32_t n_tokens;
    char *text;         /* arena: every token's stored text, then its decoded bytes */
    uint64_t *text_off; /* [n_tokens] stored text */
    uint32_t *text_len;
    uint64_t *dec_off; /* [n_tokens] decoded bytes */
    uint32_t *dec_len;
    uint8_t *attr;        /* [n_tokens] td_token_attr */
    uint8_t *added_flags; /* [n_tokens] */
    size_t max_dec_len;
    td_strmap vocab;          /* stored text -> id, every token */
    td_strmap added;          /* literal text -> id, added tokens only */
    uint8_t added_first[256]; /* which bytes can start an added token */
    uint32_t *added_lens;     /* distinct added-token lengths, longest first */
    int n_added_lens;
    bool any_normalized_added;
    int32_t byte_id[256]; /* the token of each single byte (-1: none) */
    td_mergemap merges;
    td_pretok pretok;
    bool ignore_merges;
    int32_t unk_id, bos_id, eos_id, pad_id;
    bool add_bos, add_eos;
    char *chat_template;
    char *source;
};

uint64_t td_tok_hash(const char *s, size_t n);
/* -1 when absent. */
int32_t td_strmap_get(const td_tokenizer *t, const td_strmap *m, const char *s, size_t n);
static inline const char *td_tok_text(const td_tokenizer *t, int32_t id)
{
    return t->text + t->text_off[id];
}

/* Byte-level alphabet (GPT-2's bytes_to_unicode): each byte's code point, and back (-1: not in it). */
uint32_t td_bytelevel_char(uint8_t b);
int td_bytelevel_byte(uint32_t cp);

/* Pre-tokenizer: compile the patterns (translating \s and \S to Unicode White_Space as Oniguruma has
 * them), and cut a stretch of text into pieces, calling `piece` for each in order. */
td_status td_pretok_compile(td_pretok *p, const char *const *patterns, int n, const char *source);
void td_pretok_free(td_pretok *p);
typedef td_status (*td_piece_fn)(void *ctx, const char *s, size_t n);
typedef struct td_pretok_run td_pretok_run;
td_status td_pretok_run_create(const td_pretok *p, td_pretok_run **out);
void td_pretok_run_free(td_pretok_run *r);
td_status td_pretok_split(const td_pretok *p, td_pretok_run *r, const char *s, size_t n, td_piece_fn piece, void *ctx);

/* The DeepSeek-V3 patterns (as in its tokenizer.json). */
extern const char *const td_pretok_deepseek_v3[3];

/* BPE of one piece (raw bytes) appended to out; scratch grows as needed. */
typedef struct td_bpe_scratch td_bpe_scratch;
td_status td_bpe_scratch_create(td_bpe_scratch **out);
void td_bpe_scratch_free(td_bpe_scratch *s);
td_status td_bpe_encode_piece(const td_tokenizer *t, td_bpe_scratch *s, const char *piece, size_t n, td_tokens *out);
/* For tests: BPE of one piece forced through the scan (heap false) or the heap (true). */
td_status td_bpe_encode_piece_with(const td_tokenizer *t, const char *piece, size_t n, bool heap, td_tokens *out);

struct td_model;
td_status td_tokenizer_from_model_gguf(const struct td_model *m, td_tokenizer **out);

#endif
