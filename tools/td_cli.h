/* Helpers shared by the subcommands of the `tandem` program: option parsing with range checks, size
 * and number parsing, and the usage/error conventions (exit 2 for bad usage, 1 for failures). */
#ifndef TD_CLI_H
#define TD_CLI_H

#include "td_status.h"

#include <stdbool.h>
#include <stdint.h>

/* Iterates "--name value" and "--name=value" options. */
typedef struct td_args {
    int argc;
    char **argv;
    int i;              /* next index */
    const char *cmd;    /* subcommand name, for messages */
    const char *opt;    /* current option name (without the value) */
    const char *inline_value;
    char opt_buf[64];
} td_args;

void td_args_init(td_args *a, const char *cmd, int argc, char **argv);
/* Next option or positional; false at the end. */
bool td_args_next(td_args *a);
bool td_args_is(const td_args *a, const char *name);
/* The value of the current option; prints an error and returns NULL if missing. */
const char *td_args_value(td_args *a);
int td_args_unknown(const td_args *a);

/* Parse with a range; on failure print "tandem <cmd>: --opt: ..." and return false. */
bool td_parse_i64(const td_args *a, const char *s, int64_t lo, int64_t hi, int64_t *out);
bool td_parse_int(const td_args *a, const char *s, int lo, int hi, int *out);
bool td_parse_double(const td_args *a, const char *s, double lo, double hi, double *out);
/* "--threads N": 0 (one per core) to 4096; more than the machine's cores is allowed (they share the
 * cores, which is slow) with a warning on stderr. */
bool td_parse_threads(const td_args *a, const char *s, int *out);
/* This machine's cores, as the thread pool counts them (one thread each by default); 0 if unknown. */
int td_cli_cores(void);
/* The default thread count in words, for --help: "one pinned thread per core, 2 here". */
const char *td_cli_threads_default(void);

/* "--expert-groups N/M": N groups, the top M kept (M <= N; "N" alone keeps all N). */
bool td_parse_expert_groups(const td_args *a, const char *s, int *groups, int *used);
/* "24GiB", "512MiB", "1.5G", "100000" (bytes); binary units. */
bool td_parse_bytes(const td_args *a, const char *s, uint64_t *out);

/* Prints "tandem <cmd>: <message>" for a failed status and returns the exit code 1. */
int td_cli_fail(const char *cmd, td_status st);
int td_cli_usage_error(const char *cmd, const char *fmt, ...) TD_PRINTF(2, 3);

/* The directory with the shared fixtures (TANDEM_SHARED, else ../shared beside the source tree). */
const char *td_cli_shared_dir(void);
/* "1.5 GiB" */
const char *td_cli_fmt_bytes(uint64_t bytes, char *buf, int cap);

#endif
