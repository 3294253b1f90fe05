/* td_mtp_cost: what a speculative decode step costs against a plain one, for one model on one machine:
 * the number `--mtp auto` decides from. It is measured once, on the session before its first prompt
 * (a few throwaway tokens, then rewound), and kept in a small cache file keyed by the model file, the CPU,
 * the kernels and the number of drafts, so that later runs decide at once without measuring. */
#ifndef TD_MTP_COST_H
#define TD_MTP_COST_H

#include "td_engine.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct td_mtp_cost {
    double plain_s; /* one plain step: a 1-token forward and the argmax of its logits */
    double spec_s;  /* one speculative step: k MTP drafts (the first running the two MTP rows an accepted
                       draft leaves), a (k+1)-token verify with every row's logits, the argmaxes */
} td_mtp_cost;

/* Times both steps a few times each and keeps the medians. The session must have room for k + 3 more
 * positions; it is left at the position it had (what ran there is forgotten). With
 * mtp_drafts false (a caller-supplied drafter), only the verify is timed. logits: [(k+1)][V] scratch. */
td_status td_mtp_cost_measure(td_session *s, int k, bool mtp_drafts, float *logits, td_mtp_cost *out);

/* The cache file: $XDG_CACHE_HOME/tandem/mtp-cost.tsv, else ~/.cache/tandem/mtp-cost.tsv; NULL without
 * either variable. Delete it to measure again. */
const char *td_mtp_cost_cache_path(char *buf, size_t cap);

/* The cache line's key for this session's model and machine: the model file's path, size and time, the CPU
 * model, the kernels and threads, and k. */
void td_mtp_cost_key(td_session *s, int k, char *buf, size_t cap);
/* False when the file or the key is missing (or the line is malformed). */
bool td_mtp_cost_load(const char *cache, const char *key, td_mtp_cost *out);
/* Best effort: a cache that cannot be written is left as it was (the next run measures again). */
void td_mtp_cost_save(const char *cache, const char *key, const td_mtp_cost *c);

#endif
