/* Reading the user's lines: libedit with persistent history on a terminal, plain lines from a pipe. */
#ifndef TD_CHAT_INPUT_H
#define TD_CHAT_INPUT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum td_input_result {
    TD_INPUT_LINE = 0,      /* a line (without its newline) */
    TD_INPUT_EOF = 1,       /* Ctrl-D or the end of the pipe */
    TD_INPUT_INTERRUPT = 2, /* Ctrl-C at the prompt */
    TD_INPUT_RESULT_COUNT
} td_input_result;

typedef struct td_input td_input;

/* interactive: libedit on the terminal (prompt shown, history kept in history_path when not NULL);
 * otherwise lines are read from stdin as they come. */
td_input *td_input_open(bool interactive, const char *history_path, const char *prompt);
void td_input_close(td_input *in);
/* The line is valid until the next call. */
td_input_result td_input_read(td_input *in, const char **line, size_t *len);
/* Adds a line to the history (and saves the file). */
void td_input_remember(td_input *in, const char *line);

/* $XDG_STATE_HOME/tandem/history or ~/.local/state/tandem/history, its folder created as needed;
 * NULL (with a reason) when that cannot be done. */
const char *td_input_history_path(const char **why);

#endif
