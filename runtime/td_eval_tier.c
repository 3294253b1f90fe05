/* The bf16 tier of td_eval: its yardstick (variant A of the shared bf16-reference.json, made by
 * ../shared/fixtures/generators/bf16_reference.py) and its verdict. */
#include "td_eval.h"

#include "td_alloc.h"
#include "td_mmap.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* A number at variants.A.<group>.<key> of an entry, or an error naming it. */
static td_status td_yard_number(const cJSON *a, const char *group, const char *key, const char *src, const char *name,
                                double lo, double hi, double *out)
{
    const cJSON *g = group ? cJSON_GetObjectItemCaseSensitive(a, group) : a;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(g, key);
    if (!cJSON_IsNumber(v))
        return td_fail(TD_E_FORMAT, "%s: fixture '%s' has no number at variants.A.%s%s%s", src, name, group ? group : "",
                       group ? "." : "", key);
    if (!(v->valuedouble >= lo && v->valuedouble <= hi))
        return td_fail(TD_E_FORMAT, "%s: fixture '%s': variants.A.%s%s%s is %g, outside [%g, %g]", src, name,
                       group ? group : "", group ? "." : "", key, v->valuedouble, lo, hi);
    *out = v->valuedouble;
    return TD_OK;
}

static td_status td_yard_entry(const cJSON *entry, const char *src, const char *name, td_bf16_yardstick *out)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(entry, "variants"), "A");
    if (!cJSON_IsObject(a)) return td_fail(TD_E_FORMAT, "%s: fixture '%s' has no variants.A", src, name);
    double n;
    memset(out, 0, sizeof *out);
    snprintf(out->fixture, sizeof out->fixture, "%s", name);
    TD_TRY(td_yard_number(a, "logits", "n", src, name, 1, 1e9, &n));
    TD_TRY(td_yard_number(a, "logits", "kld_mean_clean", src, name, 0, 1e6, &out->kld_mean_clean));
    TD_TRY(td_yard_number(a, "logits", "top1", src, name, 0, 1, &out->top1));
    out->positions = (int64_t)n;
    const cJSON *flips = cJSON_GetObjectItemCaseSensitive(a, "route_mismatch_positions");
    if (!cJSON_IsArray(flips))
        return td_fail(TD_E_FORMAT, "%s: fixture '%s' has no list at variants.A.route_mismatch_positions", src, name);
    out->flipped = cJSON_GetArraySize(flips);
    if ((double)out->positions != n || out->flipped > out->positions)
        return td_fail(TD_E_FORMAT, "%s: fixture '%s': %lld flipped positions of %g", src, name, (long long)out->flipped, n);
    return TD_OK;
}

td_status td_bf16_yardstick_parse(const char *json, size_t len, const char *src, const char *const *names,
                                  int n_names, td_bf16_yardstick *out)
{
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return td_fail(TD_E_FORMAT, "%s: not a JSON list of fixtures (the output of bf16_reference.py)", src);
    }
    td_status st = TD_E_NOT_FOUND;
    for (int i = 0; i < n_names && st == TD_E_NOT_FOUND; i++) {
        const cJSON *entry;
        cJSON_ArrayForEach(entry, root)
        {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(entry, "fixture");
            if (cJSON_IsString(f) && strcmp(f->valuestring, names[i]) == 0) {
                st = td_yard_entry(entry, src, names[i], out);
                break;
            }
        }
    }
    cJSON_Delete(root);
    if (st == TD_E_NOT_FOUND) {
        char list[512] = "";
        for (int i = 0, used = 0; i < n_names && used < (int)sizeof list; i++)
            used += snprintf(list + used, sizeof list - (size_t)used, "%s'%s'", i ? ", " : "", names[i]);
        return td_fail(TD_E_NOT_FOUND, "%s has no entry for %s", src, n_names ? list : "this model");
    }
    return st;
}

td_status td_bf16_yardstick_load(const char *path, const char *const *names, int n_names, td_bf16_yardstick *out)
{
    char *text;
    uint64_t len;
    TD_TRY(td_read_text_file(path, 64u << 20, &text, &len));
    td_status st = td_bf16_yardstick_parse(text, (size_t)len, path, names, n_names, out);
    td_free(text);
    return st;
}

td_bf16_limits td_bf16_tier_limits(const td_bf16_yardstick *y)
{
    return (td_bf16_limits){
        .kld_mean_clean_max = 2 * y->kld_mean_clean, .flipped_max = y->flipped + 1, .top1_min = y->top1 - 0.02};
}

bool td_bf16_tier_passes(const td_eval_result *r, const td_bf16_limits *lim)
{
    const td_eval_part *a = &r->all;
    if (!r->routing_compared) return false;
    /* no clean position with reference logits: nothing shows that the smooth error is small */
    bool kl = a->kld_mean_clean >= 0 && a->kld_mean_clean <= lim->kld_mean_clean_max;
    return kl && a->flipped <= lim->flipped_max && td_eval_part_top1(a) >= lim->top1_min;
}
