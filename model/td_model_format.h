/* td_model_format: what a model path holds, decided from its first bytes and never from its name.
 * A directory is a Hugging Face checkpoint; a file starting with "GGUF" is a GGUF; a file whose first 8
 * bytes give a JSON header length followed by '{' is safetensors. Anything else is refused with a message
 * that says what the file looks like (empty, JSON, HTML, a Git LFS pointer, zeros, a truncated download)
 * and what to give instead. */
#ifndef TD_MODEL_FORMAT_H
#define TD_MODEL_FORMAT_H

#include "td_status.h"

typedef enum td_model_format {
    TD_FORMAT_HF_DIR = 0,      /* a directory: config.json plus safetensors */
    TD_FORMAT_GGUF = 1,        /* a GGUF file (any part of a split set) */
    TD_FORMAT_SAFETENSORS = 2, /* one .safetensors file, its config.json beside it */
    TD_FORMAT_COUNT
} td_model_format;

td_status td_model_detect(const char *path, td_model_format *out);

/* The same decision on the first `n` bytes of a file of `size` bytes (for tests and fuzzing); `path`
 * is only used in messages. */
td_status td_model_detect_bytes(const char *path, const unsigned char *head, unsigned n, unsigned long long size,
                                td_model_format *out);

#endif
