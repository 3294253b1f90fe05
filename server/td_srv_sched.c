#include "td_srv_sched.h"

#include "td_alloc.h"
#include "td_clock.h"
#include "td_mtp_cost.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TD_SRV_PREFILL_CHUNK 128 /* as td_generate: a lone request runs the kernels `tandem generate` runs */

typedef struct td_slot {
    td_session *s;
    td_sampler *smp;
    td_answer *ans;
    td_answer_params ap;
    td_mtp_spec *mtp;    /* NULL: plain decoding */
    float *vlogits;      /* [k+1][V]: the rows of an MTP verify pass */
    td_srv_job *job;     /* NULL: free */
    int64_t prefilled;   /* prompt tokens in the cache */
    bool decoding;
    int32_t toks[TD_MTP_MAX_DRAFTS + 1]; /* this step's rows when decoding: the pending token, then drafts */
    int n_toks;
    int64_t step_rows;   /* rows this slot put in the current step */
    double last_used;
} td_slot;

struct td_srv_sched {
    td_srv_sched_params p;
    int64_t V;
    td_slot slots[TD_SRV_MAX_SLOTS];
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    td_srv_job **queue; /* FIFO ring of queue_cap + n_slots */
    int q_head, q_len, q_size;
    bool quit, draining;
    double drain_deadline;
    td_srv_stats stats;
    /* the scheduler thread's counts of the current step, folded into stats under mu */
    int64_t step_prompt, step_gen, step_drafted, step_accepted;
};

/* ------------------------------------------------------------------ slots */

static void td_slot_text(void *user, td_gen_piece kind, const char *text, size_t len)
{
    td_slot *sl = user;
    td_srv_job_put(sl->job, kind, text, len);
}

static td_status td_slot_open(td_srv_sched *sc, td_slot *sl)
{
    td_session_params sp = {.n_ctx = sc->p.ctx, .kv_type = sc->p.kv_type};
    TD_TRY(td_session_create(sc->p.engine, &sp, &sl->s));
    td_sampler_params gp = td_sampler_greedy();
    TD_TRY(td_sampler_create(sc->V, &gp, &sl->smp));
    TD_TRY(td_answer_create(sc->p.tok, &sl->ans));
    if (sc->p.mtp == TD_MTP_OFF) return TD_OK;
    char cache[4096];
    td_mtp_params mp = {.mode = sc->p.mtp, .k = sc->p.mtp_k, .cost_cache = td_mtp_cost_cache_path(cache, sizeof cache)};
    TD_TRY(td_mtp_spec_create_detached(sl->s, sl->smp, &mp, &sl->mtp));
    int k = sc->p.mtp_k > 0 ? sc->p.mtp_k : 1;
    sl->vlogits = td_malloc((size_t)(k + 1) * (size_t)sc->V * sizeof(float));
    return sl->vlogits ? TD_OK : td_fail(TD_E_NOMEM, "out of memory for MTP verify logits");
}

static void td_slot_close(td_slot *sl)
{
    td_mtp_spec_free(sl->mtp);
    td_free(sl->vlogits);
    td_answer_free(sl->ans);
    td_sampler_free(sl->smp);
    td_session_free(sl->s);
    memset(sl, 0, sizeof *sl);
}

static int64_t td_shared_prefix(const td_slot *sl, const td_tokens *prompt)
{
    const int32_t *cached = td_session_tokens(sl->s);
    int64_t n = td_session_pos(sl->s), c = 0;
    while (c < n && c < prompt->n - 1 && cached[c] == prompt->ids[c]) c++;
    return c;
}

/* A job enters a slot: the cache is rewound to the prefix it shares with the prompt (keeping at least
 * the last prompt token to run: its logits start the answer). */
static void td_slot_start(td_srv_sched *sc, td_slot *sl, td_srv_job *j, int index)
{
    int64_t c = td_shared_prefix(sl, &j->prompt);
    td_session_rewind(sl->s, c);
    sl->job = j;
    sl->prefilled = c;
    sl->decoding = false;
    sl->n_toks = 0;
    td_sampler_set_params(sl->smp, &j->sampling);
    td_sampler_reseed(sl->smp, j->sampling.seed);
    sl->ap = (td_answer_params){.stop = (const char *const *)j->stop,
                                .n_stop = j->n_stop,
                                .show_special = j->show_special,
                                .ignore_eos = j->ignore_eos,
                                .starts_thinking = j->starts_thinking,
                                .on_text = td_slot_text,
                                .user = sl};
    td_answer_begin(sl->ans, &sl->ap);
    pthread_mutex_lock(&j->mu);
    j->started = true;
    j->slot = index;
    j->t_start = td_now();
    j->prompt_tokens = j->prompt.n;
    j->reused_tokens = c;
    pthread_mutex_unlock(&j->mu);
    sc->stats.reused_tokens += c;
}

/* The job leaves its slot; the cache stays for the next request to reuse. */
static void td_slot_finish(td_srv_sched *sc, td_slot *sl, td_gen_stop stop, int status, const char *error)
{
    td_srv_job *j = sl->job;
    if (status == 0) td_answer_end(sl->ans, stop);
    double now = td_now();
    j->decode_s = j->t_first > 0 ? now - j->t_first : 0;
    j->prompt_s = (j->t_first > 0 ? j->t_first : now) - j->t_start;
    sl->job = NULL;
    sl->last_used = now;
    pthread_mutex_lock(&sc->mu);
    if (status) sc->stats.jobs_failed++;
    else if (stop == TD_GEN_STOP_CANCELLED) sc->stats.jobs_cancelled++;
    else sc->stats.jobs_done++;
    sc->stats.active--;
    pthread_mutex_unlock(&sc->mu);
    td_srv_job_finish(j, stop, status, error);
}

/* The tokens a step chose for a slot, in order: each is streamed and checked against the stop rules;
 * the last one stays pending (not in the cache yet) for the next step. */
static void td_slot_take(td_srv_sched *sc, td_slot *sl, const int32_t *toks, int n)
{
    td_srv_job *j = sl->job;
    if (j->t_first == 0) j->t_first = td_now();
    for (int i = 0; i < n; i++) {
        td_gen_stop stop;
        j->gen_tokens++;
        sc->step_gen++;
        if (td_answer_take(sl->ans, toks[i], &stop)) {
            td_slot_finish(sc, sl, stop, 0, NULL);
            return;
        }
        if (j->max_tokens && j->gen_tokens >= j->max_tokens) {
            td_slot_finish(sc, sl, TD_GEN_STOP_MAX_TOKENS, 0, NULL);
            return;
        }
    }
    sl->toks[0] = toks[n - 1];
    if (td_session_pos(sl->s) + 1 > td_session_ctx(sl->s)) td_slot_finish(sc, sl, TD_GEN_STOP_CONTEXT, 0, NULL);
}

/* This step's rows of a slot, or false when it has none (it just finished). */
static bool td_slot_rows(td_srv_sched *sc, td_slot *sl, td_forward_item *item)
{
    td_srv_job *j = sl->job;
    if (atomic_load(&j->cancel)) {
        td_slot_finish(sc, sl, TD_GEN_STOP_CANCELLED, 0, NULL);
        return false;
    }
    int64_t chunk = sc->p.prefill_chunk;
    if (!sl->decoding) {
        int64_t left = j->prompt.n - sl->prefilled;
        sl->step_rows = left < chunk ? left : chunk;
        *item = (td_forward_item){.s = sl->s, .tokens = j->prompt.ids + sl->prefilled, .n = sl->step_rows};
        return true;
    }
    int k = 0;
    if (sl->mtp && td_mtp_spec_drafting(sl->mtp)) {
        int64_t left = j->max_tokens ? j->max_tokens - j->gen_tokens : TD_MTP_MAX_DRAFTS + 1;
        int max_k = left - 1 < TD_MTP_MAX_DRAFTS ? (int)(left - 1) : TD_MTP_MAX_DRAFTS;
        if (max_k > 0 && td_mtp_spec_draft(sl->mtp, sl->toks, max_k, &k) != TD_OK) {
            td_slot_finish(sc, sl, TD_GEN_STOP_CANCELLED, 500, td_errmsg());
            td_session_rewind(sl->s, 0);
            return false;
        }
    }
    sl->n_toks = 1 + k;
    sl->step_rows = sl->n_toks;
    *item = (td_forward_item){.s = sl->s, .tokens = sl->toks, .n = sl->n_toks, .logits_all = k ? sl->vlogits : NULL};
    return true;
}

/* After the step: sample from the slot's logits (or judge its drafts). */
static void td_slot_after(td_srv_sched *sc, td_slot *sl)
{
    td_srv_job *j = sl->job;
    if (!sl->decoding) {
        sl->prefilled += sl->step_rows;
        sc->step_prompt += sl->step_rows;
        if (sl->prefilled < j->prompt.n) return;
        sl->decoding = true;
        int32_t t = td_sampler_sample(sl->smp, td_session_logits(sl->s));
        td_slot_take(sc, sl, &t, 1);
        return;
    }
    if (sl->n_toks == 1) {
        int32_t t = td_sampler_sample(sl->smp, td_session_logits(sl->s));
        td_slot_take(sc, sl, &t, 1);
        return;
    }
    int k = sl->n_toks - 1;
    int64_t pos0 = td_session_pos(sl->s) - sl->n_toks;
    int32_t out[TD_MTP_MAX_DRAFTS + 1];
    int accepted = td_mtp_spec_verify(sl->mtp, sl->toks, k, sl->vlogits, out);
    td_session_rewind(sl->s, pos0 + 1 + accepted);
    sc->step_drafted += k;
    sc->step_accepted += accepted;
    td_slot_take(sc, sl, out, accepted + 1);
}

/* ------------------------------------------------------------------ the step */

static void td_sched_step(td_srv_sched *sc)
{
    td_forward_item items[TD_SRV_MAX_SLOTS];
    td_slot *who[TD_SRV_MAX_SLOTS];
    int n = 0;
    bool prompt_rows = false;
    int64_t rows = 0;
    for (int i = 0; i < sc->p.n_slots; i++) {
        td_slot *sl = &sc->slots[i];
        if (!sl->job || !td_slot_rows(sc, sl, &items[n])) continue;
        prompt_rows |= !sl->decoding;
        rows += items[n].n;
        who[n++] = sl;
    }
    if (n == 0) return;
    sc->step_prompt = sc->step_gen = sc->step_drafted = sc->step_accepted = 0;
    double t0 = td_now();
    td_status st = td_engine_forward_batch(sc->p.engine, items, n);
    if (st != TD_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "the forward pass failed: %s", td_errmsg());
        if (!sc->p.quiet) fprintf(stderr, "tandem serve: %s\n", msg);
        for (int i = 0; i < n; i++) {
            td_slot_finish(sc, who[i], TD_GEN_STOP_CANCELLED, 500, msg);
            td_session_rewind(who[i]->s, 0); /* its cache may hold rows of the failed call */
        }
        return;
    }
    for (int i = 0; i < n; i++) td_slot_after(sc, who[i]);
    double dt = td_now() - t0;
    int64_t kv_used = 0;
    for (int i = 0; i < sc->p.n_slots; i++) kv_used += td_session_pos(sc->slots[i].s);
    pthread_mutex_lock(&sc->mu);
    td_srv_stats *t = &sc->stats;
    t->steps++;
    t->rows += rows;
    t->prompt_tokens += sc->step_prompt;
    t->gen_tokens += sc->step_gen;
    t->mtp_drafted += sc->step_drafted;
    t->mtp_accepted += sc->step_accepted;
    t->kv_used = kv_used;
    if (prompt_rows) {
        t->prompt_s += dt;
    } else {
        t->decode_steps++;
        t->decode_s += dt;
        t->decode_tokens += sc->step_gen;
    }
    pthread_mutex_unlock(&sc->mu);
    if (sc->p.step_delay_s > 0) usleep((useconds_t)(sc->p.step_delay_s * 1e6));
}

/* Under mu: queued jobs into free slots, oldest first, each to the free slot sharing the longest prefix
 * (then the one used longest ago). */
static void td_sched_assign(td_srv_sched *sc)
{
    while (sc->q_len > 0) {
        td_srv_job *j = sc->queue[sc->q_head];
        int best = -1;
        int64_t best_shared = -1;
        for (int i = 0; i < sc->p.n_slots; i++) {
            td_slot *sl = &sc->slots[i];
            if (sl->job) continue;
            int64_t shared = td_shared_prefix(sl, &j->prompt);
            if (shared > best_shared || (shared == best_shared && sl->last_used < sc->slots[best].last_used)) {
                best = i;
                best_shared = shared;
            }
        }
        if (best < 0) return;
        sc->q_head = (sc->q_head + 1) % sc->q_size;
        sc->q_len--;
        sc->stats.queued--;
        sc->stats.active++;
        td_slot_start(sc, &sc->slots[best], j, best);
    }
}

static void td_sched_cancel_running(td_srv_sched *sc)
{
    for (int i = 0; i < sc->p.n_slots; i++)
        if (sc->slots[i].job) atomic_store(&sc->slots[i].job->cancel, 1);
}

static void td_cond_wait_s(pthread_cond_t *cv, pthread_mutex_t *mu, double s)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)(s * 1e9);
    while (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, mu, &ts);
}

static void *td_sched_main(void *arg)
{
    td_srv_sched *sc = arg;
    pthread_mutex_lock(&sc->mu);
    while (!sc->quit) {
        if (sc->draining && td_now() >= sc->drain_deadline) td_sched_cancel_running(sc);
        td_sched_assign(sc);
        if (sc->stats.active == 0) {
            td_cond_wait_s(&sc->cv, &sc->mu, 0.1);
            continue;
        }
        pthread_mutex_unlock(&sc->mu);
        td_sched_step(sc);
        pthread_mutex_lock(&sc->mu);
    }
    pthread_mutex_unlock(&sc->mu);
    /* leaving: every job still in a slot is cut */
    for (int i = 0; i < sc->p.n_slots; i++)
        if (sc->slots[i].job) td_slot_finish(sc, &sc->slots[i], TD_GEN_STOP_CANCELLED, 0, NULL);
    return NULL;
}

/* ------------------------------------------------------------------ lifecycle */

td_status td_srv_sched_create(const td_srv_sched_params *p, td_srv_sched **out)
{
    *out = NULL;
    if (p->n_slots < 1 || p->n_slots > TD_SRV_MAX_SLOTS)
        return td_fail(TD_E_ARG, "%d slots (1..%d)", p->n_slots, TD_SRV_MAX_SLOTS);
    if (p->queue_cap < 0) return td_fail(TD_E_ARG, "a queue of %d", p->queue_cap);
    td_srv_sched *sc = td_calloc(1, sizeof *sc);
    if (!sc) return td_fail(TD_E_NOMEM, "out of memory");
    sc->p = *p;
    if (sc->p.prefill_chunk <= 0) sc->p.prefill_chunk = TD_SRV_PREFILL_CHUNK;
    sc->V = td_engine_model(p->engine)->hp.vocab_size;
    pthread_mutex_init(&sc->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sc->cv, &ca);
    pthread_condattr_destroy(&ca);
    sc->q_size = p->queue_cap + p->n_slots;
    sc->queue = td_calloc((size_t)sc->q_size, sizeof *sc->queue);
    td_status st = sc->queue ? TD_OK : td_fail(TD_E_NOMEM, "out of memory");
    for (int i = 0; i < p->n_slots && st == TD_OK; i++) st = td_slot_open(sc, &sc->slots[i]);
    if (st == TD_OK) {
        sc->stats.n_slots = p->n_slots;
        sc->stats.queue_cap = p->queue_cap;
        sc->stats.ctx = td_session_ctx(sc->slots[0].s);
        sc->stats.kv_bytes_per_token = td_session_kv_bytes_per_token(sc->slots[0].s);
        if (pthread_create(&sc->thread, NULL, td_sched_main, sc) != 0)
            st = td_fail(TD_E_NOMEM, "cannot start the scheduler thread");
        else
            sc->thread_started = true;
    }
    if (st != TD_OK) {
        td_srv_sched_free(sc);
        return st;
    }
    *out = sc;
    return TD_OK;
}

void td_srv_sched_free(td_srv_sched *sc)
{
    if (!sc) return;
    if (sc->thread_started) {
        pthread_mutex_lock(&sc->mu);
        sc->quit = true;
        td_sched_cancel_running(sc);
        pthread_cond_broadcast(&sc->cv);
        pthread_mutex_unlock(&sc->mu);
        pthread_join(sc->thread, NULL);
    }
    for (; sc->q_len > 0; sc->q_len--) {
        td_srv_job_finish(sc->queue[sc->q_head], TD_GEN_STOP_CANCELLED, 503, "the server is shutting down");
        sc->q_head = (sc->q_head + 1) % sc->q_size;
    }
    for (int i = 0; i < sc->p.n_slots; i++) td_slot_close(&sc->slots[i]);
    td_free(sc->queue);
    pthread_mutex_destroy(&sc->mu);
    pthread_cond_destroy(&sc->cv);
    td_free(sc);
}

td_srv_submit td_srv_sched_submit(td_srv_sched *sc, td_srv_job *j)
{
    pthread_mutex_lock(&sc->mu);
    td_srv_submit r = TD_SUBMIT_OK;
    int free_slots = sc->p.n_slots - sc->stats.active;
    if (sc->draining || sc->quit)
        r = TD_SUBMIT_DRAINING;
    else if (sc->q_len >= sc->p.queue_cap + free_slots || sc->q_len >= sc->q_size)
        r = TD_SUBMIT_FULL;
    if (r == TD_SUBMIT_OK) {
        j->t_submit = td_now();
        sc->queue[(sc->q_head + sc->q_len) % sc->q_size] = j;
        sc->q_len++;
        sc->stats.queued++;
        pthread_cond_broadcast(&sc->cv);
    }
    pthread_mutex_unlock(&sc->mu);
    return r;
}

void td_srv_sched_drain(td_srv_sched *sc, double grace_s)
{
    pthread_mutex_lock(&sc->mu);
    if (!sc->draining) {
        sc->draining = true;
        sc->drain_deadline = td_now() + grace_s;
    }
    for (; sc->q_len > 0; sc->q_len--) {
        td_srv_job_finish(sc->queue[sc->q_head], TD_GEN_STOP_CANCELLED, 503, "the server is shutting down");
        sc->q_head = (sc->q_head + 1) % sc->q_size;
        sc->stats.queued--;
    }
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
}

bool td_srv_sched_idle(td_srv_sched *sc)
{
    pthread_mutex_lock(&sc->mu);
    bool idle = sc->q_len == 0 && sc->stats.active == 0;
    pthread_mutex_unlock(&sc->mu);
    return idle;
}

int64_t td_srv_sched_ctx(const td_srv_sched *sc)
{
    return sc->stats.ctx;
}

void td_srv_sched_stats(td_srv_sched *sc, td_srv_stats *out)
{
    pthread_mutex_lock(&sc->mu);
    *out = sc->stats;
    pthread_mutex_unlock(&sc->mu);
}
