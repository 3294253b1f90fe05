#include "td_mmap.h"

#include "td_alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

td_status td_mapped_file_open(const char *path, td_mapped_file *out)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return td_fail(TD_E_IO, "%s: cannot open: %s (check the path and its permissions)", path,
                       strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return td_fail(TD_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return td_fail(TD_E_IO, "%s: is a directory, expected a file", path);
    }
    out->path = td_strdup(path);
    if (!out->path) {
        close(fd);
        return td_fail(TD_E_NOMEM, "%s: out of memory", path);
    }
    out->size = (uint64_t)st.st_size;
    if (out->size > 0) {
        void *p = mmap(NULL, (size_t)out->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            td_free(out->path);
            out->path = NULL;
            return td_fail(TD_E_IO, "%s: cannot map %llu bytes: %s", path, (unsigned long long)out->size,
                           strerror(e));
        }
        out->data = p;
    }
    close(fd); /* the mapping keeps the file alive */
    return TD_OK;
}

void td_mapped_file_close(td_mapped_file *f)
{
    if (!f) return;
    if (f->data) munmap((void *)f->data, (size_t)f->size);
    td_free(f->path);
    memset(f, 0, sizeof *f);
}

static void td_advise(const td_mapped_file *f, uint64_t offset, uint64_t len, int advice)
{
    if (!f->data || offset >= f->size) return;
    long page = sysconf(_SC_PAGESIZE);
    uint64_t start = offset / (uint64_t)page * (uint64_t)page;
    uint64_t end = offset + len > f->size ? f->size : offset + len;
    madvise((void *)(f->data + start), (size_t)(end - start), advice);
}

void td_mapped_file_advise_willneed(const td_mapped_file *f, uint64_t offset, uint64_t len)
{
    td_advise(f, offset, len, MADV_WILLNEED);
}

void td_mapped_file_advise_dontneed(const td_mapped_file *f, uint64_t offset, uint64_t len)
{
    td_advise(f, offset, len, MADV_DONTNEED);
}

td_status td_read_text_file(const char *path, uint64_t max_bytes, char **out, uint64_t *len)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return td_fail(TD_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || S_ISDIR(st.st_mode)) {
        fclose(fp);
        return td_fail(TD_E_IO, "%s: not a readable file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(fp);
        return td_fail(TD_E_FORMAT, "%s: %llu bytes is too large for this kind of file (limit %llu)", path,
                       (unsigned long long)st.st_size, (unsigned long long)max_bytes);
    }
    char *buf = td_malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(fp);
        return td_fail(TD_E_NOMEM, "%s: out of memory reading %llu bytes", path, (unsigned long long)st.st_size);
    }
    size_t got = fread(buf, 1, (size_t)st.st_size, fp);
    fclose(fp);
    if (got != (size_t)st.st_size) {
        td_free(buf);
        return td_fail(TD_E_IO, "%s: short read (%zu of %llu bytes)", path, got, (unsigned long long)st.st_size);
    }
    buf[got] = '\0';
    *out = buf;
    if (len) *len = got;
    return TD_OK;
}

bool td_path_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool td_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}
