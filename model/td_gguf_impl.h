/* td_gguf_impl.h: internals of the GGUF reader shared by its files (parser, split resolution, getters). */
#ifndef TD_GGUF_IMPL_H
#define TD_GGUF_IMPL_H

#include "td_gguf.h"

#include <string.h>

typedef struct td_gguf_part {
    td_mapped_file map;       /* the mapping, while owned by this context (see td_gguf_give_files) */
    bool owns_map;
    char *path;
    const uint8_t *base;
    uint64_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    td_gguf_kv *kvs;          /* [n_kv] */
    size_t n_kv;
    size_t *kv_sorted;        /* kv indices sorted by key */
    td_gguf_tensor *tensors;  /* [n_tensors], names owned here */
    size_t n_tensors;
    int64_t split_no, split_count, split_tensors; /* -1 when the key is absent */
    const td_gguf_kv *split_set_id; /* TD_GGUF_SPLIT_SET_ID (a string), NULL when absent */
    int dir_index;            /* index of the mapping in a tensor directory, -1 if not given */
} td_gguf_part;

struct td_gguf {
    td_gguf_part *parts;      /* [n_parts], in split order */
    int n_parts;
    td_gguf_tensor *tensors;  /* [n_tensors]: all parts, names borrowed from the parts */
    size_t n_tensors;
    size_t *by_name;          /* tensor indices sorted by name */
};

/* Parses one part's header from part->base/size (set by the caller) and validates it. */
td_status td_gguf_parse_part(td_gguf_part *part);
void td_gguf_part_free(td_gguf_part *part);
/* The value of a key in one part, NULL if absent. */
const td_gguf_kv *td_gguf_part_find_kv(const td_gguf_part *part, const char *key);

static inline uint16_t td_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t td_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t td_le64(const uint8_t *p) { return (uint64_t)td_le32(p) | (uint64_t)td_le32(p + 4) << 32; }

#endif
