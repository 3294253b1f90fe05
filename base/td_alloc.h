/* td_alloc: every allocation of the library goes through here, so that tests can inject out-of-memory
 * failures (td_alloc_fail_after) and check that load and plan paths fail cleanly. */
#ifndef TD_ALLOC_H
#define TD_ALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void *td_malloc(size_t size);
void *td_calloc(size_t count, size_t size);
void *td_realloc(void *ptr, size_t size);
/* Aligned to `align` bytes (a power of two, at least sizeof(void*)); free with td_free. */
void *td_malloc_aligned(size_t size, size_t align);
void td_free(void *ptr);
char *td_strdup(const char *s);
char *td_strndup(const char *s, size_t n);

/* Test hook: the next `n` allocations succeed, later ones fail; n < 0 disables the hook. */
void td_alloc_fail_after(long n);
/* How many allocations were refused by the hook since it was last armed. */
long td_alloc_failures(void);

#ifdef __cplusplus
}
#endif

#endif
