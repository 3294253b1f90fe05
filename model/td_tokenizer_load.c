/* Finding a tokenizer: from a path the user names, or beside/inside an opened model. */
#include "td_model.h"
#include "td_tokenizer_impl.h"

#include <libgen.h>
#include <stdio.h>
#include <string.h>

static bool td_tok_file_is_gguf(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char magic[4] = {0};
    bool yes = fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
    fclose(f);
    return yes;
}

td_status td_tokenizer_load(const char *path, td_tokenizer **out)
{
    *out = NULL;
    if (!td_path_exists(path)) return td_fail(TD_E_IO, "%s: no such file or directory", path);
    if (!td_path_is_dir(path) && td_tok_file_is_gguf(path)) return td_tokenizer_load_gguf(path, out);
    return td_tokenizer_load_json(path, out);
}

td_status td_tokenizer_for_model(const struct td_model *m, td_tokenizer **out)
{
    *out = NULL;
    if (strcmp(m->format, "gguf") == 0) return td_tokenizer_from_model_gguf(m, out);
    /* HF layout: tokenizer.json sits beside config.json (the directory, or beside a lone .safetensors) */
    char dir[4096], file[4200];
    snprintf(dir, sizeof dir, "%s", m->path);
    if (!td_path_is_dir(m->path)) {
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", m->path);
        snprintf(dir, sizeof dir, "%s", dirname(copy));
    }
    snprintf(file, sizeof file, "%s/tokenizer.json", dir);
    if (!td_path_exists(file))
        return td_fail(TD_E_NOT_FOUND,
                       "%s has no tokenizer: looked for %s. Copy the model's tokenizer.json (and "
                       "tokenizer_config.json) there, or pass one with --tokenizer",
                       m->path, file);
    return td_tokenizer_load_json(dir, out);
}
