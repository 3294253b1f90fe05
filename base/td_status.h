/* td_status: two-tier errors.
 * Runtime outcomes (bad files, absurd values, out of memory) return a td_status and leave a message that
 * says what failed, where, and how to fix it; td_errmsg() reads it. Invariants use TD_ASSERT, which aborts. */
#ifndef TD_STATUS_H
#define TD_STATUS_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum td_status {
    TD_OK = 0,
    TD_E_IO = 1,          /* a file could not be opened, read or mapped */
    TD_E_FORMAT = 2,      /* input is malformed, truncated or inconsistent */
    TD_E_UNSUPPORTED = 3, /* valid input that tandem does not handle (a quant type, an architecture) */
    TD_E_ARG = 4,         /* a value from the caller or the command line is out of range */
    TD_E_NOMEM = 5,       /* an allocation failed, or a plan does not fit the memory it was given */
    TD_E_NOT_FOUND = 6,   /* a required tensor, key or file is missing */
    TD_E_DEVICE = 7,      /* the GPU or its driver failed */
    TD_E_CANCELLED = 8,   /* the user interrupted the work */
    TD_STATUS_COUNT
} td_status;

#if defined(__GNUC__)
#define TD_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define TD_PRINTF(fmt_idx, arg_idx)
#endif

/* Records a message for this thread and returns `st`, so callers write `return td_fail(...)`. */
td_status td_fail(td_status st, const char *fmt, ...) TD_PRINTF(2, 3);
/* Prepends "<context>: " to the current message, to say where a lower-level failure happened. */
void td_err_context(const char *fmt, ...) TD_PRINTF(1, 2);
/* The last message recorded on this thread ("" if none). */
const char *td_errmsg(void);
void td_err_clear(void);
const char *td_status_name(td_status st);

/* Invariants: a broken one is a bug in tandem, never a property of the input. */
void td_assert_fail(const char *file, int line, const char *expr);
#define TD_ASSERT(cond)                                                                                \
    do {                                                                                               \
        if (!(cond)) td_assert_fail(__FILE__, __LINE__, #cond);                                        \
    } while (0)

/* Propagates a failure unchanged. */
#define TD_TRY(expr)                                                                                   \
    do {                                                                                               \
        td_status td_try_st_ = (expr);                                                                 \
        if (td_try_st_ != TD_OK) return td_try_st_;                                                    \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
