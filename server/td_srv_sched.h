/* td_srv_sched: the slots and the thread that runs them.
 *
 * Each slot is a session (its own KV cache of `ctx` positions), a sampler and an answer stream. Jobs
 * wait in a bounded FIFO queue; a free slot takes the oldest, and among the free slots the job goes to
 * the one whose cached tokens share the longest prefix with its prompt (a chat client resends the whole
 * conversation every turn: only the new part is prefilled).
 *
 * One step runs the rows of every active slot in ONE td_engine_forward_batch call: a chunk of the
 * prompt for a slot still prefilling, the pending token for a decoding one (with its MTP drafts when
 * speculating), so the routed experts of all rows are read once per layer. Then each slot samples,
 * streams the text of its new tokens and checks its stop rules. A cancelled job (its client went away)
 * leaves its slot before the next step. */
#ifndef TD_SRV_SCHED_H
#define TD_SRV_SCHED_H

#include "td_engine.h"
#include "td_mtp_spec.h"
#include "td_srv_job.h"
#include "td_tokenizer.h"

#include <stdbool.h>
#include <stdint.h>

#define TD_SRV_MAX_SLOTS 64

typedef struct td_srv_sched_params {
    td_engine *engine;       /* borrowed */
    const td_tokenizer *tok; /* borrowed */
    int n_slots;             /* 1..TD_SRV_MAX_SLOTS */
    int64_t ctx;             /* positions per slot (0: the model's, capped at 4096) */
    td_kv_type kv_type;
    int queue_cap;           /* jobs waiting for a slot at most */
    int prefill_chunk;       /* prompt tokens per slot per step (0: 128, as td_generate) */
    td_mtp_mode mtp;         /* speculative decoding in every slot */
    int mtp_k;
    double step_delay_s;     /* tests: a pause after every step, so that answers last long enough to be
                                stopped, cut off or drained while running (0: none) */
    bool quiet;
} td_srv_sched_params;

typedef struct td_srv_sched td_srv_sched;

/* Creates the slots and starts the scheduler thread. */
td_status td_srv_sched_create(const td_srv_sched_params *p, td_srv_sched **out);
/* Cancels everything, stops the thread, frees the slots. Jobs still queued are finished with 503. */
void td_srv_sched_free(td_srv_sched *s);

typedef enum td_srv_submit {
    TD_SUBMIT_OK = 0,
    TD_SUBMIT_FULL = 1,     /* the queue is full: 429 */
    TD_SUBMIT_DRAINING = 2, /* shutting down: 503 */
    TD_SUBMIT_COUNT
} td_srv_submit;

td_srv_submit td_srv_sched_submit(td_srv_sched *s, td_srv_job *j);
/* Refuses new jobs, finishes the queued ones with 503 and cuts running ones after grace_s seconds. */
void td_srv_sched_drain(td_srv_sched *s, double grace_s);
/* No job queued or running. */
bool td_srv_sched_idle(td_srv_sched *s);
int64_t td_srv_sched_ctx(const td_srv_sched *s);

/* Counters for /metrics and benchmarks, since creation. */
typedef struct td_srv_stats {
    int n_slots, active, queued, queue_cap;
    int64_t ctx;
    int64_t kv_used;           /* positions cached over all slots */
    int64_t kv_bytes_per_token;
    int64_t jobs_done, jobs_cancelled, jobs_failed;
    int64_t prompt_tokens;     /* prefilled */
    int64_t reused_tokens;     /* prompt tokens found in a slot's cache */
    int64_t gen_tokens;
    int64_t steps;             /* forward calls */
    int64_t rows;              /* token rows in them */
    int64_t decode_steps;      /* steps without prompt rows */
    double prompt_s;           /* seconds of steps with prompt rows */
    double decode_s;           /* seconds of steps without */
    int64_t decode_tokens;     /* tokens chosen in steps without prompt rows */
    int64_t mtp_drafted, mtp_accepted;
} td_srv_stats;
void td_srv_sched_stats(td_srv_sched *s, td_srv_stats *out);

#endif
