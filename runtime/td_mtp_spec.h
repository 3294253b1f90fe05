/* td_mtp_spec: speculative decoding with the model's multi-token-prediction (MTP) block, plugged into a
 * td_generator as its decode step.
 *
 * A step: the MTP block drafts k tokens past the token just chosen (the first from the main model's
 * hidden state, further ones chained from the block's own output); the main model runs the chosen token
 * and the drafts in one forward pass of k+1 positions; rejected drafts are dropped by rewinding the
 * session, which rolls back the main and the MTP cache alike (nothing is copied).
 *  - Greedy: a draft is kept when it is the main model's argmax, so the token stream is exactly the one
 *    plain decoding gives (as long as each position's logits do not depend on the batch they run in).
 *  - Sampling: a draft d drawn from the MTP block's distribution q is kept with probability
 *    min(1, p(d)/q(d)), otherwise the token is drawn from normalize((p - q)+); p and q are the final
 *    distributions of td_sampler_probs (temperature, min-p, top-k, top-p alike). Every token then has
 *    exactly the distribution plain sampling gives it, though a seed yields another stream.
 *  - auto: speculates while the tokens a speculative step is expected to yield, 1 + a + ... + a^k, beat
 *    the ratio of its cost to a plain step's. The costs are measured once per model and machine (at
 *    creation, on the fresh session, or read from a cache file: td_mtp_cost.h); the acceptance a is the
 *    one seen so far in the generator's life, starting from a prior. So auto decides before the first
 *    token, and a short answer pays for no measurement. */
#ifndef TD_MTP_SPEC_H
#define TD_MTP_SPEC_H

#include "td_generate.h"
#include "td_status.h"

#include <stdbool.h>
#include <stdint.h>

#define TD_MTP_MAX_DRAFTS 8

typedef enum td_mtp_mode {
    TD_MTP_OFF = 0,  /* plain decoding */
    TD_MTP_ON = 1,   /* always speculate */
    TD_MTP_AUTO = 2, /* measure both ways, keep the faster */
    TD_MTP_MODE_COUNT
} td_mtp_mode;

const char *td_mtp_mode_name(td_mtp_mode m);
bool td_mtp_mode_from_name(const char *name, td_mtp_mode *out);

/* A draft source in place of the MTP block: fills logits [V] scoring the token after toks[0..n), where
 * toks[0] is the token chosen for the session's position pos (not run yet) and toks[1..n) are the drafts
 * before this one. Tests use the main model itself, made wrong at chosen steps, to drive every branch
 * of verification; prompt-lookup drafting would fit here too. */
typedef td_status (*td_drafter_fn)(void *user, const td_session *s, const int32_t *toks, int n, float *logits);

typedef struct td_mtp_params {
    td_mtp_mode mode;      /* ON or AUTO; OFF makes a spec that only decodes plainly */
    int k;                 /* drafts per step, 1..TD_MTP_MAX_DRAFTS (0: 1) */
    const char *cost_cache; /* auto: the file that keeps measured step costs (td_mtp_cost_cache_path());
                               NULL: measure at every creation */
    td_drafter_fn drafter; /* NULL: the model's MTP block */
    void *drafter_user;
} td_mtp_params;

typedef struct td_mtp_stats {
    td_mtp_mode mode;
    int k;
    bool drafting;                 /* speculating at the next step (auto: while MTP is expected to win) */
    bool decided;                  /* auto: the step costs are known */
    double plain_tok_s, mtp_tok_s; /* auto: the speeds expected from the costs and the acceptance so far */
    double speedup;                /* auto: mtp_tok_s / plain_tok_s; NAN otherwise */
    int64_t spec_steps, plain_steps;
    int64_t drafted, accepted; /* since creation */
} td_mtp_stats;

typedef struct td_mtp_spec td_mtp_spec;

/* Installs speculative decoding as g's decode step. auto measures the step costs here when the cache
 * does not hold them: the generator must be fresh (nothing run yet). A model without an MTP block (and no drafter) gets
 * TD_E_NOT_FOUND and a message that says so; the generator is left as it was. Free the spec before g. */
td_status td_mtp_spec_create(td_generator *g, const td_mtp_params *p, td_mtp_spec **out);
/* The step td_mtp_spec_create installs (a td_gen_step_fn, ctx = the spec), for steps that wrap it. */
td_status td_mtp_spec_step(td_generator *g, void *spec, int32_t *out, int *n, int max_out);
/* Speculation for a caller that runs the verify pass itself (a server batching the verify rows of
 * several sessions into one forward call): the spec drafts on s and judges with smp, and installs no
 * step. auto measures its costs here as td_mtp_spec_create does (s must be fresh). */
td_status td_mtp_spec_create_detached(td_session *s, td_sampler *smp, const td_mtp_params *p, td_mtp_spec **out);
/* Whether the next step should speculate (on, or auto while it pays). */
bool td_mtp_spec_drafting(const td_mtp_spec *sp);
/* toks[0] is the token chosen for the session's position (not run yet): drafts up to min(k, max_k)
 * tokens after it into toks[1..]; *k = 0 when there is no room or nothing to draft from (run toks[0]
 * alone). The caller runs toks[0..k] at the session's position with every row's logits. */
td_status td_mtp_spec_draft(td_mtp_spec *sp, int32_t *toks, int max_k, int *k);
/* Judges the drafts against logits [k+1][V] of that pass: writes the accepted drafts and the token after
 * them to out (accepted + 1 tokens) and returns how many drafts were accepted. The caller then rewinds the
 * session to its position before the pass + 1 + accepted. */
int td_mtp_spec_verify(td_mtp_spec *sp, const int32_t *toks, int k, const float *logits, int32_t *out);
/* Restores g's plain step and frees the spec. */
void td_mtp_spec_free(td_mtp_spec *sp);
void td_mtp_spec_stats(const td_mtp_spec *sp, td_mtp_stats *out);

#endif
