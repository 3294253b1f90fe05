/* libFuzzer: the safetensors header parser on arbitrary bytes. */
#include "td_safetensors.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    td_st_header h;
    if (td_st_parse(data, size, "fuzz.safetensors", &h) == TD_OK) td_st_header_free(&h);
    return 0;
}
