/* libFuzzer: format detection on the first bytes, then the safetensors header parser, on arbitrary bytes
 * (as the loader meets a file). */
#include "td_model_format.h"
#include "td_safetensors.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    td_model_format kind;
    (void)td_model_detect_bytes("fuzz.safetensors", data, size < 64 ? (unsigned)size : 64, size, &kind);
    td_st_header h;
    if (td_st_parse(data, size, "fuzz.safetensors", &h) == TD_OK) td_st_header_free(&h);
    return 0;
}
