/* td_gguf_write: writes GGUF v3 files (one, or the parts of a split model) that llama.cpp and tandem read.
 *
 * Metadata keys keep their insertion order. Tensor data either comes from memory the caller keeps alive
 * until td_gguf_write(), or is produced row by row by a callback (so a 400 GB conversion never holds more
 * than one chunk). Split output follows llama.cpp's gguf-split: <stem>-0000N-of-0000M.gguf, every part
 * with split.no / split.count / split.tensors.count, the other metadata in the first part only. Every part
 * also carries the set's identity (TD_GGUF_SPLIT_SET_ID, td_gguf.h), a hash of the metadata and the tensor table, so
 * that a reader can refuse parts of different sets.
 *
 * Every file is written under a unique temporary name in its folder and renamed only when all files of the
 * write are complete: a failure (or SIGINT/SIGTERM, with remove_on_signal) leaves the previous output as it
 * was and no temporary file behind, and of two writers of the same output the last to finish wins with
 * whole files. */
#ifndef TD_GGUF_WRITE_H
#define TD_GGUF_WRITE_H

#include "td_gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct td_gguf_writer td_gguf_writer;

td_status td_gguf_writer_create(td_gguf_writer **out);
void td_gguf_writer_free(td_gguf_writer *w);

/* Metadata. Setting a key twice is an error (TD_E_ARG). */
td_status td_gguf_set_u32(td_gguf_writer *w, const char *key, uint32_t v);
td_status td_gguf_set_i32(td_gguf_writer *w, const char *key, int32_t v);
td_status td_gguf_set_u64(td_gguf_writer *w, const char *key, uint64_t v);
td_status td_gguf_set_f32(td_gguf_writer *w, const char *key, float v);
td_status td_gguf_set_bool(td_gguf_writer *w, const char *key, bool v);
td_status td_gguf_set_str(td_gguf_writer *w, const char *key, const char *s);
/* Arrays; string lengths from lens, or strlen when lens is NULL. */
td_status td_gguf_set_str_array(td_gguf_writer *w, const char *key, const char *const *items, const size_t *lens,
                                size_t n);
td_status td_gguf_set_i32_array(td_gguf_writer *w, const char *key, const int32_t *v, size_t n);
/* Any value read by td_gguf (nested arrays included), copied byte for byte. */
td_status td_gguf_set_value(td_gguf_writer *w, const char *key, const td_gguf_value *v);
bool td_gguf_writer_has_key(const td_gguf_writer *w, const char *key);

/* Produces rows [row0, row0 + nrows) of a tensor (a row is ne[0] elements of its type) into dst. */
typedef td_status (*td_gguf_fill_fn)(void *ctx, int64_t row0, int64_t nrows, uint8_t *dst);

/* Tensors, written in the order added. ne is in ggml order (ne[0] = row length). `data` must hold the
 * tensor's exact byte size and stay valid until td_gguf_write(); with a fill function it may be NULL. */
td_status td_gguf_add_tensor(td_gguf_writer *w, const char *name, uint32_t ggml_type, int n_dims, const int64_t *ne,
                             const void *data);
td_status td_gguf_add_tensor_fn(td_gguf_writer *w, const char *name, uint32_t ggml_type, int n_dims,
                                const int64_t *ne, td_gguf_fill_fn fill, void *ctx);
size_t td_gguf_writer_tensor_count(const td_gguf_writer *w);
uint64_t td_gguf_writer_data_bytes(const td_gguf_writer *w);

typedef struct td_gguf_write_params {
    uint32_t alignment;  /* 0: 32 (written as general.alignment only when not 32) */
    int parts;           /* 0 or 1: one file at path; N > 1: path is the stem of N split parts */
    bool sparse;         /* leave every data region as a hole (header-only skeletons, for tests) */
    bool progress;       /* a progress line on stderr */
    bool remove_on_signal; /* remove the temporary files when SIGINT or SIGTERM ends the process (only where
                            * the signal's action is the default; for programs, not for libraries' callers) */
    uint64_t fail_after_bytes; /* tests: fail as a full disk would once this many bytes are written in all
                                * (0: never) */
    int fd;              /* > 0: write the one part to this open descriptor (a memfd, for models built in
                          * memory) from its current offset, instead of creating `path` (no temporary file,
                          * no rename); the descriptor stays open, `path` only names it in messages */
} td_gguf_write_params;

/* Writes the file(s). With parts > 1 the tensors are spread over the parts in order, by bytes; `path`
 * may end in ".gguf" (dropped from the stem). */
td_status td_gguf_write(td_gguf_writer *w, const char *path, const td_gguf_write_params *p);

/* The path of split part `no` (1-based) of `count` for a stem or a path ending in .gguf. */
void td_gguf_split_path(const char *path, int no, int count, char *out, size_t cap);

#endif
