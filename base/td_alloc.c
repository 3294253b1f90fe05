#include "td_alloc.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_long td_alloc_budget = -1; /* < 0: no fault injection */
static atomic_long td_alloc_refused = 0;

static int td_alloc_should_fail(void)
{
    long left = atomic_load(&td_alloc_budget);
    if (left < 0) return 0;
    if (left == 0) {
        atomic_fetch_add(&td_alloc_refused, 1);
        return 1;
    }
    atomic_fetch_sub(&td_alloc_budget, 1);
    return 0;
}

void td_alloc_fail_after(long n)
{
    atomic_store(&td_alloc_budget, n);
    atomic_store(&td_alloc_refused, 0);
}

long td_alloc_failures(void) { return atomic_load(&td_alloc_refused); }

void *td_malloc(size_t size)
{
    if (td_alloc_should_fail()) return NULL;
    return malloc(size ? size : 1);
}

void *td_calloc(size_t count, size_t size)
{
    if (td_alloc_should_fail()) return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *td_realloc(void *ptr, size_t size)
{
    if (td_alloc_should_fail()) return NULL;
    return realloc(ptr, size ? size : 1);
}

void *td_malloc_aligned(size_t size, size_t align)
{
    if (td_alloc_should_fail()) return NULL;
    void *p = NULL;
    size_t rounded = (size + align - 1) / align * align;
    if (posix_memalign(&p, align, rounded ? rounded : align) != 0) return NULL;
    return p;
}

void td_free(void *ptr) { free(ptr); }

char *td_strndup(const char *s, size_t n)
{
    char *d = td_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *td_strdup(const char *s) { return td_strndup(s, strlen(s)); }

/* cJSON allocates through the same hook, so fault injection reaches the JSON parsers too. */
__attribute__((constructor)) static void td_alloc_hook_cjson(void)
{
    cJSON_Hooks hooks = {.malloc_fn = td_malloc, .free_fn = td_free};
    cJSON_InitHooks(&hooks);
}
