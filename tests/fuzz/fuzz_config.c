/* libFuzzer: config.json parsing and validation on arbitrary text. */
#include "td_hparams.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    td_hparams hp;
    if (td_hparams_from_json((const char *)data, size, "fuzz/config.json", &hp) == TD_OK) {
        td_layer_params p;
        td_hparams_layer_params(&hp, hp.n_layers - 1, &p);
        (void)td_hparams_softmax_scale(&hp);
    }
    return 0;
}
