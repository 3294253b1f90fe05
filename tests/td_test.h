/* A small test harness: checks that record failures and go on, fixture paths, and float comparisons.
 * A test program returns td_test_finish(): 0 when every check passed, 1 otherwise, 77 when skipped. */
#ifndef TD_TEST_H
#define TD_TEST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

extern int td_test_failures;
extern int td_test_checks;

#define TD_CHECK(cond) td_test_check((cond), __FILE__, __LINE__, #cond, NULL)
#define TD_CHECKF(cond, ...) td_test_checkf((cond), __FILE__, __LINE__, #cond, __VA_ARGS__)

bool td_test_check(bool ok, const char *file, int line, const char *expr, const char *msg);
bool td_test_checkf(bool ok, const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
int td_test_finish(void);
int td_test_skip(const char *why);

/* The shared fixtures folder (TANDEM_SHARED or ../shared). */
const char *td_test_shared(void);
/* shared/<rel> in a static buffer (valid until the next call). */
const char *td_test_fixture(const char *rel);
/* A fresh temporary directory for this test. */
const char *td_test_tmpdir(void);
/* Writes bytes to a file; false on failure. */
bool td_test_write_file(const char *path, const void *data, size_t len);

/* A byte builder for hand-made files (aborts on out of memory: tests only). */
typedef struct td_test_bytes {
    uint8_t *p;
    size_t n, cap;
} td_test_bytes;
void td_test_bytes_put(td_test_bytes *b, const void *data, size_t n);

/* Uniform floats in [-1, 1) from a seeded generator. */
uint64_t td_test_rand(uint64_t *state);
float td_test_randf(uint64_t *state);

#endif
