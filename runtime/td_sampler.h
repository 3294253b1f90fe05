/* td_sampler: choosing the next token from logits.
 * Greedy when temperature <= 0; otherwise softmax(logits / T), then min-p, top-k and top-p, then a draw
 * from a seeded generator. The pieces are separate so that speculative decoding can reuse them: the
 * final distribution over the vocabulary, a draw from any such distribution, and a uniform draw.
 * Scratch is sized at creation: nothing is allocated per token. */
#ifndef TD_SAMPLER_H
#define TD_SAMPLER_H

#include "td_status.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct td_sampler_params {
    double temperature; /* 0: greedy (argmax, lowest id on a tie); up to 100 */
    int top_k;          /* keep the k most likely tokens; 0: all */
    double top_p;       /* keep the smallest set whose mass reaches p, in (0, 1]; 1: all */
    double min_p;       /* drop tokens below min_p x the top probability, in [0, 1); 0: none */
    uint64_t seed;
} td_sampler_params;

/* Greedy, no filters, seed 0. */
td_sampler_params td_sampler_greedy(void);
/* Checks ranges; the message names the bad value. */
td_status td_sampler_params_check(const td_sampler_params *p);
/* Sets one value from text, by name: "temp" (or "temperature"), "top_k", "top_p", "min_p", "seed" ('-' and
 * '_' alike). The one check of sampling values, for command-line flags and chat's /set alike: TD_E_ARG
 * with a message that names the value and its range, TD_E_NOT_FOUND for an unknown name. p is changed
 * only on success. */
td_status td_sampler_params_set(td_sampler_params *p, const char *name, const char *value);
/* The names td_sampler_params_set takes, for help and error messages. */
const char *td_sampler_param_names(void);
/* A seed from the operating system (getrandom), below 2^53 so that JSON numbers carry it exactly. */
uint64_t td_sampler_random_seed(void);

typedef struct td_sampler td_sampler;

td_status td_sampler_create(int64_t n_vocab, const td_sampler_params *p, td_sampler **out);
void td_sampler_free(td_sampler *s);
/* New parameters; the generator is re-seeded only when the seed changes. */
td_status td_sampler_set_params(td_sampler *s, const td_sampler_params *p);
const td_sampler_params *td_sampler_params_of(const td_sampler *s);
void td_sampler_reseed(td_sampler *s, uint64_t seed);
int64_t td_sampler_n_vocab(const td_sampler *s);

/* The next token from logits [n_vocab]. */
int32_t td_sampler_sample(td_sampler *s, const float *logits);

/* The distribution sampling draws from: probs [n_vocab], zero outside the kept set, summing to 1
 * (one-hot at the argmax when greedy). */
void td_sampler_probs(td_sampler *s, const float *logits, float *probs);
/* A token drawn from probs [n_vocab] (non-negative, not necessarily normalized; all zero gives 0). */
int32_t td_sampler_draw(td_sampler *s, const float *probs);
/* Uniform in [0, 1). */
double td_sampler_uniform(td_sampler *s);

/* The index of the largest value (the lowest on a tie). */
int32_t td_argmax(const float *x, int64_t n);

#endif
