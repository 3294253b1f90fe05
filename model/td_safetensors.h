/* td_safetensors: the safetensors format (8-byte little-endian header length, a JSON header, then the
 * data region). The parser validates everything against the file size before any tensor is used. */
#ifndef TD_SAFETENSORS_H
#define TD_SAFETENSORS_H

#include "td_status.h"
#include "td_tensor.h"

#include <stdint.h>

#define TD_ST_MAX_HEADER (100u << 20) /* the format's own limit on the JSON header */

typedef struct td_st_entry {
    char *name;
    td_type type;
    int ndim;
    int64_t shape[TD_MAX_DIMS];
    uint64_t begin, end; /* relative to the start of the data region */
} td_st_entry;

typedef struct td_st_header {
    td_st_entry *entries;
    int n_entries;
    char **meta_keys, **meta_values; /* __metadata__, string values only */
    int n_meta;
    uint64_t data_offset; /* = 8 + header length */
} td_st_header;

/* Parses and validates the header of a safetensors image of `size` bytes. `path` is for messages. */
td_status td_st_parse(const uint8_t *bytes, uint64_t size, const char *path, td_st_header *out);
void td_st_header_free(td_st_header *h);

/* Maps a .safetensors file and adds its tensors (and __metadata__) to the directory. With only_prefix,
 * only tensors whose names start with it are added (and the file is dropped if none do). */
td_status td_st_load(const char *path, td_tensor_dir *dir, const char *only_prefix);

/* Maps the dtype strings of the format ("BF16", "F8_E4M3", ...); false if unknown. */
bool td_st_dtype(const char *s, td_type *out);

#endif
