/* td_srv_job: one generation handed from an HTTP thread to the scheduler, and its answer streamed back.
 *
 * The HTTP thread fills the input (prompt tokens, sampling, limits), submits the job and then reads
 * pieces of text as the scheduler appends them. Ownership: the scheduler never touches a job after
 * marking it done; the HTTP thread frees it only after done. A cancel (a client gone, a drain) is a flag
 * the scheduler reads before every step. */
#ifndef TD_SRV_JOB_H
#define TD_SRV_JOB_H

#include "td_answer.h"
#include "td_sampler.h"
#include "td_strbuf.h"
#include "td_tokenizer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct td_srv_job {
    /* input, set before submission */
    td_tokens prompt;
    td_sampler_params sampling;
    int64_t max_tokens; /* 0: until EOS or a full context */
    char *stop[TD_GEN_MAX_STOP];
    int n_stop;
    bool starts_thinking; /* the prompt ends inside <think> */
    bool show_special;    /* tool calls: their special tokens are part of the text */
    bool ignore_eos;      /* benchmarks: run to max_tokens */

    /* shared */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int cancel; /* 1: stop at the next step */
    td_strbuf events;  /* pieces not read yet: [kind byte][u32 length][bytes] ... */
    bool started;      /* a slot took it */
    bool done;
    /* results, valid once done */
    td_gen_stop stop_reason;
    int status;                 /* 0, or the HTTP status of a failure (500, 503) */
    char error[512];
    int64_t prompt_tokens;      /* the whole prompt */
    int64_t reused_tokens;      /* of those, already in the slot's cache */
    int64_t gen_tokens;
    double t_submit, t_start, t_first, t_end; /* td_now(): queued, slot taken, first token, done */
    double prompt_s, decode_s;
    int slot;
} td_srv_job;

td_status td_srv_job_create(td_srv_job **out);
void td_srv_job_free(td_srv_job *j);

/* Scheduler side (under no lock of the caller). */
void td_srv_job_put(td_srv_job *j, td_gen_piece kind, const char *text, size_t len);
void td_srv_job_finish(td_srv_job *j, td_gen_stop stop, int status, const char *error);

/* HTTP side: waits up to timeout_s for news (new pieces or done); moves the pending pieces into *out
 * (appended in the same encoding) and returns whether the job is done. */
bool td_srv_job_wait(td_srv_job *j, double timeout_s, td_strbuf *out);
/* Walks pieces of the encoding above: returns false at the end. */
bool td_srv_job_next_piece(const td_strbuf *b, size_t *at, td_gen_piece *kind, const char **text, size_t *len);

#endif
