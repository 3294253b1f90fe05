/* td_tensor: a named view of bytes inside a mapped model file, and the directory of all tensors of a
 * model (one or many files), looked up by name. Shapes are row-major with the outermost dimension
 * first (safetensors order); the GGUF reader reverses ggml's ne[] into this order. */
#ifndef TD_TENSOR_H
#define TD_TENSOR_H

#include "td_mmap.h"
#include "td_status.h"
#include "td_types.h"

#include <stddef.h>
#include <stdint.h>

#define TD_MAX_DIMS 8

typedef struct td_tensor {
    const char *name;            /* owned by the directory */
    td_type type;
    int ndim;
    int64_t shape[TD_MAX_DIMS];  /* shape[0] outermost; shape[ndim-1] is the row length */
    const void *data;            /* inside a mapping (or memory the directory owns) */
    uint64_t nbytes;
    int file;                    /* index of the file it came from, -1 if none */
} td_tensor;

int64_t td_tensor_numel(const td_tensor *t);
/* "[7168, 2048]" into buf, for messages. */
const char *td_tensor_shape_str(const td_tensor *t, char *buf, size_t cap);

typedef struct td_tensor_dir td_tensor_dir;

td_status td_tensor_dir_create(td_tensor_dir **out);
void td_tensor_dir_free(td_tensor_dir *dir);

/* Takes ownership of a mapping (closed with the directory); returns its index through *index. */
td_status td_tensor_dir_add_file(td_tensor_dir *dir, td_mapped_file *file, int *index);
const td_mapped_file *td_tensor_dir_file(const td_tensor_dir *dir, int index);
int td_tensor_dir_file_count(const td_tensor_dir *dir);

/* Copies the descriptor and its name. A second tensor of the same name is an error naming both files. */
td_status td_tensor_dir_add(td_tensor_dir *dir, const td_tensor *t);
/* Adds a tensor whose bytes the directory owns (moved in: freed with the directory). */
td_status td_tensor_dir_add_owned(td_tensor_dir *dir, const td_tensor *t, void *owned_data);

const td_tensor *td_tensor_dir_find(const td_tensor_dir *dir, const char *name);
size_t td_tensor_dir_count(const td_tensor_dir *dir);
const td_tensor *td_tensor_dir_at(const td_tensor_dir *dir, size_t i);

/* String metadata (safetensors __metadata__; loaders may add their own). Later values replace earlier. */
td_status td_tensor_dir_set_meta(td_tensor_dir *dir, const char *key, const char *value);
const char *td_tensor_dir_meta(const td_tensor_dir *dir, const char *key);

#endif
