/* The MoE router's choice (noaux_tc, group_limited_greedy, greedy), on router logits in host memory. */
#ifndef TD_ROUTER_H
#define TD_ROUTER_H

#include "td_hparams.h"

#include <stdint.h>

/* scores [n][E]: the router's logits, activated in place (sigmoid or softmax); then ids [n][k] and
 * weights [n][k] of the chosen experts. bias is e_score_correction_bias [E] or NULL; choice is [E] of
 * scratch. */
void td_route_rows(const td_hparams *hp, const float *bias, float *scores, int64_t n, float *choice, int32_t *ids,
                   float *weights);

#endif
