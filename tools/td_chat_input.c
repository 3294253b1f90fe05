#include "td_chat_input.h"

#include <errno.h>
#include <histedit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

struct td_input {
    bool interactive;
    EditLine *el;
    History *hist;
    char *history_path;
    char *prompt;
    char *buf; /* the current line */
    size_t cap;
    pid_t fg_before; /* the terminal's foreground process group before we took it; 0: not taken */
};

static volatile sig_atomic_t td_input_sigint;

static void td_input_on_sigint(int sig)
{
    (void)sig;
    td_input_sigint = 1;
}

static char *td_input_prompt_fn(EditLine *el)
{
    td_input *in = NULL;
    el_get(el, EL_CLIENTDATA, &in);
    return in ? in->prompt : "> ";
}

/* mkdir -p for the folders of a file path */
static bool td_mkdirs_for(const char *file)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", file);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) return false;
        *s = '/';
    }
    return true;
}

const char *td_input_history_path(const char **why)
{
    static char path[4096];
    const char *state = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    if (state && *state)
        snprintf(path, sizeof path, "%s/tandem/history", state);
    else if (home && *home)
        snprintf(path, sizeof path, "%s/.local/state/tandem/history", home);
    else {
        *why = "neither XDG_STATE_HOME nor HOME is set";
        return NULL;
    }
    if (!td_mkdirs_for(path)) {
        *why = strerror(errno);
        return NULL;
    }
    return path;
}

/* tcsetpgrp from a process group that is not (or no longer) in the foreground needs SIGTTOU held back. */
static void td_set_foreground(pid_t pgrp)
{
    sigset_t ttou, old;
    sigemptyset(&ttou);
    sigaddset(&ttou, SIGTTOU);
    sigprocmask(SIG_BLOCK, &ttou, &old);
    tcsetpgrp(STDIN_FILENO, pgrp);
    sigprocmask(SIG_SETMASK, &old, NULL);
}

/* Under a parent that is not a job-control shell (make, for `make chat`), the chat shares the parent's
 * process group, and Ctrl-C, which only stops an answer here, reaches the parent too: make then dies with
 * "Interrupt" however the chat ends. A process group of our own in the terminal's foreground keeps Ctrl-C
 * to the chat. A shell's job already leads its own group: nothing changes then. Ctrl-Z is ignored, since
 * such a parent could not resume a stopped chat. */
static void td_input_own_foreground(td_input *in)
{
    pid_t fg = tcgetpgrp(STDIN_FILENO);
    if (getpgrp() == getpid() || fg != getpgrp() || setpgid(0, 0) != 0) return;
    td_set_foreground(getpid());
    in->fg_before = fg;
    signal(SIGTSTP, SIG_IGN);
}

td_input *td_input_open(bool interactive, const char *history_path, const char *prompt)
{
    td_input *in = calloc(1, sizeof *in);
    if (!in) return NULL;
    in->interactive = interactive;
    in->prompt = strdup(prompt ? prompt : "> ");
    if (!interactive) return in;
    td_input_own_foreground(in);
    in->el = el_init("tandem", stdin, stdout, stderr);
    in->hist = history_init();
    if (!in->el || !in->hist || !in->prompt) {
        td_input_close(in);
        return NULL;
    }
    HistEvent ev;
    history(in->hist, &ev, H_SETSIZE, 2000);
    history(in->hist, &ev, H_SETUNIQUE, 1);
    if (history_path) {
        in->history_path = strdup(history_path);
        history(in->hist, &ev, H_LOAD, history_path); /* a missing file is a fresh history */
    }
    el_set(in->el, EL_CLIENTDATA, in);
    /* \1 brackets escape sequences in the prompt, so libedit does not count them as columns */
    el_set(in->el, EL_PROMPT_ESC, td_input_prompt_fn, '\1');
    el_set(in->el, EL_EDITOR, "emacs");
    el_set(in->el, EL_HIST, history, in->hist);
    el_source(in->el, NULL); /* the user's ~/.editrc */
    return in;
}

void td_input_close(td_input *in)
{
    if (!in) return;
    if (in->el) el_end(in->el);
    if (in->hist) history_end(in->hist);
    if (in->fg_before) td_set_foreground(in->fg_before); /* the terminal back to the parent */
    free(in->history_path);
    free(in->prompt);
    free(in->buf);
    free(in);
}

td_input_result td_input_read(td_input *in, const char **line, size_t *len)
{
    if (!in->interactive) {
        ssize_t n = getline(&in->buf, &in->cap, stdin);
        if (n < 0) return TD_INPUT_EOF;
        if (n > 0 && in->buf[n - 1] == '\n') in->buf[--n] = '\0';
        if (n > 0 && in->buf[n - 1] == '\r') in->buf[--n] = '\0';
        *line = in->buf;
        *len = (size_t)n;
        return TD_INPUT_LINE;
    }
    /* Ctrl-C at the prompt interrupts the read (no SA_RESTART) instead of ending the program */
    struct sigaction sa = {0}, old;
    sa.sa_handler = td_input_on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    td_input_sigint = 0;
    int count = 0;
    const char *s;
    do {
        s = el_gets(in->el, &count);
    } while (!s && count < 0 && errno == EINTR && !td_input_sigint);
    sigaction(SIGINT, &old, NULL);
    if (td_input_sigint) {
        el_reset(in->el);
        return TD_INPUT_INTERRUPT;
    }
    if (!s || count <= 0) return TD_INPUT_EOF;
    size_t n = (size_t)count;
    if (n + 1 > in->cap) {
        char *nb = realloc(in->buf, n + 1);
        if (!nb) return TD_INPUT_EOF;
        in->buf = nb;
        in->cap = n + 1;
    }
    memcpy(in->buf, s, n);
    while (n > 0 && (in->buf[n - 1] == '\n' || in->buf[n - 1] == '\r')) n--;
    in->buf[n] = '\0';
    *line = in->buf;
    *len = n;
    return TD_INPUT_LINE;
}

void td_input_remember(td_input *in, const char *line)
{
    if (!in->interactive || !*line) return;
    HistEvent ev;
    history(in->hist, &ev, H_ENTER, line);
    if (in->history_path) history(in->hist, &ev, H_SAVE, in->history_path);
}
