/* td_gguf_convert_impl.h: internals of tandem convert shared by its files. */
#ifndef TD_GGUF_CONVERT_IMPL_H
#define TD_GGUF_CONVERT_IMPL_H

#include "td_gguf_convert.h"
#include "td_gguf_write.h"

/* Writes the tokenizer.ggml.* keys from an HF tokenizer.json (and tokenizer_config.json beside it, with
 * its chat template when with_template). */
td_status td_convert_tokenizer_json(td_gguf_writer *w, const char *path, const td_hparams *hp, bool with_template);

#endif
