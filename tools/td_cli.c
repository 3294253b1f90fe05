#include "td_cli.h"

#include "td_topo.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void td_args_init(td_args *a, const char *cmd, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->argc = argc;
    a->argv = argv;
    a->i = 1;
    a->cmd = cmd;
}

bool td_args_next(td_args *a)
{
    if (a->i >= a->argc) return false;
    const char *s = a->argv[a->i++];
    a->inline_value = NULL;
    const char *eq = strncmp(s, "--", 2) == 0 ? strchr(s, '=') : NULL;
    if (eq && (size_t)(eq - s) < sizeof a->opt_buf) {
        memcpy(a->opt_buf, s, (size_t)(eq - s));
        a->opt_buf[eq - s] = '\0';
        a->opt = a->opt_buf;
        a->inline_value = eq + 1;
    } else {
        a->opt = s;
    }
    return true;
}

bool td_args_is(const td_args *a, const char *name) { return strcmp(a->opt, name) == 0; }

const char *td_args_value(td_args *a)
{
    if (a->inline_value) return a->inline_value;
    if (a->i >= a->argc) {
        fprintf(stderr, "tandem %s: %s needs a value\n", a->cmd, a->opt);
        return NULL;
    }
    return a->argv[a->i++];
}

int td_args_unknown(const td_args *a)
{
    fprintf(stderr, "tandem %s: unknown option '%s' (see tandem %s --help)\n", a->cmd, a->opt, a->cmd);
    return 2;
}

bool td_parse_i64(const td_args *a, const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) {
        fprintf(stderr, "tandem %s: %s: '%s' is not an integer\n", a->cmd, a->opt, s);
        return false;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "tandem %s: %s: %lld is out of range (%lld..%lld)\n", a->cmd, a->opt, v, (long long)lo,
                (long long)hi);
        return false;
    }
    *out = v;
    return true;
}

bool td_parse_expert_groups(const td_args *a, const char *s, int *groups, int *used)
{
    char *end;
    long n = strtol(s, &end, 10), m = n;
    if (end != s && *end == '/') {
        const char *p = end + 1;
        m = strtol(p, &end, 10);
        if (end == p) end = (char *)s;
    }
    if (end == s || *end || n < 1 || n > 1024 || m < 1 || m > n) {
        fprintf(stderr, "tandem %s: %s: '%s' is not N/M with 1 <= M <= N <= 1024 (DeepSeek-V3: 8/4)\n", a->cmd,
                a->opt, s);
        return false;
    }
    *groups = (int)n;
    *used = (int)m;
    return true;
}

bool td_parse_int(const td_args *a, const char *s, int lo, int hi, int *out)
{
    int64_t v;
    if (!td_parse_i64(a, s, lo, hi, &v)) return false;
    *out = (int)v;
    return true;
}

int td_cli_cores(void)
{
    static int cores = -1;
    if (cores < 0) {
        td_topo *t = NULL;
        cores = td_topo_load(NULL, &t) == TD_OK ? td_topo_cores(t) : 0;
        td_topo_free(t);
        td_err_clear();
    }
    return cores;
}

const char *td_cli_threads_default(void)
{
    static char text[64];
    snprintf(text, sizeof text, "one pinned thread per core, %d here", td_cli_cores());
    return text;
}

bool td_parse_threads(const td_args *a, const char *s, int *out)
{
    if (!td_parse_int(a, s, 0, 4096, out)) return false;
    int cores = td_cli_cores();
    if (cores > 0 && *out > cores)
        fprintf(stderr,
                "tandem %s: warning: %s %d is more than this machine's %d cores: the threads take turns on them, "
                "which is slower than one per core (leave %s out for that)\n",
                a->cmd, a->opt, *out, cores, a->opt);
    return true;
}

bool td_parse_double(const td_args *a, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        fprintf(stderr, "tandem %s: %s: '%s' is not a number\n", a->cmd, a->opt, s);
        return false;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "tandem %s: %s: %g is out of range (%g..%g)\n", a->cmd, a->opt, v, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool td_parse_bytes(const td_args *a, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0) {
        fprintf(stderr, "tandem %s: %s: '%s' is not a size (examples: 24GiB, 512MiB, 1.5T)\n", a->cmd, a->opt, s);
        return false;
    }
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {{"", 1},           {"B", 1},          {"K", 1024.0},       {"KB", 1024.0},
                 {"KiB", 1024.0},   {"M", 1048576.0},  {"MB", 1048576.0},   {"MiB", 1048576.0},
                 {"G", 1073741824.0}, {"GB", 1073741824.0}, {"GiB", 1073741824.0}, {"T", 1099511627776.0},
                 {"TB", 1099511627776.0}, {"TiB", 1099511627776.0}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].suffix) == 0) {
            double b = v * units[i].mult;
            if (b > 1.8e19) break;
            *out = (uint64_t)b;
            return true;
        }
    }
    fprintf(stderr, "tandem %s: %s: '%s' is not a size (examples: 24GiB, 512MiB, 1.5T)\n", a->cmd, a->opt, s);
    return false;
}

int td_cli_fail(const char *cmd, td_status st)
{
    fprintf(stderr, "tandem %s: %s\n", cmd, td_errmsg()[0] ? td_errmsg() : td_status_name(st));
    return 1;
}

int td_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    fprintf(stderr, "tandem %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see tandem %s --help)\n", cmd);
    return 2;
}

const char *td_cli_shared_dir(void)
{
    const char *env = getenv("TANDEM_SHARED");
    if (env && *env) return env;
#ifdef TANDEM_SOURCE_DIR
    return TANDEM_SOURCE_DIR "/../shared";
#else
    return "../shared";
#endif
}

const char *td_cli_fmt_bytes(uint64_t bytes, char *buf, int cap)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0) snprintf(buf, (size_t)cap, "%llu B", (unsigned long long)bytes);
    else snprintf(buf, (size_t)cap, "%.2f %s", v, units[u]);
    return buf;
}
