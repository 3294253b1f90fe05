/* td_gguf_write_impl.h: internals of the GGUF writer shared by its files. */
#ifndef TD_GGUF_WRITE_IMPL_H
#define TD_GGUF_WRITE_IMPL_H

#include "td_status.h"

#include <stdbool.h>
#include <stdio.h>

/* The temporary files of one write: one per output file, each created under a unique name in its output's
 * folder, renamed onto the outputs only once all of them are complete, and removed on failure, on free,
 * and (with on_signal) when SIGINT or SIGTERM ends the process. */
typedef struct td_tmp_outputs td_tmp_outputs;

td_status td_tmp_outputs_create(int n, bool on_signal, td_tmp_outputs **out);
/* Creates temporary file i for `final` (readable as a plain new file would be) and opens it for writing. */
td_status td_tmp_output_open(td_tmp_outputs *t, int i, const char *final, FILE **f);
const char *td_tmp_output_path(const td_tmp_outputs *t, int i);
/* Renames every temporary file onto its final path, in order. */
td_status td_tmp_outputs_commit(td_tmp_outputs *t);
/* Removes what was not renamed and restores the signal handlers. */
void td_tmp_outputs_free(td_tmp_outputs *t);

#endif
