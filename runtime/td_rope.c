/* RoPE with YaRN frequency interpolation, on adjacent pairs (2i, 2i+1) of the rope dims. */
#include "td_rope.h"

#include <math.h>

/* freq_i for i < d/2, as in DeepSeek's YaRN: blend the interpolated (f/factor) and original
 * frequencies with a linear ramp between the correction dims of beta_fast and beta_slow. */
static void td_yarn_freqs(const td_hparams *hp, double *freq)
{
    int64_t d = hp->qk_rope_head_dim;
    double base = hp->rope_theta;
    for (int64_t i = 0; i < d / 2; i++) freq[i] = pow(base, -2.0 * (double)i / (double)d);
    if (!hp->rope.yarn) return;
    const td_rope_scaling *rs = &hp->rope;
    double orig = (double)rs->original_max_position_embeddings;
    double lo = floor(d * log(orig / (rs->beta_fast * 2.0 * M_PI)) / (2.0 * log(base)));
    double hi = ceil(d * log(orig / (rs->beta_slow * 2.0 * M_PI)) / (2.0 * log(base)));
    if (lo < 0) lo = 0;
    if (hi > (double)(d - 1)) hi = (double)(d - 1);
    if (lo == hi) hi += 0.001;
    for (int64_t i = 0; i < d / 2; i++) {
        double ramp = ((double)i - lo) / (hi - lo);
        ramp = ramp < 0 ? 0 : (ramp > 1 ? 1 : ramp);
        freq[i] = freq[i] / rs->factor * ramp + freq[i] * (1.0 - ramp);
    }
}

td_status td_rope_tables(const td_hparams *hp, int64_t n_pos, float *cos_out, float *sin_out)
{
    int64_t half = hp->qk_rope_head_dim / 2;
    double freq[4096];
    if (half > 4096) return td_fail(TD_E_UNSUPPORTED, "qk_rope_head_dim %lld is too large", (long long)hp->qk_rope_head_dim);
    td_yarn_freqs(hp, freq);
    /* YaRN's attention factor on cos/sin is mscale(mscale) / mscale(mscale_all_dim): 1 for every DeepSeek
     * config, which folds the factor into the softmax scale instead. Without both keys transformers uses
     * mscale(factor, 1). */
    double att = 1.0;
    if (hp->rope.yarn) {
        if (hp->rope.mscale != 0.0 && hp->rope.mscale_all_dim != 0.0)
            att = td_yarn_mscale(hp->rope.factor, hp->rope.mscale) / td_yarn_mscale(hp->rope.factor, hp->rope.mscale_all_dim);
        else
            att = td_yarn_mscale(hp->rope.factor, 1.0);
    }
    for (int64_t p = 0; p < n_pos; p++) {
        for (int64_t i = 0; i < half; i++) {
            double ang = (double)p * freq[i];
            cos_out[p * half + i] = (float)(cos(ang) * att);
            sin_out[p * half + i] = (float)(sin(ang) * att);
        }
    }
    return TD_OK;
}

void td_rope_rotate(const float *c, const float *sn, int64_t half, float *v)
{
    for (int64_t i = 0; i < half; i++) {
        float x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * c[i] - x1 * sn[i];
        v[2 * i + 1] = x0 * sn[i] + x1 * c[i];
    }
}
