/* td_answer: what happens to one generated token, step by step, independent of how the token was
 * computed: EOS, reasoning tags (<think> ... </think>), UTF-8-safe detokenization, stop strings (text
 * that may begin one is held back until it cannot), and the text kept so far.
 *
 * td_generate drives one per generator; a server keeps one per slot and feeds it the tokens of its
 * batched decode steps. */
#ifndef TD_ANSWER_H
#define TD_ANSWER_H

#include "td_status.h"
#include "td_tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum td_gen_piece {
    TD_PIECE_TEXT = 0,        /* answer text */
    TD_PIECE_THINK = 1,       /* reasoning text */
    TD_PIECE_THINK_OPEN = 2,  /* the <think> tag itself */
    TD_PIECE_THINK_CLOSE = 3, /* the </think> tag itself */
    TD_PIECE_COUNT
} td_gen_piece;

typedef void (*td_gen_text_fn)(void *user, td_gen_piece kind, const char *text, size_t len);

typedef enum td_gen_stop {
    TD_GEN_STOP_EOS = 0,
    TD_GEN_STOP_MAX_TOKENS = 1,
    TD_GEN_STOP_STRING = 2,
    TD_GEN_STOP_CANCELLED = 3,
    TD_GEN_STOP_CONTEXT = 4, /* the session's context is full */
    TD_GEN_STOP_COUNT
} td_gen_stop;

const char *td_gen_stop_name(td_gen_stop s);

#define TD_GEN_MAX_STOP 8

/* How one answer is streamed. Strings are borrowed for the answer's duration. */
typedef struct td_answer_params {
    const char *const *stop; /* up to TD_GEN_MAX_STOP stop strings (not included in the text) */
    int n_stop;
    bool show_special;      /* stream the text of special tokens too */
    bool ignore_eos;        /* keep going after EOS (benchmarks) */
    bool starts_thinking;   /* the prompt ended inside <think>: the first text is reasoning */
    td_gen_text_fn on_text; /* may be NULL */
    void *user;
} td_answer_params;

typedef struct td_answer td_answer;

/* The tokenizer is borrowed and must outlive the stream. */
td_status td_answer_create(const td_tokenizer *t, td_answer **out);
void td_answer_free(td_answer *x);
/* Checks the stop strings (TD_E_ARG naming the bad one). */
td_status td_answer_check(const td_answer_params *p);
/* Starts an answer: forgets the text, held bytes and reasoning state of the last one. p is borrowed. */
void td_answer_begin(td_answer *x, const td_answer_params *p);
/* One generated token: its text, or a reasoning tag. True when the answer stops here (*stop says why:
 * EOS or a stop string). */
bool td_answer_take(td_answer *x, int32_t tok, td_gen_stop *stop);
/* Ends the answer: the bytes of an unfinished character (as U+FFFD) and the held text are emitted,
 * unless it ended at a stop string. */
void td_answer_end(td_answer *x, td_gen_stop stop);
/* An allocation for the text failed (the text is then incomplete). */
bool td_answer_oom(const td_answer *x);
/* Everything emitted for this answer (NUL-terminated), reasoning and tags included. */
const char *td_answer_text(const td_answer *x, size_t *len);

#endif
