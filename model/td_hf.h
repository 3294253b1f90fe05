/* td_hf: the official Hugging Face layout: config.json plus model.safetensors, or shards listed in
 * model.safetensors.index.json. */
#ifndef TD_HF_H
#define TD_HF_H

#include "td_hparams.h"
#include "td_tensor.h"

/* `path` is the model directory. Fills hp from config.json and adds every shard's tensors to dir. */
td_status td_hf_load(const char *path, td_hparams *hp, td_tensor_dir *dir);
/* `path` is one .safetensors file: hp from the config.json beside it, and the file's tensors. */
td_status td_hf_load_file(const char *path, td_hparams *hp, td_tensor_dir *dir);
/* Adds the tensors of a .safetensors file, or of every shard of an HF directory, to dir (no config).
 * With only_prefix, just the tensors whose names start with it (shards without any are not mapped). */
td_status td_hf_load_weights(const char *path, td_tensor_dir *dir, const char *only_prefix);

#endif
