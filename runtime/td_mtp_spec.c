#include "td_mtp_spec.h"

#include "td_alloc.h"
#include "td_mtp_cost.h"

#include <math.h>
#include <string.h>
#include <strings.h>

/* auto: the acceptance assumed before any draft has been judged, worth this many drafts. DeepSeek-V3
 * reports 0.85-0.9 for its MTP block; the bundled model accepts about 0.66. */
#define TD_MTP_PRIOR_ACCEPT 0.7
#define TD_MTP_PRIOR_DRAFTS 8.0
/* auto starts drafting only for an expected gain of 5% or more: the costs are medians of a few noisy runs
 * and model a step only roughly (the bundled model runs at 0.74-0.81x where 0.8-0.9x is expected), so a
 * thinner gain is as likely a loss, and plain decoding loses nothing there. Drafting stops below 1. */
#define TD_MTP_START_MARGIN 1.05

struct td_mtp_spec {
    td_generator *g; /* NULL for a detached spec */
    td_session *s;
    td_sampler *smp;
    td_mtp_params p;
    bool installed; /* g's step is ours */
    int64_t V;
    float *logits; /* [k+1][V]: the verify pass */
    float *q;      /* [k][V]: the draft distributions */
    float *prob;   /* [V]: the target distribution of one position */
    float *dlog;   /* [V]: a drafter's logits */
    /* auto */
    bool decided, use_mtp;
    td_mtp_cost cost; /* seconds of a plain and of a speculative step, measured or cached */
    /* totals */
    int64_t spec_steps, plain_steps, drafted, accepted;
};

static const char *const td_mtp_mode_names[TD_MTP_MODE_COUNT] = {"off", "on", "auto"};

const char *td_mtp_mode_name(td_mtp_mode m)
{
    return (unsigned)m < TD_MTP_MODE_COUNT ? td_mtp_mode_names[m] : "?";
}

bool td_mtp_mode_from_name(const char *name, td_mtp_mode *out)
{
    for (int m = 0; m < TD_MTP_MODE_COUNT; m++)
        if (strcasecmp(name, td_mtp_mode_names[m]) == 0) {
            *out = (td_mtp_mode)m;
            return true;
        }
    return false;
}

static bool td_greedy(const td_mtp_spec *sp)
{
    return td_sampler_params_of(sp->smp)->temperature <= 0;
}

/* The plain step: run what is pending, choose one token from the last logits. */
static td_status td_plain_step(td_generator *g, int32_t *out, int *n)
{
    TD_TRY(td_generator_flush_pending(g));
    out[0] = td_sampler_sample(td_generator_sampler(g), td_session_logits(td_generator_session(g)));
    *n = 1;
    return td_generator_set_pending(g, out, 1);
}

/* The token after rejecting draft d at a position with target p and draft q: from normalize((p - q)+).
 * When rounding leaves nothing there (p and q all but equal), p itself is the distribution. */
static int32_t td_residual_draw(td_mtp_spec *sp, td_sampler *smp, float *p, const float *q)
{
    double total = 0;
    for (int64_t i = 0; i < sp->V; i++) total += p[i] > q[i] ? p[i] - q[i] : 0;
    if (!(total > 0)) return td_sampler_draw(smp, p);
    for (int64_t i = 0; i < sp->V; i++) p[i] = p[i] > q[i] ? p[i] - q[i] : 0;
    return td_sampler_draw(smp, p);
}

/* k drafts after token x at position pos (x is not in the cache yet): toks = [x, d1..dk]. */
static td_status td_draft(td_mtp_spec *sp, bool greedy, int k, int32_t *toks)
{
    td_session *s = sp->s;
    td_sampler *smp = sp->smp;
    if (!sp->p.drafter) TD_TRY(td_session_mtp_draft(s, toks[0]));
    for (int i = 0; i < k; i++) {
        const float *ql = td_session_mtp_logits(s);
        if (sp->p.drafter) {
            TD_TRY(sp->p.drafter(sp->p.drafter_user, s, toks, i + 1, sp->dlog));
            ql = sp->dlog;
        }
        if (greedy) {
            toks[1 + i] = td_argmax(ql, sp->V);
        } else {
            td_sampler_probs(smp, ql, sp->q + i * sp->V);
            toks[1 + i] = td_sampler_draw(smp, sp->q + i * sp->V);
        }
        if (i + 1 < k && !sp->p.drafter) TD_TRY(td_session_mtp_chain(s, toks[1 + i]));
    }
    return TD_OK;
}

/* Verifies the drafts toks[1..k] against the main model's rows logits[0..k]: appends the accepted drafts
 * and the one token that follows them to out; returns how many drafts were accepted. */
static int td_verify(td_mtp_spec *sp, bool greedy, int k, const int32_t *toks, const float *logits, int32_t *out,
                     int *n_out)
{
    td_sampler *smp = sp->smp;
    int64_t V = sp->V;
    for (int i = 0; i < k; i++) {
        const float *row = logits + i * V;
        int32_t d = toks[1 + i];
        if (greedy) {
            int32_t y = td_argmax(row, V);
            out[(*n_out)++] = y;
            if (y != d) return i;
            continue;
        }
        td_sampler_probs(smp, row, sp->prob);
        const float *q = sp->q + i * V;
        /* keep d with probability min(1, p(d)/q(d)); q(d) > 0 because d was drawn from q */
        if (td_sampler_uniform(smp) * q[d] < sp->prob[d]) {
            out[(*n_out)++] = d;
            continue;
        }
        out[(*n_out)++] = td_residual_draw(sp, smp, sp->prob, q);
        return i;
    }
    out[(*n_out)++] = td_sampler_sample(smp, logits + k * V); /* every draft kept: one more for free */
    return k;
}

/* One speculative step. *speculated is false when there was no room to draft (token budget or context)
 * and a plain step ran instead. */
static td_status td_spec_step(td_mtp_spec *sp, td_generator *g, int32_t *out, int *n, int max_out, bool *speculated)
{
    td_session *s = sp->s;
    td_sampler *smp = sp->smp;
    bool greedy = td_greedy(sp);
    const int32_t *pend;
    int n_pend = td_generator_pending(g, &pend), n_out = 0;
    int32_t toks[TD_MTP_MAX_DRAFTS + 1];
    *speculated = false;
    if (n_pend == 0) {
        /* right after a prompt: the last logits choose the token to draft from, as a plain step would */
        toks[0] = td_sampler_sample(smp, td_session_logits(s));
        out[n_out++] = toks[0];
    } else {
        toks[0] = pend[n_pend - 1];
        TD_TRY(td_generator_set_pending(g, pend, n_pend - 1)); /* the same buffer: memmove keeps it intact */
        TD_TRY(td_generator_flush_pending(g));
    }
    int64_t pos = td_session_pos(s), room = td_session_ctx(s) - pos - 1;
    int k = sp->p.k;
    if (k > max_out - n_out - 1) k = max_out - n_out - 1;
    if (k > room) k = (int)room;
    if (k < 1 || (!sp->p.drafter && !td_session_mtp_can_draft(s))) {
        TD_TRY(td_generator_set_pending(g, toks, 1));
        if (n_out) {
            *n = n_out;
            return TD_OK;
        }
        return td_plain_step(g, out, n);
    }
    TD_TRY(td_draft(sp, greedy, k, toks));
    TD_TRY(td_generator_forward(g, toks, k + 1, sp->logits));
    int accepted = td_verify(sp, greedy, k, toks, sp->logits, out, &n_out);
    TD_TRY(td_generator_rewind(g, pos + 1 + accepted));
    td_generator_count_drafts(g, k, accepted);
    sp->drafted += k;
    sp->accepted += accepted;
    sp->spec_steps++;
    *speculated = true;
    *n = n_out;
    return td_generator_set_pending(g, out + n_out - 1, 1);
}

/* ------------------------------------------------------------------ auto */

/* The acceptance so far in this spec's life (the whole conversation), pulled toward the prior while few
 * drafts have been judged. */
static double td_auto_acceptance(const td_mtp_spec *sp)
{
    return ((double)sp->accepted + TD_MTP_PRIOR_ACCEPT * TD_MTP_PRIOR_DRAFTS) /
           ((double)sp->drafted + TD_MTP_PRIOR_DRAFTS);
}

/* Tokens a speculative step yields on average: the accepted drafts, each kept only if the ones before it
 * were, plus the token after them: 1 + a + ... + a^k. */
static double td_auto_tokens_per_step(const td_mtp_spec *sp)
{
    double a = td_auto_acceptance(sp), sum = 1, term = 1;
    for (int i = 0; i < sp->p.k; i++) sum += term *= a;
    return sum;
}

static double td_auto_speedup(const td_mtp_spec *sp)
{
    return td_auto_tokens_per_step(sp) * sp->cost.plain_s / sp->cost.spec_s;
}

/* Speculate while the expected tokens per second beat plain decoding. Plain decoding judges no drafts,
 * so once chosen it stays. */
static void td_auto_decide(td_mtp_spec *sp)
{
    bool was = sp->use_mtp;
    sp->use_mtp = td_auto_speedup(sp) > 1.0;
    if (sp->use_mtp != was && !sp->p.drafter) td_session_mtp_keep_up(sp->s, sp->use_mtp);
}

/* The cost from the cache, or measured now on the (fresh) session and cached. A session without room to
 * measure decodes plainly. */
static td_status td_auto_setup(td_mtp_spec *sp)
{
    td_session *s = sp->s;
    char key[2048];
    td_mtp_cost_key(s, sp->p.k, key, sizeof key);
    if (!td_mtp_cost_load(sp->p.cost_cache, key, &sp->cost)) {
        td_status st = td_mtp_cost_measure(s, sp->p.k, !sp->p.drafter, sp->logits, &sp->cost);
        if (st == TD_E_ARG) {
            td_err_clear();
            sp->decided = true;
            return TD_OK;
        }
        TD_TRY(st);
        td_mtp_cost_save(sp->p.cost_cache, key, &sp->cost);
    }
    sp->decided = true;
    sp->use_mtp = td_auto_speedup(sp) > TD_MTP_START_MARGIN;
    return TD_OK;
}

td_status td_mtp_spec_step(td_generator *g, void *ctx, int32_t *out, int *n, int max_out)
{
    td_mtp_spec *sp = ctx;
    bool mtp = sp->p.mode == TD_MTP_ON || (sp->p.mode == TD_MTP_AUTO && sp->use_mtp);
    if (!mtp) {
        TD_TRY(td_plain_step(g, out, n));
        sp->plain_steps++;
        return TD_OK;
    }
    bool speculated;
    TD_TRY(td_spec_step(sp, g, out, n, max_out, &speculated));
    if (speculated && sp->p.mode == TD_MTP_AUTO) td_auto_decide(sp);
    return TD_OK;
}

/* ------------------------------------------------------------------ lifecycle */

static td_status td_mtp_spec_make(td_generator *g, td_session *s, td_sampler *smp, const td_mtp_params *p,
                                  td_mtp_spec **out)
{
    *out = NULL;
    td_mtp_params params = p ? *p : (td_mtp_params){.mode = TD_MTP_ON};
    if (params.k == 0) params.k = 1;
    if ((unsigned)params.mode >= TD_MTP_MODE_COUNT) return td_fail(TD_E_ARG, "unknown MTP mode %d", params.mode);
    if (params.k < 1 || params.k > TD_MTP_MAX_DRAFTS)
        return td_fail(TD_E_ARG, "%d MTP drafts per step is out of range (1..%d)", params.k, TD_MTP_MAX_DRAFTS);
    const td_model *m = td_session_model(s);
    if (params.mode != TD_MTP_OFF && !params.drafter && !td_session_has_mtp(s))
        return td_fail(TD_E_NOT_FOUND,
                       "%s has no MTP block (model.layers.%d.* / blk.%d.nextn.*): decoding without MTP "
                       "(attach one with --mtp-from, or pass --mtp off)",
                       m->path, m->hp.n_layers, m->hp.n_layers);
    td_mtp_spec *sp = td_calloc(1, sizeof *sp);
    if (!sp) return td_fail(TD_E_NOMEM, "out of memory");
    sp->g = g;
    sp->s = s;
    sp->smp = smp;
    sp->p = params;
    sp->V = m->hp.vocab_size;
    size_t V = (size_t)sp->V, k = (size_t)params.k;
    sp->logits = td_malloc((k + 1) * V * sizeof(float));
    sp->q = td_malloc(k * V * sizeof(float));
    sp->prob = td_malloc(V * sizeof(float));
    sp->dlog = td_malloc(V * sizeof(float));
    if (!sp->logits || !sp->q || !sp->prob || !sp->dlog) {
        td_mtp_spec_free(sp);
        return td_fail(TD_E_NOMEM, "out of memory for speculation buffers (%zu logits)", (2 * k + 3) * V);
    }
    if (params.mode == TD_MTP_AUTO) {
        td_status st = td_auto_setup(sp);
        if (st != TD_OK) {
            td_mtp_spec_free(sp);
            return st;
        }
    }
    if (params.mode != TD_MTP_OFF) {
        bool drafting = params.mode == TD_MTP_ON || sp->use_mtp;
        if (!params.drafter) td_session_mtp_keep_up(s, drafting);
        if (g) {
            td_generator_set_step(g, td_mtp_spec_step, sp);
            sp->installed = true;
        }
    }
    *out = sp;
    return TD_OK;
}

td_status td_mtp_spec_create(td_generator *g, const td_mtp_params *p, td_mtp_spec **out)
{
    return td_mtp_spec_make(g, td_generator_session(g), td_generator_sampler(g), p, out);
}

td_status td_mtp_spec_create_detached(td_session *s, td_sampler *smp, const td_mtp_params *p, td_mtp_spec **out)
{
    return td_mtp_spec_make(NULL, s, smp, p, out);
}

bool td_mtp_spec_drafting(const td_mtp_spec *sp)
{
    return sp->p.mode == TD_MTP_ON || (sp->p.mode == TD_MTP_AUTO && sp->use_mtp);
}

td_status td_mtp_spec_draft(td_mtp_spec *sp, int32_t *toks, int max_k, int *k)
{
    *k = 0;
    int64_t room = td_session_ctx(sp->s) - td_session_pos(sp->s) - 1;
    int n = sp->p.k < max_k ? sp->p.k : max_k;
    if (n > room) n = (int)room;
    if (n < 1 || (!sp->p.drafter && !td_session_mtp_can_draft(sp->s))) return TD_OK;
    TD_TRY(td_draft(sp, td_greedy(sp), n, toks));
    *k = n;
    return TD_OK;
}

int td_mtp_spec_verify(td_mtp_spec *sp, const int32_t *toks, int k, const float *logits, int32_t *out)
{
    int n_out = 0, accepted = td_verify(sp, td_greedy(sp), k, toks, logits, out, &n_out);
    sp->drafted += k;
    sp->accepted += accepted;
    sp->spec_steps++;
    if (sp->p.mode == TD_MTP_AUTO) td_auto_decide(sp);
    return accepted;
}

void td_mtp_spec_free(td_mtp_spec *sp)
{
    if (!sp) return;
    if (sp->installed) td_generator_set_step(sp->g, NULL, NULL);
    if (sp->installed || !sp->g) td_session_mtp_keep_up(sp->s, false);
    td_free(sp->logits);
    td_free(sp->q);
    td_free(sp->prob);
    td_free(sp->dlog);
    td_free(sp);
}

void td_mtp_spec_stats(const td_mtp_spec *sp, td_mtp_stats *out)
{
    memset(out, 0, sizeof *out);
    out->mode = sp->p.mode;
    out->k = sp->p.k;
    out->decided = sp->decided;
    out->drafting = sp->p.mode == TD_MTP_ON || (sp->p.mode == TD_MTP_AUTO && sp->use_mtp);
    bool costed = sp->cost.plain_s > 0 && sp->cost.spec_s > 0;
    out->plain_tok_s = costed ? 1.0 / sp->cost.plain_s : 0;
    out->mtp_tok_s = costed ? td_auto_tokens_per_step(sp) / sp->cost.spec_s : 0;
    out->speedup = costed ? out->mtp_tok_s / out->plain_tok_s : NAN;
    out->spec_steps = sp->spec_steps;
    out->plain_steps = sp->plain_steps;
    out->drafted = sp->drafted;
    out->accepted = sp->accepted;
}
