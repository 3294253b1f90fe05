#include "td_status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TD_ERRMSG_CAP = 2048 };
static _Thread_local char td_errbuf[TD_ERRMSG_CAP];

td_status td_fail(td_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(td_errbuf, sizeof td_errbuf, fmt, ap);
    va_end(ap);
    return st;
}

void td_err_context(const char *fmt, ...)
{
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* a message that starts with what the context ends with ("--mtp-from x" before "x: cannot open")
     * names it once: "--mtp-from x: cannot open" */
    const char *space = strrchr(prefix, ' '), *tail = space ? space + 1 : prefix;
    size_t tlen = strlen(tail), plen = strlen(prefix), sep = 2;
    if (tlen && strncmp(td_errbuf, tail, tlen) == 0 && td_errbuf[tlen] == ':') {
        plen = (size_t)(tail - prefix);
        sep = 0;
    }
    /* shift the message right and put the context in front; overlong messages lose their tail */
    size_t mlen = strlen(td_errbuf);
    if (plen + sep >= TD_ERRMSG_CAP) plen = TD_ERRMSG_CAP - 1 - sep;
    if (plen + sep + mlen >= TD_ERRMSG_CAP) mlen = TD_ERRMSG_CAP - 1 - sep - plen;
    memmove(td_errbuf + plen + sep, td_errbuf, mlen);
    memcpy(td_errbuf, prefix, plen);
    memcpy(td_errbuf + plen, ": ", sep);
    td_errbuf[plen + sep + mlen] = '\0';
}

const char *td_errmsg(void) { return td_errbuf; }

void td_err_clear(void) { td_errbuf[0] = '\0'; }

const char *td_status_name(td_status st)
{
    static const char *const names[TD_STATUS_COUNT] = {
        [TD_OK] = "ok",
        [TD_E_IO] = "I/O error",
        [TD_E_FORMAT] = "bad format",
        [TD_E_UNSUPPORTED] = "unsupported",
        [TD_E_ARG] = "bad argument",
        [TD_E_NOMEM] = "out of memory",
        [TD_E_NOT_FOUND] = "not found",
        [TD_E_DEVICE] = "device error",
        [TD_E_CANCELLED] = "cancelled",
    };
    return (st >= 0 && st < TD_STATUS_COUNT) ? names[st] : "unknown status";
}

void td_assert_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "tandem: internal error at %s:%d: assertion `%s` failed (please report this)\n", file,
            line, expr);
    abort();
}
