/* tandem eval's report by position (prefill and decode positions, as bf16-reference.json counts them)
 * and the lookup of the bf16 tier's yardstick. */
#include "cmd_eval_tier.h"

#include "td_cli.h"

#include <stdio.h>
#include <string.h>

/* The names the model's entry in bf16-reference.json may have: the file or directory name as given
 * (tiny-dsv3-q8_0-legacy.gguf, tiny-dsv3-bf16), the file's stem, and for HF's own file names
 * (model.safetensors, model-00001-of-00002.safetensors) the directory that holds them. */
static int td_eval_fixture_names(const char *model, char buf[3][4096], const char *names[3])
{
    char path[4096];
    snprintf(path, sizeof path, "%s", model);
    for (size_t n = strlen(path); n > 1 && path[n - 1] == '/'; n--) path[n - 1] = '\0';
    char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int k = 0;
    snprintf(buf[k], sizeof buf[k], "%s", base);
    names[k] = buf[k];
    k++;
    char *dot = strrchr(base, '.');
    if (dot && (strcmp(dot, ".gguf") == 0 || strcmp(dot, ".safetensors") == 0)) {
        snprintf(buf[k], sizeof buf[k], "%.*s", (int)(dot - base), base);
        names[k] = buf[k];
        bool hf_file = strcmp(buf[k], "model") == 0 || strncmp(buf[k], "model-", 6) == 0;
        k++;
        if (hf_file && slash) {
            *slash = '\0';
            char *up = strrchr(path, '/');
            snprintf(buf[k], sizeof buf[k], "%s", up ? up + 1 : path);
            names[k] = buf[k];
            k++;
        }
    }
    return k;
}

int td_eval_tier_yardstick(const char *model, const char *file, td_bf16_yardstick *y, char *path, size_t cap)
{
    if (file) snprintf(path, cap, "%s", file);
    else snprintf(path, cap, "%s/fixtures/bf16-reference.json", td_cli_shared_dir());
    char buf[3][4096];
    const char *names[3];
    int n = td_eval_fixture_names(model, buf, names);
    td_status st = td_bf16_yardstick_load(path, names, n, y);
    if (st == TD_E_NOT_FOUND)
        return td_cli_usage_error("eval", "--tier bf16: %s, so there is no bf16 yardstick for %s; use --tier exact, "
                                          "or --bf16-reference with a file that has an entry for it",
                                  td_errmsg(), model);
    if (st != TD_OK && !file) {
        char why[512];
        snprintf(why, sizeof why, "%s", td_errmsg());
        st = td_fail(st, "--tier bf16: %s (the default yardstick file: set TANDEM_SHARED to the shared folder, or give "
                         "--bf16-reference)", why);
    }
    return st == TD_OK ? -1 : td_cli_fail("eval", st);
}

static void td_eval_fmt(char *buf, size_t cap, const char *fmt, double v)
{
    if (v < 0) snprintf(buf, cap, "-");
    else snprintf(buf, cap, fmt, v);
}

typedef enum td_part_field { TD_PART_TOP1, TD_PART_KLD, TD_PART_FLIPPED, TD_PART_KLD_CLEAN } td_part_field;

/* One row of the per-position table: prefill, decode and all. */
static void td_eval_parts_row(const char *what, const td_eval_result *r, td_part_field field, const char *limit)
{
    const td_eval_part *parts[3] = {&r->prefill, &r->decode, &r->all};
    char c[3][24];
    for (int i = 0; i < 3; i++) {
        const td_eval_part *p = parts[i];
        if (field == TD_PART_TOP1) td_eval_fmt(c[i], sizeof c[i], "%.4f", p->positions ? td_eval_part_top1(p) : -1);
        else if (field == TD_PART_KLD) td_eval_fmt(c[i], sizeof c[i], "%.3e", p->kld_mean);
        else if (field == TD_PART_FLIPPED) td_eval_fmt(c[i], sizeof c[i], "%.0f", (double)p->flipped);
        else td_eval_fmt(c[i], sizeof c[i], "%.3e", p->kld_mean_clean);
    }
    printf("%-28s %-12s %-12s %-12s %s\n", what, c[0], c[1], c[2], limit);
}

void td_eval_tier_table(const td_eval_result *r, const td_bf16_yardstick *y, const char *path,
                        const td_bf16_limits *lim)
{
    char l[3][32] = {"", "", ""};
    bool bf16 = y != NULL;
    printf("%-28s %-12s %-12s %-12s %s\n", "by position", "prefill", "decode", "all", bf16 ? "limit (bf16 tier)" : "");
    printf("%-28s %-12lld %-12lld %-12lld\n", "positions", (long long)r->prefill.positions,
           (long long)r->decode.positions, (long long)r->all.positions);
    if (bf16) {
        snprintf(l[0], sizeof l[0], ">= %.4f", lim->top1_min);
        snprintf(l[1], sizeof l[1], "<= %lld", (long long)lim->flipped_max);
        snprintf(l[2], sizeof l[2], "<= %.3e", lim->kld_mean_clean_max);
    }
    td_eval_parts_row("top-1", r, TD_PART_TOP1, l[0]);
    td_eval_parts_row("kld mean", r, TD_PART_KLD, "");
    if (r->routing_compared) {
        td_eval_parts_row("flipped (experts differ)", r, TD_PART_FLIPPED, l[1]);
        td_eval_parts_row("kld mean clean", r, TD_PART_KLD_CLEAN, l[2]);
        if (r->exact_route_mismatch >= 0)
            printf("exact path's experts vs the reference's topk.L: %lld of %lld prompt positions differ\n",
                   (long long)r->exact_route_mismatch, (long long)r->prompt_tokens);
    }
    if (bf16)
        printf("yardstick   %s in %s, variant A: %lld positions, %lld flipped, clean KL %.3e, top-1 %.4f\n",
               y->fixture, path, (long long)y->positions, (long long)y->flipped, y->kld_mean_clean, y->top1);
}

static void td_json_num(cJSON *j, const char *key, double v, bool known)
{
    if (known) cJSON_AddNumberToObject(j, key, v);
    else cJSON_AddNullToObject(j, key);
}

/* prefill_*, decode_* and the unprefixed totals of one group of positions */
static void td_eval_json_part(cJSON *j, const char *prefix, const td_eval_part *p)
{
    char k[64];
    snprintf(k, sizeof k, "%spositions", prefix);
    cJSON_AddNumberToObject(j, k, (double)p->positions);
    snprintf(k, sizeof k, "%stop1", prefix);
    td_json_num(j, k, td_eval_part_top1(p), p->positions > 0);
    snprintf(k, sizeof k, "%skld_mean", prefix);
    if (*prefix) td_json_num(j, k, p->kld_mean, p->kld_mean >= 0); /* the total's kld_mean is the existing key */
    snprintf(k, sizeof k, "%sflipped", prefix);
    td_json_num(j, k, (double)p->flipped, p->flipped >= 0);
    snprintf(k, sizeof k, "%skld_mean_clean", prefix);
    td_json_num(j, k, p->kld_mean_clean, p->kld_mean_clean >= 0);
}

void td_eval_tier_json(cJSON *j, const td_eval_result *r, const td_bf16_yardstick *y, const td_bf16_limits *lim)
{
    td_eval_json_part(j, "prefill_", &r->prefill);
    td_eval_json_part(j, "decode_", &r->decode);
    td_eval_json_part(j, "", &r->all);
    td_json_num(j, "exact_route_mismatch", (double)r->exact_route_mismatch, r->exact_route_mismatch >= 0);
    if (!y) return;
    cJSON_AddStringToObject(j, "bf16_fixture", y->fixture);
    cJSON_AddNumberToObject(j, "bf16_kld_mean_clean_max", lim->kld_mean_clean_max);
    cJSON_AddNumberToObject(j, "bf16_flipped_max", (double)lim->flipped_max);
    cJSON_AddNumberToObject(j, "bf16_top1_min", lim->top1_min);
}
