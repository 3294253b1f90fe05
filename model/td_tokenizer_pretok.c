/* The pre-tokenizer: a sequence of regex splits ("isolated": matches and the gaps between them both
 * become pieces), each applied to every piece the previous one produced, run with PCRE2 (UTF + UCP, JIT
 * when the library has it). tokenizers runs these patterns with Oniguruma, whose \s is Unicode's
 * White_Space; PCRE2's \s also takes U+180E, so \s and \S are spelled out before compiling. */
#include "td_alloc.h"
#include "td_strbuf.h"
#include "td_tokenizer_impl.h"

#include <stdio.h>
#include <string.h>

/* DeepSeek-V3's three splits, as its tokenizer.json writes them: runs of up to three digits; runs of
 * CJK ideographs, hiragana and katakana; then the word regex. */
const char *const td_pretok_deepseek_v3[3] = {
    "\\p{N}{1,3}",
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
};

#define TD_WHITE_SPACE                                                                                                 \
    "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* Rewrites \s and \S (outside character classes, and \s inside them) as White_Space classes. */
static char *td_pattern_translate(const char *pat)
{
    td_strbuf b = {0};
    bool in_class = false;
    size_t n = strlen(pat);
    td_strbuf_put(&b, "", 0);
    for (size_t i = 0; i < n; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < n) {
            char e = pat[i + 1];
            if (e == 's' && !in_class)
                td_strbuf_puts(&b, "[" TD_WHITE_SPACE "]");
            else if (e == 'S' && !in_class)
                td_strbuf_puts(&b, "[^" TD_WHITE_SPACE "]");
            else if (e == 's')
                td_strbuf_puts(&b, TD_WHITE_SPACE);
            else if (e == 'Q') {
                const char *end = strstr(pat + i + 2, "\\E");
                size_t stop = end ? (size_t)(end - pat) + 2 : n;
                td_strbuf_put(&b, pat + i, stop - i);
                i = stop - 1;
                continue;
            } else
                td_strbuf_put(&b, pat + i, 2);
            i++;
        } else if (!in_class && c == '[') {
            in_class = true;
            td_strbuf_put(&b, pat + i, 1);
            if (i + 1 < n && pat[i + 1] == '^') td_strbuf_put(&b, pat + ++i, 1);
            if (i + 1 < n && pat[i + 1] == ']') td_strbuf_put(&b, pat + ++i, 1); /* a leading ] is literal */
        } else if (in_class && c == '[' && i + 1 < n && pat[i + 1] == ':') {
            const char *end = strstr(pat + i + 2, ":]");
            size_t stop = end ? (size_t)(end - pat) + 2 : i + 1;
            td_strbuf_put(&b, pat + i, stop - i);
            i = stop - 1;
        } else {
            if (in_class && c == ']') in_class = false;
            td_strbuf_put(&b, pat + i, 1);
        }
    }
    if (b.oom) {
        td_free(b.p);
        return NULL;
    }
    return b.p;
}

td_status td_pretok_compile(td_pretok *p, const char *const *patterns, int n, const char *source)
{
    memset(p, 0, sizeof *p);
    if (n < 0 || n > TD_TOK_MAX_SPLITS)
        return td_fail(TD_E_UNSUPPORTED, "%s: %d pre-tokenizer splits (tandem handles up to %d)", source, n,
                       TD_TOK_MAX_SPLITS);
    for (int i = 0; i < n; i++) {
        if (!patterns[i]) return td_fail(TD_E_FORMAT, "%s: pre-tokenizer split %d has no pattern", source, i);
        char *pat = td_pattern_translate(patterns[i]);
        if (!pat) return td_fail(TD_E_NOMEM, "out of memory");
        int err;
        PCRE2_SIZE off;
        p->re[i] = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
        td_free(pat);
        if (!p->re[i]) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            td_pretok_free(p);
            return td_fail(TD_E_FORMAT, "%s: pre-tokenizer split %d: the regex '%.200s' does not compile: %s", source,
                           i, patterns[i], (const char *)msg);
        }
        p->n = i + 1;
        p->jit[i] = pcre2_jit_compile(p->re[i], PCRE2_JIT_COMPLETE) == 0;
    }
    p->n = n;
    return TD_OK;
}

void td_pretok_free(td_pretok *p)
{
    for (int i = 0; i < p->n; i++) pcre2_code_free(p->re[i]);
    memset(p, 0, sizeof *p);
}

/* Per-call matching state: the match data of each pattern and a JIT stack big enough for long pieces. */
struct td_pretok_run {
    pcre2_match_data *md[TD_TOK_MAX_SPLITS];
    pcre2_match_context *mctx;
    pcre2_jit_stack *stack;
};

td_status td_pretok_run_create(const td_pretok *p, td_pretok_run **out)
{
    td_pretok_run *r = td_calloc(1, sizeof *r);
    if (!r) return td_fail(TD_E_NOMEM, "out of memory");
    *out = r;
    bool ok = true;
    for (int i = 0; i < p->n; i++) ok &= (r->md[i] = pcre2_match_data_create_from_pattern(p->re[i], NULL)) != NULL;
    r->mctx = pcre2_match_context_create(NULL);
    r->stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!ok || !r->mctx) {
        td_pretok_run_free(r);
        *out = NULL;
        return td_fail(TD_E_NOMEM, "out of memory for regex matching");
    }
    if (r->stack) pcre2_jit_stack_assign(r->mctx, NULL, r->stack);
    return TD_OK;
}

void td_pretok_run_free(td_pretok_run *r)
{
    if (!r) return;
    for (int i = 0; i < TD_TOK_MAX_SPLITS; i++) pcre2_match_data_free(r->md[i]);
    pcre2_match_context_free(r->mctx);
    pcre2_jit_stack_free(r->stack);
    td_free(r);
}

static size_t td_utf8_char_len(uint8_t c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

static td_status td_split_level(const td_pretok *p, td_pretok_run *r, int level, const char *s, size_t n,
                                td_piece_fn piece, void *ctx)
{
    if (n == 0) return TD_OK;
    if (level == p->n) return piece(ctx, s, n);
    pcre2_code *re = p->re[level];
    pcre2_match_data *md = r->md[level];
    size_t start = 0, pos = 0;
    while (pos < n) {
        int rc = p->jit[level] ? pcre2_jit_match(re, (PCRE2_SPTR)s, n, pos, 0, md, r->mctx)
                               : pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, r->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return td_fail(TD_E_UNSUPPORTED, "pre-tokenizer split %d failed on a piece of %zu bytes: %s", level, n,
                           (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* an empty match cuts nothing: look again one character later */
            pos = ms + td_utf8_char_len((uint8_t)s[ms < n ? ms : n - 1]);
            continue;
        }
        TD_TRY(td_split_level(p, r, level + 1, s + start, ms - start, piece, ctx));
        TD_TRY(td_split_level(p, r, level + 1, s + ms, me - ms, piece, ctx));
        start = pos = me;
    }
    return td_split_level(p, r, level + 1, s + start, n - start, piece, ctx);
}

td_status td_pretok_split(const td_pretok *p, td_pretok_run *r, const char *s, size_t n, td_piece_fn piece, void *ctx)
{
    return td_split_level(p, r, 0, s, n, piece, ctx);
}
