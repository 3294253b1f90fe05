/* The GGUF writer's temporary files: unique names beside the outputs (mkstemp), so that two writers of the
 * same output never write into one file; renamed only when every file of the write is complete, so a
 * failure leaves the previous output as it was and the last writer to finish wins with whole files; and
 * removed on failure and on SIGINT/SIGTERM. */
#include "td_gguf_write_impl.h"

#include "td_alloc.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct td_tmp_outputs {
    int n;
    char **tmp;            /* [n] temporary paths, NULL until created */
    char **final;          /* [n] output paths */
    char *volatile *live;  /* [n] what a signal handler removes: tmp[i] from creation until its rename */
    bool on_signal;
};

/* A signal handler reaches only globals: the one set whose files SIGINT/SIGTERM remove. A second write
 * while one is registered (another thread) is not registered; its files are removed on failure only. */
static td_tmp_outputs *volatile td_sig_set;
static const int td_sig_nums[2] = {SIGINT, SIGTERM};
static struct sigaction td_sig_old[2];
static bool td_sig_taken[2];

static void td_tmp_on_signal(int sig)
{
    td_tmp_outputs *t = td_sig_set;
    for (int i = 0; t && i < t->n; i++) {
        char *p = t->live[i];
        if (p) unlink(p); /* async-signal-safe */
    }
    for (int k = 0; k < 2; k++) /* back to the default action, which ends the process */
        if (td_sig_nums[k] == sig) sigaction(sig, &td_sig_old[k], NULL);
    raise(sig);
}

/* Only where the default action would end the process: a caller with its own handler keeps it. */
static void td_tmp_take_signals(td_tmp_outputs *t)
{
    if (td_sig_set) return;
    td_sig_set = t;
    for (int k = 0; k < 2; k++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = td_tmp_on_signal;
        sigemptyset(&sa.sa_mask);
        td_sig_taken[k] = false;
        if (sigaction(td_sig_nums[k], NULL, &td_sig_old[k]) != 0 || td_sig_old[k].sa_handler != SIG_DFL) continue;
        td_sig_taken[k] = sigaction(td_sig_nums[k], &sa, NULL) == 0;
    }
}

static void td_tmp_release_signals(td_tmp_outputs *t)
{
    if (td_sig_set != t) return;
    for (int k = 0; k < 2; k++)
        if (td_sig_taken[k]) sigaction(td_sig_nums[k], &td_sig_old[k], NULL);
    td_sig_set = NULL;
}

td_status td_tmp_outputs_create(int n, bool on_signal, td_tmp_outputs **out)
{
    td_tmp_outputs *t = td_calloc(1, sizeof *t);
    if (!t) return td_fail(TD_E_NOMEM, "out of memory");
    t->n = n;
    t->on_signal = on_signal;
    t->tmp = td_calloc((size_t)n, sizeof *t->tmp);
    t->final = td_calloc((size_t)n, sizeof *t->final);
    t->live = td_calloc((size_t)n, sizeof *t->live);
    if (!t->tmp || !t->final || !t->live) {
        td_tmp_outputs_free(t);
        return td_fail(TD_E_NOMEM, "out of memory");
    }
    if (on_signal) td_tmp_take_signals(t);
    *out = t;
    return TD_OK;
}

const char *td_tmp_output_path(const td_tmp_outputs *t, int i) { return t->tmp[i]; }

td_status td_tmp_output_open(td_tmp_outputs *t, int i, const char *final, FILE **f)
{
    *f = NULL;
    size_t len = strlen(final);
    t->final[i] = td_strdup(final);
    t->tmp[i] = td_malloc(len + 16);
    if (!t->final[i] || !t->tmp[i]) return td_fail(TD_E_NOMEM, "out of memory");
    snprintf(t->tmp[i], len + 16, "%s.tmp.XXXXXX", final);
    int fd = mkstemp(t->tmp[i]);
    if (fd < 0) {
        td_status st = td_fail(TD_E_IO, "%s: cannot create a file beside it: %s", final, strerror(errno));
        td_free(t->tmp[i]);
        t->tmp[i] = NULL;
        return st;
    }
    t->live[i] = t->tmp[i];
    /* mkstemp makes the file private (0600); the output gets what a new file would (no other thread
     * creates files while a model is written, so reading the umask this way races with nothing) */
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0 || !(*f = fdopen(fd, "wb"))) {
        td_status st = td_fail(TD_E_IO, "%s: cannot open for writing: %s", t->tmp[i], strerror(errno));
        close(fd);
        return st;
    }
    return TD_OK;
}

td_status td_tmp_outputs_commit(td_tmp_outputs *t)
{
    for (int i = 0; i < t->n; i++) {
        if (!t->tmp[i]) return td_fail(TD_E_ARG, "GGUF writer: output %d was not written", i + 1);
        if (rename(t->tmp[i], t->final[i]) != 0)
            return td_fail(TD_E_IO, "%s: cannot rename %s onto it: %s%s", t->final[i], t->tmp[i], strerror(errno),
                           i ? " (the parts renamed before it are new, the rest old: the set will not open)" : "");
        t->live[i] = NULL;
        td_free(t->tmp[i]);
        t->tmp[i] = NULL;
    }
    return TD_OK;
}

void td_tmp_outputs_free(td_tmp_outputs *t)
{
    if (!t) return;
    td_tmp_release_signals(t);
    for (int i = 0; i < t->n; i++) {
        if (t->tmp && t->tmp[i] && t->live && t->live[i]) unlink(t->tmp[i]);
        if (t->tmp) td_free(t->tmp[i]);
        if (t->final) td_free(t->final[i]);
    }
    td_free(t->tmp);
    td_free(t->final);
    td_free((void *)t->live);
    td_free(t);
}
