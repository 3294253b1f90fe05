/* RoPE with YaRN frequency interpolation (DeepSeek's form), rotating adjacent pairs (2i, 2i+1). */
#ifndef TD_ROPE_H
#define TD_ROPE_H

#include "td_hparams.h"
#include "td_status.h"

#include <stdint.h>

/* cos and sin of every rope frequency at positions [0, n_pos): [n_pos][qk_rope_head_dim / 2] each, with
 * YaRN's ramp and attention factor. */
td_status td_rope_tables(const td_hparams *hp, int64_t n_pos, float *cos_out, float *sin_out);
/* Rotates the half pairs of v by one position's rows of the tables. */
void td_rope_rotate(const float *cos_row, const float *sin_row, int64_t half, float *v);

#endif
