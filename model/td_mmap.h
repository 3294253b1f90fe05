/* td_mmap: read-only, zero-copy mappings of model files. Nothing is read until it is touched. */
#ifndef TD_MMAP_H
#define TD_MMAP_H

#include "td_status.h"

#include <stdint.h>

typedef struct td_mapped_file {
    char *path;
    const uint8_t *data; /* NULL when size == 0 */
    uint64_t size;       /* bytes */
} td_mapped_file;

td_status td_mapped_file_open(const char *path, td_mapped_file *out);
void td_mapped_file_close(td_mapped_file *f);
/* Hints that [offset, offset+len) will be read soon (MADV_WILLNEED), or is no longer needed. */
void td_mapped_file_advise_willneed(const td_mapped_file *f, uint64_t offset, uint64_t len);
void td_mapped_file_advise_dontneed(const td_mapped_file *f, uint64_t offset, uint64_t len);

/* Reads a whole (small) text file into a NUL-terminated buffer; free with td_free. Refuses files over
 * max_bytes so that a wrong path cannot make us read gigabytes. */
td_status td_read_text_file(const char *path, uint64_t max_bytes, char **out, uint64_t *len);

bool td_path_is_dir(const char *path);
bool td_path_exists(const char *path);

#endif
