/* BPE of one pre-tokenized piece: start from one symbol per byte, then merge the adjacent pair of the
 * lowest rank (the leftmost one on a tie) until no pair has a merge. tokenizers does this with a heap
 * holding stale entries; a stale entry that still names the pair at its position names the very same
 * pair (the merged text fixes the span), so "lowest rank, then leftmost" is its exact rule. Short pieces
 * use a plain scan, long ones (a run of 100k spaces) a heap, so no input is quadratic. */
#include "td_alloc.h"
#include "td_tokenizer_impl.h"

#include <limits.h>
#include <string.h>

#define TD_BPE_SCAN_MAX 48 /* pieces up to this many symbols use the scan */

typedef struct td_bpe_entry {
    int32_t rank, pos, id;
} td_bpe_entry;

struct td_bpe_scratch {
    size_t cap;
    int32_t *sym;    /* [cap] symbol ids */
    int32_t *rank;   /* [cap] rank of the pair starting at i (INT_MAX: none) */
    int32_t *merged; /* [cap] the token that pair makes */
    int32_t *next, *prev;
    td_bpe_entry *heap;
    size_t heap_n, heap_cap;
    char *bl; /* byte-level text of a piece, for ignore_merges */
    size_t bl_cap;
};

td_status td_bpe_scratch_create(td_bpe_scratch **out)
{
    *out = td_calloc(1, sizeof **out);
    return *out ? TD_OK : td_fail(TD_E_NOMEM, "out of memory");
}

void td_bpe_scratch_free(td_bpe_scratch *s)
{
    if (!s) return;
    td_free(s->sym);
    td_free(s->rank);
    td_free(s->merged);
    td_free(s->next);
    td_free(s->prev);
    td_free(s->heap);
    td_free(s->bl);
    td_free(s);
}

static td_status td_bpe_reserve(td_bpe_scratch *s, size_t n)
{
    if (n <= s->cap) return TD_OK;
    size_t cap = n < 256 ? 256 : n + n / 2;
    int32_t **arrays[] = {&s->sym, &s->rank, &s->merged, &s->next, &s->prev};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        int32_t *p = td_realloc(*arrays[i], cap * sizeof(int32_t));
        if (!p) return td_fail(TD_E_NOMEM, "out of memory for a piece of %zu bytes", n);
        *arrays[i] = p;
    }
    s->cap = cap;
    return TD_OK;
}

static inline bool td_merge_find(const td_mergemap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    for (uint32_t i = (uint32_t)(h >> 32) & m->mask;; i = (i + 1) & m->mask) {
        uint64_t k = m->keys[i];
        if (k == key) {
            *rank = m->rank[i];
            *id = m->id[i];
            return true;
        }
        if (k == 0) return false;
    }
}

static void td_pair_at(const td_tokenizer *t, td_bpe_scratch *s, int i, int32_t right)
{
    if (!td_merge_find(&t->merges, s->sym[i], right, &s->rank[i], &s->merged[i])) s->rank[i] = INT_MAX;
}

/* Quadratic in the symbol count, but with no bookkeeping: the fast path for ordinary words. */
static int td_bpe_scan(const td_tokenizer *t, td_bpe_scratch *s, int n)
{
    for (int i = 0; i + 1 < n; i++) td_pair_at(t, s, i, s->sym[i + 1]);
    while (n > 1) {
        int best = -1;
        int32_t best_rank = INT_MAX;
        for (int i = 0; i + 1 < n; i++)
            if (s->rank[i] < best_rank) best_rank = s->rank[i], best = i;
        if (best < 0) break;
        s->sym[best] = s->merged[best];
        memmove(s->sym + best + 1, s->sym + best + 2, (size_t)(n - best - 2) * sizeof(int32_t));
        memmove(s->rank + best + 1, s->rank + best + 2, (size_t)(n - best - 2) * sizeof(int32_t));
        memmove(s->merged + best + 1, s->merged + best + 2, (size_t)(n - best - 2) * sizeof(int32_t));
        n--;
        if (best > 0) td_pair_at(t, s, best - 1, s->sym[best]);
        if (best + 1 < n) td_pair_at(t, s, best, s->sym[best + 1]);
    }
    return n;
}

/* ------------------------------------------------------------------ heap path */

static bool td_entry_less(td_bpe_entry a, td_bpe_entry b)
{
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static td_status td_heap_push(td_bpe_scratch *s, td_bpe_entry e)
{
    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 256;
        td_bpe_entry *p = td_realloc(s->heap, cap * sizeof *p);
        if (!p) return td_fail(TD_E_NOMEM, "out of memory");
        s->heap = p;
        s->heap_cap = cap;
    }
    size_t i = s->heap_n++;
    while (i > 0 && td_entry_less(e, s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = e;
    return TD_OK;
}

static td_bpe_entry td_heap_pop(td_bpe_scratch *s)
{
    td_bpe_entry top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->heap_n) break;
        if (c + 1 < s->heap_n && td_entry_less(s->heap[c + 1], s->heap[c])) c++;
        if (!td_entry_less(s->heap[c], last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->heap_n) s->heap[i] = last;
    return top;
}

static td_status td_heap_add_pair(const td_tokenizer *t, td_bpe_scratch *s, int32_t pos)
{
    int32_t nx = s->next[pos], rank, id;
    if (nx < 0 || !td_merge_find(&t->merges, s->sym[pos], s->sym[nx], &rank, &id)) return TD_OK;
    return td_heap_push(s, (td_bpe_entry){rank, pos, id});
}

/* Symbols stay in place; a merged-away symbol gets sym = -1. Compacts the survivors into sym[0..). */
static td_status td_bpe_heap(const td_tokenizer *t, td_bpe_scratch *s, int n, int *n_out)
{
    s->heap_n = 0;
    for (int i = 0; i < n; i++) {
        s->prev[i] = i - 1;
        s->next[i] = i + 1 < n ? i + 1 : -1;
    }
    for (int i = 0; i + 1 < n; i++) TD_TRY(td_heap_add_pair(t, s, i));
    while (s->heap_n) {
        td_bpe_entry e = td_heap_pop(s);
        int32_t nx = s->next[e.pos], rank, id;
        if (s->sym[e.pos] < 0 || nx < 0) continue;
        if (!td_merge_find(&t->merges, s->sym[e.pos], s->sym[nx], &rank, &id) || id != e.id) continue; /* stale */
        s->sym[e.pos] = id;
        s->sym[nx] = -1;
        s->next[e.pos] = s->next[nx];
        if (s->next[nx] >= 0) s->prev[s->next[nx]] = e.pos;
        if (s->prev[e.pos] >= 0) TD_TRY(td_heap_add_pair(t, s, s->prev[e.pos]));
        TD_TRY(td_heap_add_pair(t, s, e.pos));
    }
    int k = 0;
    for (int i = 0; i < n; i++)
        if (s->sym[i] >= 0) s->sym[k++] = s->sym[i];
    *n_out = k;
    return TD_OK;
}

/* ------------------------------------------------------------------ one piece */

/* With ignore_merges, a piece that is a vocabulary entry as a whole is that entry. */
static td_status td_bpe_whole(const td_tokenizer *t, td_bpe_scratch *s, const char *piece, size_t n, int32_t *id)
{
    *id = -1;
    if (2 * n > s->bl_cap) {
        char *p = td_realloc(s->bl, 2 * n);
        if (!p) return td_fail(TD_E_NOMEM, "out of memory");
        s->bl = p;
        s->bl_cap = 2 * n;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = td_bytelevel_char((uint8_t)piece[i]);
        if (cp < 0x80)
            s->bl[o++] = (char)cp;
        else {
            s->bl[o++] = (char)(0xC0 | (cp >> 6));
            s->bl[o++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    int32_t v = td_strmap_get(t, &t->vocab, s->bl, o);
    if (v >= 0 && t->attr[v] == TD_TOKEN_NORMAL) *id = v;
    return TD_OK;
}

static td_status td_bpe_run(const td_tokenizer *t, td_bpe_scratch *s, const char *piece, size_t n, int force,
                            td_tokens *out)
{
    if (n > (size_t)INT_MAX / 2) return td_fail(TD_E_ARG, "a piece of %zu bytes is too long to tokenize", n);
    if (t->ignore_merges) {
        int32_t id;
        TD_TRY(td_bpe_whole(t, s, piece, n, &id));
        if (id >= 0) return td_tokens_push(out, id);
    }
    TD_TRY(td_bpe_reserve(s, n));
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[(uint8_t)piece[i]];
        if (id < 0) id = t->unk_id; /* -1: the byte is dropped, as tokenizers does without an unk token */
        if (id >= 0) s->sym[k++] = id;
    }
    bool heap = force ? force > 0 : k > TD_BPE_SCAN_MAX;
    if (heap)
        TD_TRY(td_bpe_heap(t, s, k, &k));
    else
        k = td_bpe_scan(t, s, k);
    for (int i = 0; i < k; i++) TD_TRY(td_tokens_push(out, s->sym[i]));
    return TD_OK;
}

td_status td_bpe_encode_piece(const td_tokenizer *t, td_bpe_scratch *s, const char *piece, size_t n, td_tokens *out)
{
    return td_bpe_run(t, s, piece, n, 0, out);
}

td_status td_bpe_encode_piece_with(const td_tokenizer *t, const char *piece, size_t n, bool heap, td_tokens *out)
{
    td_bpe_scratch *s;
    TD_TRY(td_bpe_scratch_create(&s));
    td_status st = td_bpe_run(t, s, piece, n, heap ? 1 : -1, out);
    td_bpe_scratch_free(s);
    return st;
}
