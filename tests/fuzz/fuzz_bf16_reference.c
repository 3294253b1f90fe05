/* libFuzzer: the bf16 tier's yardstick reader (bf16-reference.json) on arbitrary text, looking up a name
 * the seeds use and one they do not. */
#include "td_eval.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"absent", "tiny-dsv3-bf16", "b.gguf"};
    td_bf16_yardstick y;
    if (td_bf16_yardstick_parse((const char *)data, size, "fuzz/bf16-reference.json", names, 3, &y) == TD_OK) {
        td_bf16_limits lim = td_bf16_tier_limits(&y);
        td_eval_result r = {.routing_compared = true, .all = {.positions = y.positions, .top1 = y.positions}};
        (void)td_bf16_tier_passes(&r, &lim);
    }
    return 0;
}
