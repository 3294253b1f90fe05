/* Format detection from content: see td_model_format.h. */
#include "td_model_format.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define TD_DETECT_HEAD 64 /* bytes read from the start of a file */

static bool td_starts_with(const unsigned char *head, unsigned n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(head, prefix, k) == 0;
}

/* The first byte that is not JSON whitespace, or n. */
static unsigned td_skip_space(const unsigned char *head, unsigned n)
{
    unsigned i = 0;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\r' || head[i] == '\n')) i++;
    if (i + 3 <= n && memcmp(head + i, "\xef\xbb\xbf", 3) == 0) i += 3; /* a UTF-8 byte order mark */
    return i;
}

static bool td_looks_html(const unsigned char *head, unsigned n)
{
    unsigned i = td_skip_space(head, n);
    const char *p = (const char *)head + i;
    size_t left = n - i;
    return (left >= 9 && strncasecmp(p, "<!doctype", 9) == 0) || (left >= 5 && strncasecmp(p, "<html", 5) == 0);
}

static bool td_all_zero(const unsigned char *head, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (head[i]) return false;
    return true;
}

/* Why the bytes are not safetensors, for the message. */
static void td_not_safetensors(const unsigned char *head, unsigned n, unsigned long long size, char *why, size_t cap)
{
    if (size < 9 || n < 9) {
        snprintf(why, cap, "%llu bytes is too short for a safetensors header", size);
        return;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | head[i];
    if (hlen > size - 8)
        snprintf(why, cap, "its first 8 bytes give a header length of %llu, more than the file's %llu bytes",
                 (unsigned long long)hlen, size);
    else
        snprintf(why, cap, "no JSON header follows its 8-byte length");
}

td_status td_model_detect_bytes(const char *path, const unsigned char *head, unsigned n, unsigned long long size,
                                td_model_format *out)
{
    if (size == 0)
        return td_fail(TD_E_FORMAT, "%s: empty file (0 bytes), not a model: the download or copy did not finish; "
                                    "fetch it again", path);
    if (td_starts_with(head, n, "GGUF")) {
        *out = TD_FORMAT_GGUF;
        return TD_OK;
    }
    if (n >= 9 && head[8] == '{') {
        /* the parser reports a header that runs past the end (a truncated download) with the numbers */
        *out = TD_FORMAT_SAFETENSORS;
        return TD_OK;
    }
    if (td_starts_with(head, n, "version https://git-lfs"))
        return td_fail(TD_E_FORMAT, "%s: a Git LFS pointer (%llu bytes), not the weights: run `git lfs pull` in "
                                    "the repository it came from, or download the file itself", path, size);
    if (td_looks_html(head, n))
        return td_fail(TD_E_FORMAT, "%s: an HTML page (%llu bytes), not model weights: the download saved an error "
                                    "or login page; fetch the file again", path, size);
    unsigned first = td_skip_space(head, n);
    if (first < n && (head[first] == '{' || head[first] == '['))
        return td_fail(TD_E_FORMAT, "%s: a JSON file, not model weights: give the directory that holds "
                                    "config.json and the .safetensors files, or a .gguf file", path);
    if (n >= 4 && td_all_zero(head, n))
        return td_fail(TD_E_FORMAT, "%s: the first %u bytes are all zero, not a model file: a download that was "
                                    "allocated but never filled in? Fetch it again", path, n);
    char magic[4 * 4 + 1] = "", shown[5] = "", why[160];
    for (unsigned i = 0; i < 4 && i < n; i++) {
        snprintf(magic + 3 * i, sizeof magic - 3 * i, "%02x ", head[i]);
        shown[i] = isprint(head[i]) ? (char)head[i] : '.';
    }
    if (n) magic[3 * (n < 4 ? n : 4) - 1] = '\0';
    td_not_safetensors(head, n, size, why, sizeof why);
    return td_fail(TD_E_FORMAT,
                   "%s: not a model file tandem can read: not a GGUF (it starts with %s \"%s\"; a GGUF starts with "
                   "\"GGUF\"), not safetensors (%s). A truncated or corrupt download? Fetch it again",
                   path, magic, shown, why);
}

td_status td_model_detect(const char *path, td_model_format *out)
{
    struct stat st;
    if (stat(path, &st) != 0) return td_fail(TD_E_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        *out = TD_FORMAT_HF_DIR;
        return TD_OK;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return td_fail(TD_E_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char head[TD_DETECT_HEAD];
    size_t n = fread(head, 1, sizeof head, f);
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed) return td_fail(TD_E_IO, "%s: cannot read: %s", path, strerror(errno));
    /* the size of a pipe or device is not its length: what was read stands for it */
    unsigned long long size = S_ISREG(st.st_mode) ? (unsigned long long)st.st_size : (unsigned long long)n;
    return td_model_detect_bytes(path, head, (unsigned)n, size, out);
}
