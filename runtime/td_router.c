/* The MoE router: scores, group-limited selection and the weights of the chosen experts.
 *  noaux_tc (V3):  scores = sigmoid(W x); choice = scores + correction bias; a group's score is the sum
 *                  of its two best choices; keep topk_group groups; top-k by choice; weights = scores.
 *  group_limited_greedy (V2): group score = its best score.   greedy: no groups.
 * Weights are normalized when norm_topk_prob and always scaled by routed_scaling_factor.
 * Ties go to the lower index, so selection is deterministic. */
#include "td_router.h"

#include "td_ops.h"

#include <math.h>

/* Indices of the k largest of v[0..n) (descending; ties to the lower index). */
static void td_topk(const float *v, int n, int k, int32_t *idx)
{
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            bool taken = false;
            for (int q = 0; q < j && !taken; q++) taken = idx[q] == i;
            if (taken) continue;
            if (best < 0 || v[i] > v[best]) best = i;
        }
        idx[j] = best;
    }
}

static void td_route_one(const td_hparams *hp, const float *bias, const float *scores, float *choice,
                         int32_t *ids, float *w)
{
    int E = hp->n_routed_experts, k = hp->n_experts_per_tok;
    for (int e = 0; e < E; e++) choice[e] = scores[e] + (bias ? bias[e] : 0.0f);
    if (hp->topk_method != TD_TOPK_GREEDY && hp->n_group > 1) {
        int G = hp->n_group, per = E / G;
        float gscore[1024];
        int32_t keep[1024];
        for (int g = 0; g < G; g++) {
            const float *c = (hp->topk_method == TD_TOPK_NOAUX_TC ? choice : scores) + g * per;
            if (hp->topk_method == TD_TOPK_NOAUX_TC) {
                int32_t two[2];
                td_topk(c, per, 2, two);
                gscore[g] = c[two[0]] + c[two[1]];
            } else {
                float mx = c[0];
                for (int i = 1; i < per; i++) mx = c[i] > mx ? c[i] : mx;
                gscore[g] = mx;
            }
        }
        td_topk(gscore, G, hp->topk_group, keep);
        for (int g = 0; g < G; g++) {
            bool kept = false;
            for (int q = 0; q < hp->topk_group; q++) kept |= keep[q] == g;
            if (!kept)
                for (int i = 0; i < per; i++) choice[g * per + i] = -INFINITY;
        }
    }
    td_topk(choice, E, k, ids);
    double sum = 0.0;
    for (int j = 0; j < k; j++) {
        w[j] = scores[ids[j]];
        sum += w[j];
    }
    for (int j = 0; j < k; j++) {
        double v = w[j];
        if (hp->norm_topk_prob) v /= sum + 1e-20;
        w[j] = (float)(v * hp->routed_scaling_factor);
    }
}

void td_route_rows(const td_hparams *hp, const float *bias, float *scores, int64_t n, float *choice, int32_t *ids,
                   float *weights)
{
    int E = hp->n_routed_experts, k = hp->n_experts_per_tok;
    for (int64_t t = 0; t < n; t++) {
        float *sr = scores + t * E;
        if (hp->scoring == TD_SCORING_SIGMOID)
            for (int e = 0; e < E; e++) sr[e] = td_sigmoid(sr[e]);
        else
            td_softmax(sr, E);
        td_route_one(hp, bias, sr, choice, ids + t * k, weights + t * k);
    }
}
