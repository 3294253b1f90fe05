/* The session's MTP bookkeeping: which MTP rows are valid, the ring of recent hidden rows they are made
 * from, lazy drafting, eager catch-up during long inputs, and chained drafts.
 *
 * Row i of the MTP cache needs the main model's final-normed hidden h_i and the token at i+1. The
 * session records every position's token and keeps h for the last TD_MTP_RING positions. A draft runs
 * every row from the last valid one up to pos-1 in one batched MTP forward, the last row with the token
 * chosen for position pos; in steady decoding that is one or two rows per step. */
#include "td_alloc.h"
#include "td_session_impl.h"

#include <string.h>

static float *td_mtp_floats(size_t n)
{
    return td_malloc_aligned((n ? n : 1) * sizeof(float), 64);
}

td_status td_mtp_state_alloc(td_session *s)
{
    const td_hparams *hp = &s->e->model->hp;
    td_mtp_state *m = &s->mtp;
    size_t H = (size_t)hp->hidden_size, R = TD_MTP_RING;
    m->ring = td_mtp_floats(R * H);
    m->chunk_hidden = td_mtp_floats((size_t)s->max_batch * H);
    m->rows = td_mtp_floats(R * H);
    m->out = td_mtp_floats(R * H);
    m->last = td_mtp_floats(H);
    m->next = td_malloc(R * sizeof(int32_t));
    if (!m->ring || !m->chunk_hidden || !m->rows || !m->out || !m->last || !m->next)
        return td_fail(TD_E_NOMEM, "out of memory for the MTP bookkeeping (%zu hidden rows)",
                       (size_t)s->max_batch + 3 * R);
    return TD_OK;
}

void td_mtp_state_free(td_session *s)
{
    td_mtp_state *m = &s->mtp;
    td_free(m->ring);
    td_free(m->chunk_hidden);
    td_free(m->rows);
    td_free(m->out);
    td_free(m->last);
    td_free(m->next);
}

void td_session_mtp_keep_up(td_session *s, bool on)
{
    s->mtp.keep_up = on;
}

static const float *td_ring_row(const td_session *s, int64_t pos)
{
    return s->mtp.ring + (pos % TD_MTP_RING) * s->e->model->hp.hidden_size;
}

/* The row a run starts from: the first not yet valid, or the oldest whose hidden the ring still holds.
 * Rows older than that cannot be recomputed without rerunning the main model; they stay as they were
 * (stale, or zero if never run). That only makes drafts worse, never the output wrong, and it happens
 * only after a rewind deeper than the ring or a long input with keep_up off. */
static int64_t td_mtp_first_row(const td_session *s)
{
    return s->mtp.good > s->mtp.ring_lo ? s->mtp.good : s->mtp.ring_lo;
}

bool td_session_mtp_can_draft(const td_session *s)
{
    return s->e->model->mtp && s->pos >= 1 && s->mtp.ring_lo <= s->pos - 1;
}

/* MTP rows lo..hi whose hidden rows the ring holds (positions < the chunk start) */
static td_status td_mtp_rows_from_ring(td_session *s, int64_t lo, int64_t hi, int32_t last_next)
{
    td_mtp_state *m = &s->mtp;
    int64_t H = s->e->model->hp.hidden_size, n = hi - lo + 1;
    for (int64_t j = 0; j < n; j++) {
        memcpy(m->rows + j * H, td_ring_row(s, lo + j), (size_t)H * sizeof(float));
        m->next[j] = lo + j + 1 < s->pos ? s->tokens[lo + j + 1] : last_next;
    }
    s->mtp_pos = lo;
    return td_session_mtp_forward(s, m->rows, m->next, n, NULL, m->out);
}

td_status td_mtp_after_chunk(td_session *s, const int32_t *tokens, int64_t p0, int64_t n, const float *hidden)
{
    td_mtp_state *m = &s->mtp;
    int64_t H = s->e->model->hp.hidden_size, end = p0 + n;
    m->chainable = false;
    if (m->good == p0 && tokens[0] != m->good_next) m->good = p0 - 1; /* row p0-1 guessed another token */
    /* catch up while the chunk's hidden rows are at hand, before the ring forgets rows still needed */
    if (m->keep_up && end - m->good > TD_MTP_RING / 2) {
        int64_t lo = td_mtp_first_row(s), hi = end - 2; /* row end-1 waits for its next token */
        if (lo < p0) TD_TRY(td_mtp_rows_from_ring(s, lo, p0 - 1 < hi ? p0 - 1 : hi, 0));
        int64_t from = lo > p0 ? lo : p0;
        if (from <= hi) {
            s->mtp_pos = from;
            TD_TRY(
                td_session_mtp_forward(s, hidden + (from - p0) * H, s->tokens + from + 1, hi - from + 1, NULL, NULL));
        }
        if (hi + 1 > m->good) m->good = hi + 1;
    }
    for (int64_t p = end - TD_MTP_RING > p0 ? end - TD_MTP_RING : p0; p < end; p++)
        memcpy(m->ring + (p % TD_MTP_RING) * H, hidden + (p - p0) * H, (size_t)H * sizeof(float));
    if (m->ring_lo < end - TD_MTP_RING) m->ring_lo = end - TD_MTP_RING; /* the slots just written evict these */
    return TD_OK;
}

void td_mtp_on_rewind(td_session *s, int64_t pos)
{
    td_mtp_state *m = &s->mtp;
    /* forgetting position pos changes the next token of row pos-1; rewinding to the current position
     * forgets nothing (a row guessed for it is checked when that position runs) */
    int64_t keep = pos < s->pos ? (pos > 0 ? pos - 1 : 0) : pos;
    if (m->good > keep) m->good = keep;
    if (s->mtp_pos > keep) s->mtp_pos = keep;
    if (m->ring_lo > pos) m->ring_lo = pos; /* the ring holds positions [ring_lo, pos) */
    m->chainable = false;
}

td_status td_session_mtp_draft(td_session *s, int32_t next_token)
{
    const td_model *mod = s->e->model;
    td_mtp_state *m = &s->mtp;
    if (!mod->mtp) return td_fail(TD_E_NOT_FOUND, "%s has no MTP block to draft with", mod->path);
    int64_t p = s->pos, H = mod->hp.hidden_size;
    if (!td_session_mtp_can_draft(s))
        return td_fail(TD_E_ARG, "an MTP draft needs the hidden state of position %lld: run a token first",
                       (long long)p - 1);
    if (next_token < 0 || next_token >= mod->hp.vocab_size)
        return td_fail(TD_E_ARG, "draft token %d is outside the vocabulary (0..%lld)", next_token,
                       (long long)mod->hp.vocab_size - 1);
    if (m->good > p - 1) m->good = p - 1; /* row p-1 is run again with this next token */
    int64_t lo = td_mtp_first_row(s);
    TD_TRY(td_mtp_rows_from_ring(s, lo, p - 1, next_token));
    memcpy(m->last, m->out + (p - 1 - lo) * H, (size_t)H * sizeof(float));
    m->good = p;
    m->good_next = next_token;
    m->chainable = true;
    return TD_OK;
}

td_status td_session_mtp_chain(td_session *s, int32_t token)
{
    td_mtp_state *m = &s->mtp;
    if (!s->e->model->mtp) return td_fail(TD_E_NOT_FOUND, "%s has no MTP block to draft with", s->e->model->path);
    if (!m->chainable) return td_fail(TD_E_ARG, "a chained MTP draft must follow a draft or another chained draft");
    int64_t H = s->e->model->hp.hidden_size;
    /* the row lands at mtp_pos, past the valid rows: the next draft starts again from m->good */
    TD_TRY(td_session_mtp_forward(s, m->last, &token, 1, NULL, m->out));
    memcpy(m->last, m->out, (size_t)H * sizeof(float));
    m->chainable = true;
    return TD_OK;
}
