/* td_gguf: the GGUF file format (versions 2 and 3), read in place over mmap.
 *
 * A file is: "GGUF", a version, the tensor and metadata counts, the metadata (typed key/value pairs,
 * arrays and nested arrays included), the tensor infos (name, ggml shape, ggml type, offset), padding to
 * `general.alignment`, then the data section. Everything is validated against the file size before it is
 * used: truncation, absurd counts and lengths, offsets past the end, shapes that do not match the type's
 * blocks, duplicate keys or names, overlapping tensors. Errors name the file, the key or tensor, and the
 * problem.
 *
 * Split models (`<name>-00001-of-00009.gguf` ... with `split.no`, `split.count`, `split.tensors.count`)
 * are opened as one: opening any part finds the others beside it. Metadata comes from the first part.
 * The parts must belong together: the same split.count and split.tensors.count in each, that many tensors
 * in all, and the same set identity (TD_GGUF_SPLIT_SET_ID, which tandem writes) in each, or in none (sets
 * made by llama.cpp's gguf-split).
 *
 * Nothing but headers is read: tensor data stays unmapped-in until a caller touches it. */
#ifndef TD_GGUF_H
#define TD_GGUF_H

#include "td_mmap.h"
#include "td_status.h"
#include "td_tensor.h"
#include "td_types.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TD_GGUF_MAGIC "GGUF"
#define TD_GGUF_DEFAULT_ALIGNMENT 32
#define TD_GGUF_MAX_DIMS 4
#define TD_GGUF_MAX_NAME 255       /* longest tensor name accepted (ggml itself allows 63) */
#define TD_GGUF_MAX_KEY 65535      /* longest metadata key (the spec's limit) */
#define TD_GGUF_MAX_ARRAY_DEPTH 8  /* nesting of arrays of arrays */
/* The metadata key of a split set's identity, a string in every part that tandem writes. */
#define TD_GGUF_SPLIT_SET_ID "split.tandem.set_id"

/* Metadata value types, numbered as in the file. */
typedef enum td_gguf_vtype {
    TD_GGUF_U8 = 0,
    TD_GGUF_I8 = 1,
    TD_GGUF_U16 = 2,
    TD_GGUF_I16 = 3,
    TD_GGUF_U32 = 4,
    TD_GGUF_I32 = 5,
    TD_GGUF_F32 = 6,
    TD_GGUF_BOOL = 7,
    TD_GGUF_STRING = 8,
    TD_GGUF_ARRAY = 9,
    TD_GGUF_U64 = 10,
    TD_GGUF_I64 = 11,
    TD_GGUF_F64 = 12,
    TD_GGUF_VTYPE_COUNT
} td_gguf_vtype;

const char *td_gguf_vtype_name(td_gguf_vtype t);
/* Bytes of a scalar value type; 0 for strings and arrays. */
int td_gguf_vtype_size(td_gguf_vtype t);

/* A metadata value, pointing into the mapping (valid while the td_gguf is open). */
typedef struct td_gguf_value {
    td_gguf_vtype type;
    const uint8_t *data;      /* scalars: the little-endian bytes; strings: the UTF-8 bytes (no NUL);
                               * arrays: the first element */
    uint64_t len;             /* strings: bytes; arrays: elements */
    td_gguf_vtype elem_type;  /* arrays */
    uint64_t size;            /* bytes of the payload at data */
    const uint64_t *offsets;  /* arrays of strings or arrays: byte offset of each element from data (NULL
                               * for scalar elements, and inside nested arrays) */
} td_gguf_value;

typedef struct td_gguf_kv {
    const char *key;          /* NUL-terminated copy */
    td_gguf_value v;
} td_gguf_kv;

/* ggml tensor types: every id ggml defines, whether tandem computes with it or not. */
typedef struct td_ggml_type_info {
    const char *name;         /* "Q4_K", "IQ2_XS" */
    int block_elems;
    int block_bytes;
    td_type type;             /* TD_TYPE_COUNT when tandem cannot compute with it */
} td_ggml_type_info;

/* NULL for ids ggml does not define (removed ids, other projects' private types). */
const td_ggml_type_info *td_ggml_type(uint32_t id);
/* The ggml id of a tandem type; false when GGUF cannot store it. */
bool td_ggml_type_from_td(td_type t, uint32_t *id);

typedef struct td_gguf_tensor {
    const char *name;         /* NUL-terminated copy */
    uint32_t ggml_type;
    int n_dims;
    int64_t ne[TD_GGUF_MAX_DIMS]; /* ggml order: ne[0] is the contiguous row length; unused dims are 1 */
    uint64_t offset;          /* from the start of its file's data section */
    uint64_t nbytes;          /* 0 when the type is unknown */
    const uint8_t *data;      /* inside the mapping; not read by the parser */
    int file;                 /* part index (0 for single files) */
} td_gguf_tensor;

typedef struct td_gguf td_gguf;

/* Opens a GGUF file, or every part of a split model given any one part. */
td_status td_gguf_open(const char *path, td_gguf **out);
/* Parses a single GGUF image held in memory (not copied; it must outlive the context). */
td_status td_gguf_open_memory(const uint8_t *data, uint64_t size, const char *name, td_gguf **out);
/* The n parts of a split model held in memory, in order, checked as td_gguf_open checks the files of one
 * (their split keys, tensor counts and set identity). One image that says it is a part of several is
 * refused. */
td_status td_gguf_open_memory_parts(const uint8_t *const *data, const uint64_t *size, int n, const char *name,
                                    td_gguf **out);
void td_gguf_close(td_gguf *g);

int td_gguf_file_count(const td_gguf *g);
const char *td_gguf_file_path(const td_gguf *g, int part);
uint64_t td_gguf_file_size(const td_gguf *g, int part);
/* Offset of a part's data section (= bytes of its header, padding included). */
uint64_t td_gguf_data_offset(const td_gguf *g, int part);
uint32_t td_gguf_version(const td_gguf *g);
uint32_t td_gguf_alignment(const td_gguf *g);
/* Moves the mappings into a tensor directory (which then owns them); *first is the dir's index of part 0.
 * The context keeps pointing into them, so it must be closed no later than the directory. */
td_status td_gguf_give_files(td_gguf *g, td_tensor_dir *dir, int *first);

/* Metadata of the first part. */
size_t td_gguf_kv_count(const td_gguf *g);
const td_gguf_kv *td_gguf_kv_at(const td_gguf *g, size_t i);
const td_gguf_kv *td_gguf_find_kv(const td_gguf *g, const char *key);

/* Typed getters. A missing key is TD_E_NOT_FOUND, a value of another kind TD_E_FORMAT; both leave a
 * message naming the file and the key. Integers of any width and signedness are accepted when the value
 * fits; floats accept F32 and F64. */
td_status td_gguf_get_int(const td_gguf *g, const char *key, int64_t *out);
td_status td_gguf_get_uint(const td_gguf *g, const char *key, uint64_t *out);
td_status td_gguf_get_float(const td_gguf *g, const char *key, double *out);
td_status td_gguf_get_bool(const td_gguf *g, const char *key, bool *out);
/* The string's bytes in the mapping (not NUL-terminated). */
td_status td_gguf_get_str(const td_gguf *g, const char *key, const char **s, size_t *len);
/* Copies a string value into buf as a C string; TD_E_FORMAT if it does not fit or holds a NUL. */
td_status td_gguf_get_str_copy(const td_gguf *g, const char *key, char *buf, size_t cap);
td_status td_gguf_get_array(const td_gguf *g, const char *key, td_gguf_value *out);

/* Elements of an array value (i < arr->len, checked: TD_E_ARG otherwise). */
td_status td_gguf_array_elem(const td_gguf_value *arr, uint64_t i, td_gguf_value *out);
td_status td_gguf_array_int(const td_gguf_value *arr, uint64_t i, int64_t *out);
td_status td_gguf_array_float(const td_gguf_value *arr, uint64_t i, double *out);
td_status td_gguf_array_str(const td_gguf_value *arr, uint64_t i, const char **s, size_t *len);
/* A scalar value as a number (integers, floats and bools); false for strings and arrays or when an
 * unsigned value does not fit int64. */
bool td_gguf_value_int(const td_gguf_value *v, int64_t *out);
bool td_gguf_value_float(const td_gguf_value *v, double *out);

/* Tensors of all parts, in file order. */
size_t td_gguf_tensor_count(const td_gguf *g);
const td_gguf_tensor *td_gguf_tensor_at(const td_gguf *g, size_t i);
const td_gguf_tensor *td_gguf_find_tensor(const td_gguf *g, const char *name);
/* The tandem type of a tensor, or an error that names the tensor and its ggml type when tandem cannot
 * compute with it (IQ2_XS, IQ3_S, IQ1_M, TQ1_0, MXFP4, other projects' private types, ...). */
td_status td_gguf_tensor_type(const td_gguf *g, const td_gguf_tensor *t, td_type *out);
/* Fills a td_tensor (shape in row-major order: ggml's ne reversed) for the tensor's bytes, under `name`
 * (NULL: the GGUF name). The type must be computable (see td_gguf_tensor_type). */
td_status td_gguf_tensor_view(const td_gguf *g, const td_gguf_tensor *t, const char *name, td_tensor *out);

#endif
