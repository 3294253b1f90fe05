#include "td_strbuf.h"

#include "td_alloc.h"

#include <string.h>

void td_strbuf_put(td_strbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2 < 256 ? 256 : (b->n + n + 1) * 2;
        char *p = td_realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void td_strbuf_puts(td_strbuf *b, const char *s) { td_strbuf_put(b, s, strlen(s)); }

void td_strbuf_clear(td_strbuf *b)
{
    b->n = 0;
    b->oom = false;
    if (b->p) b->p[0] = '\0';
}

void td_strbuf_free(td_strbuf *b)
{
    td_free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    b->oom = false;
}
