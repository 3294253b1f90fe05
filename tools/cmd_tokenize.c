/* tandem tokenize: text on stdin to token ids, or ids back to text. */
#include "td_alloc.h"
#include "td_chat_setup.h"
#include "td_cli.h"
#include "td_commands.h"
#include "td_tokenizer.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void td_tokenize_help(void)
{
    printf("usage: tandem tokenize [--tokenizer <tokenizer.json|model.gguf|hf dir>] [--json] [--add-special]\n"
           "       tandem tokenize [--tokenizer T] --decode [--skip-special]\n\n"
           "Reads UTF-8 text on stdin, byte for byte (a trailing newline is part of the text), and prints its\n"
           "token ids separated by spaces, or one JSON array with --json. Special tokens written in the text\n"
           "(<｜User｜>, <think>) are matched as such; BOS/EOS are added only with --add-special.\n"
           "With --decode it reads ids (a JSON array, or integers separated by spaces or commas) and prints\n"
           "their text exactly, with no newline added.\n\n"
           "  --tokenizer T    tokenizer.json, HF model directory, or .gguf (default: the bundled model's)\n"
           "  --model M        the same as --tokenizer: a model's own tokenizer\n"
           "  --json           print the ids as one JSON array (with --decode: the text as a JSON string)\n"
           "  --add-special    add BOS (and EOS) as the tokenizer defines them\n"
           "  --decode         ids in, text out\n"
           "  --skip-special   with --decode: leave special tokens out of the text\n");
}

static td_status td_read_stdin(char **out, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = td_malloc(cap);
    if (!buf) return td_fail(TD_E_NOMEM, "out of memory");
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > ((size_t)1 << 34)) {
                td_free(buf);
                return td_fail(TD_E_ARG, "stdin is larger than 16 GiB");
            }
            char *nb = td_realloc(buf, cap *= 2);
            if (!nb) {
                td_free(buf);
                return td_fail(TD_E_NOMEM, "out of memory reading stdin (%zu bytes so far)", n);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, stdin);
        n += got;
        if (got == 0) break;
    }
    if (ferror(stdin)) {
        td_free(buf);
        return td_fail(TD_E_IO, "reading stdin failed: %s", strerror(errno));
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return TD_OK;
}

/* A JSON array of ids, or bare integers separated by spaces or commas. */
static td_status td_parse_ids(const char *text, size_t len, td_tokens *ids)
{
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i])) i++;
    if (i < len && text[i] == '[') {
        cJSON *arr = cJSON_ParseWithLength(text, len);
        if (!cJSON_IsArray(arr)) {
            cJSON_Delete(arr);
            return td_fail(TD_E_FORMAT, "stdin: not a JSON array of token ids");
        }
        int k = 0;
        const cJSON *e;
        td_status st = TD_OK;
        cJSON_ArrayForEach(e, arr)
        {
            if (!cJSON_IsNumber(e) || e->valuedouble != (double)(int64_t)e->valuedouble ||
                e->valuedouble < -2147483648.0 || e->valuedouble > 2147483647.0) {
                st = td_fail(TD_E_FORMAT, "stdin: item %d of the array is not a token id (an integer)", k);
                break;
            }
            if ((st = td_tokens_push(ids, (int32_t)e->valuedouble)) != TD_OK) break;
            k++;
        }
        cJSON_Delete(arr);
        return st;
    }
    while (i < len) {
        char *end;
        errno = 0;
        long long v = strtoll(text + i, &end, 10);
        if (end == text + i || errno || v < INT32_MIN || v > INT32_MAX)
            return td_fail(TD_E_FORMAT,
                           "stdin: '%.20s' at byte %zu is not a token id (give a JSON array or integers "
                           "separated by spaces)",
                           text + i, i);
        TD_TRY(td_tokens_push(ids, (int32_t)v));
        i = (size_t)(end - text);
        while (i < len && (isspace((unsigned char)text[i]) || text[i] == ',')) i++;
    }
    return TD_OK;
}

static void td_print_ids(const td_tokens *ids, bool json)
{
    if (json) putchar('[');
    for (int64_t i = 0; i < ids->n; i++) printf(i ? (json ? ",%d" : " %d") : "%d", ids->ids[i]);
    puts(json ? "]" : "");
}

int td_cmd_tokenize(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false, add_special = false, decode = false, skip_special = false;
    td_args a;
    td_args_init(&a, "tokenize", argc, argv);
    while (td_args_next(&a)) {
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_tokenize_help();
            return 0;
        } else if (td_args_is(&a, "--tokenizer") || td_args_is(&a, "--model")) {
            if (!(path = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--json")) {
            json = true;
        } else if (td_args_is(&a, "--add-special")) {
            add_special = true;
        } else if (td_args_is(&a, "--decode")) {
            decode = true;
        } else if (td_args_is(&a, "--skip-special")) {
            skip_special = true;
        } else {
            return td_args_unknown(&a);
        }
    }
    if (decode && add_special) return td_cli_usage_error("tokenize", "--add-special applies to encoding, not --decode");
    const char *looked;
    if (!path && !(path = td_default_model_path(&looked))) {
        fprintf(stderr, "tandem tokenize: no --tokenizer given and the default model is missing (looked for %s)\n",
                looked);
        return 2;
    }
    td_tokenizer *t = NULL;
    char *text = NULL, *out = NULL;
    size_t len = 0, out_len = 0;
    td_tokens ids = {0};
    td_status st = td_tokenizer_load(path, &t);
    if (st == TD_OK) st = td_read_stdin(&text, &len);
    if (st == TD_OK && !decode) st = td_tokenizer_encode(t, text, len, add_special, &ids);
    if (st == TD_OK && decode) st = td_parse_ids(text, len, &ids);
    if (st == TD_OK && decode) st = td_tokenizer_decode(t, ids.ids, ids.n, !skip_special, &out, &out_len);
    int rc = 0;
    if (st != TD_OK) {
        rc = td_cli_fail("tokenize", st);
    } else if (decode && json) {
        cJSON *str = cJSON_CreateString(out);
        char *s = str ? cJSON_PrintUnformatted(str) : NULL;
        if (s) puts(s);
        free(s);
        cJSON_Delete(str);
    } else if (decode) {
        rc = fwrite(out, 1, out_len, stdout) == out_len ? 0 : 1;
    } else {
        td_print_ids(&ids, json);
    }
    if (fflush(stdout) != 0) rc = 1;
    td_free(out);
    td_free(text);
    td_tokens_free(&ids);
    td_tokenizer_free(t);
    return rc;
}
