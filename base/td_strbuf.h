/* td_strbuf: a growable NUL-terminated byte string. An allocation failure sets `oom` and makes later
 * appends no-ops, so a caller checks once at the end instead of after every append. */
#ifndef TD_STRBUF_H
#define TD_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct td_strbuf {
    char *p;   /* NULL until the first append */
    size_t n;  /* bytes in use, excluding the NUL */
    size_t cap;
    bool oom;
} td_strbuf;

void td_strbuf_put(td_strbuf *b, const char *s, size_t n);
void td_strbuf_puts(td_strbuf *b, const char *s);
/* Empties the string, keeping its memory, and clears oom. */
void td_strbuf_clear(td_strbuf *b);
void td_strbuf_free(td_strbuf *b);

#endif
