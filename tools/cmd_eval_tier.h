/* tandem eval's per-position report and the bf16 tier's yardstick lookup (cmd_eval.c is the command). */
#ifndef TD_CMD_EVAL_TIER_H
#define TD_CMD_EVAL_TIER_H

#include "td_eval.h"

#include <cjson/cJSON.h>

/* The yardstick for `model` from `file` (NULL: $TANDEM_SHARED/fixtures/bf16-reference.json), its path in
 * `path`. Returns -1 when found, else the exit code after printing why: 2 when the file has no entry for
 * the model (with the ways out), 1 when it cannot be read. */
int td_eval_tier_yardstick(const char *model, const char *file, td_bf16_yardstick *y, char *path, size_t cap);

/* The rows by position (prefill, decode, all); with a yardstick (bf16 tier), its limits and where it
 * came from. */
void td_eval_tier_table(const td_eval_result *r, const td_bf16_yardstick *y, const char *path,
                        const td_bf16_limits *lim);
/* The same as JSON keys: prefill_*, decode_*, the totals (positions, top1, flipped, kld_mean_clean), and
 * with a yardstick its fixture and limits (bf16_*). */
void td_eval_tier_json(cJSON *j, const td_eval_result *r, const td_bf16_yardstick *y, const td_bf16_limits *lim);

#endif
