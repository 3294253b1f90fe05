/* Non-finite values in the forward pass: the probes that find the module where a NaN or Inf first
 * appears, and the message that names it. A damaged weight (a corrupt download, a bad conversion) then
 * stops the run with the layer and module to blame instead of yielding empty text. */
#include "td_finite.h"
#include "td_session_impl.h"

#include <stdio.h>

bool td_floats_finite(const float *x, int64_t n) { return td_first_nonfinite(x, n) < 0; }

void td_probe_rows(td_finite_probe *f, int layer, td_site site, const float *x, int64_t rows, int64_t width)
{
    if (!f->on || f->found) return;
    int64_t i = td_first_nonfinite(x, rows * width);
    if (i < 0) return;
    *f = (td_finite_probe){.on = true, .found = true, .layer = layer, .site = site, .row = i / width, .expert = -1};
}

/* "layer 2 mlp.experts (model.layers.2.mlp.experts.5, expert 5)" and the like; n_layers is the MTP block */
static void td_site_describe(const td_finite_probe *f, int n_layers, char *buf, size_t cap)
{
    static const char *const module[TD_SITE_COUNT] = {
        [TD_SITE_ATTN] = "self_attn",      [TD_SITE_DENSE] = "mlp",
        [TD_SITE_ROUTER] = "mlp.gate",      [TD_SITE_EXPERTS] = "mlp.experts",
        [TD_SITE_SHARED] = "mlp.shared_experts",
    };
    int L = n_layers;
    bool mtp = f->layer == L;
    switch (f->site) {
    case TD_SITE_EMBED:
        if (mtp) snprintf(buf, cap, "the MTP block's embedding (model.layers.%d.embed_tokens, or the model's)", L);
        else snprintf(buf, cap, "the embedding (model.embed_tokens / token_embd)");
        return;
    case TD_SITE_MTP_PROJ: snprintf(buf, cap, "the MTP block's input projection (model.layers.%d.eh_proj)", L); return;
    case TD_SITE_FINAL_NORM:
        if (mtp) snprintf(buf, cap, "the MTP block's final norm (model.layers.%d.shared_head.norm)", L);
        else snprintf(buf, cap, "the final norm (model.norm / output_norm)");
        return;
    case TD_SITE_HEAD:
        if (mtp) snprintf(buf, cap, "the MTP block's output head (model.layers.%d.shared_head.head, or lm_head)", L);
        else snprintf(buf, cap, "the output head (lm_head / output)");
        return;
    default: break;
    }
    const char *prefix = mtp ? "the MTP block's " : "";
    if (f->site == TD_SITE_EXPERTS && f->expert >= 0)
        snprintf(buf, cap, "%slayer %d mlp.experts (model.layers.%d.mlp.experts.%d, expert %d)", prefix, f->layer,
                 f->layer, f->expert, f->expert);
    else
        snprintf(buf, cap, "%slayer %d %s (model.layers.%d.%s)", prefix, f->layer, module[f->site], f->layer,
                 module[f->site]);
}

td_status td_finite_error(td_engine *e, int64_t pos0, const char *what)
{
    td_finite_probe f = e->finite;
    e->finite = (td_finite_probe){0};
    if (!f.found)
        return td_fail(TD_E_FORMAT,
                       "non-finite (NaN/Inf) values in %s at positions %lld.., but a second run with a check at every "
                       "module found none: a fault in this machine's memory or CPU?",
                       what, (long long)pos0);
    char where[192];
    td_site_describe(&f, e->model->hp.n_layers, where, sizeof where);
    return td_fail(TD_E_FORMAT,
                   "non-finite (NaN/Inf) values in %s: they first appear in %s, at position %lld. The weights of %s "
                   "there are damaged: download or convert the model again",
                   what, where, (long long)(pos0 + f.row), e->model->path);
}
