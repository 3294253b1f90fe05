#include "td_test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int td_test_failures = 0;
int td_test_checks = 0;

bool td_test_check(bool ok, const char *file, int line, const char *expr, const char *msg)
{
    td_test_checks++;
    if (!ok) {
        td_test_failures++;
        fprintf(stderr, "FAIL %s:%d: %s%s%s\n", file, line, expr, msg ? " -- " : "", msg ? msg : "");
    }
    return ok;
}

bool td_test_checkf(bool ok, const char *file, int line, const char *expr, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return td_test_check(ok, file, line, expr, msg);
}

int td_test_finish(void)
{
    fprintf(stderr, "%d checks, %d failed\n", td_test_checks, td_test_failures);
    return td_test_failures ? 1 : 0;
}

int td_test_skip(const char *why)
{
    fprintf(stderr, "SKIP: %s\n", why);
    return 77;
}

const char *td_test_shared(void)
{
    const char *e = getenv("TANDEM_SHARED");
    return e && *e ? e : "../shared";
}

const char *td_test_fixture(const char *rel)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/fixtures/%s", td_test_shared(), rel);
    return buf;
}

const char *td_test_tmpdir(void)
{
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/tandem-test-XXXXXX");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    return dir;
}

bool td_test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

uint64_t td_test_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float td_test_randf(uint64_t *s) { return (float)((double)(td_test_rand(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

void td_test_bytes_put(td_test_bytes *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}
