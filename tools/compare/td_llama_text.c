/* td_llama_run tokenize and template: the text side of a GGUF, in llama.cpp and in tandem. */
#include "td_llama_jinja.h"
#include "td_llama_run.h"

#include "td_alloc.h"
#include "td_chat_template.h"
#include "td_gguf.h"
#include "td_mmap.h"
#include "td_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *td_lr_read_json(const char *path)
{
    char *text;
    uint64_t len;
    if (td_read_text_file(path, 64u << 20, &text, &len) != TD_OK) {
        fprintf(stderr, "td_llama_run: %s\n", td_errmsg());
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(text, (size_t)len);
    td_free(text);
    if (!j) fprintf(stderr, "td_llama_run: %s is not valid JSON\n", path);
    return j;
}

static td_tokenizer *td_lr_tandem_tokenizer(const char *path)
{
    td_tokenizer *t = NULL;
    if (td_tokenizer_load_gguf(path, &t) != TD_OK) fprintf(stderr, "td_llama_run: tandem: %s\n", td_errmsg());
    return t;
}

/* ------------------------------------------------------------------ tokenize */

/* llama.cpp's ids of text (special tokens parsed, no BOS), into a growing buffer; -1 on failure. */
static int td_lr_llama_ids(const struct llama_vocab *v, const char *text, size_t len, llama_token **ids, int *cap)
{
    int n = llama_tokenize(v, text, (int32_t)len, *ids, *cap, false, true);
    if (n < 0) {
        *cap = -n;
        llama_token *p = realloc(*ids, (size_t)*cap * sizeof *p);
        if (!p) return -1;
        *ids = p;
        n = llama_tokenize(v, text, (int32_t)len, *ids, *cap, false, true);
    }
    return n;
}

static void td_lr_print_ids(const char *who, const int32_t *ids, int n)
{
    fprintf(stderr, "  %-9s", who);
    for (int i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

int td_lr_cmd_tokenize(const td_lr_opts *o)
{
    if (!o->texts) {
        fprintf(stderr, "td_llama_run tokenize: --texts is required\n");
        return 2;
    }
    cJSON *cases = td_lr_read_json(o->texts);
    struct llama_model *m = td_lr_load(o->model, true, false);
    td_tokenizer *tt = td_lr_tandem_tokenizer(o->model);
    int rc = 1, n_texts = 0, n_same = 0;
    llama_token *ids = NULL;
    int cap = 0;
    td_tokens ours = {0};
    if (!cJSON_IsArray(cases) || !m || !tt) goto done;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(c, "text");
        if (!cJSON_IsString(text)) continue;
        size_t len = strlen(text->valuestring);
        n_texts++;
        int n = td_lr_llama_ids(llama_model_get_vocab(m), text->valuestring, len, &ids, &cap);
        ours.n = 0;
        td_status st = td_tokenizer_encode(tt, text->valuestring, len, false, &ours);
        bool same = n >= 0 && st == TD_OK && ours.n == n && (n == 0 || memcmp(ours.ids, ids, (size_t)n * 4) == 0);
        if (same) {
            n_same++;
        } else if (n_texts - n_same <= 5) {
            fprintf(stderr, "text %d differs: \"%.80s\"\n", n_texts - 1, text->valuestring);
            td_lr_print_ids("llama.cpp", ids, n);
            if (st == TD_OK) td_lr_print_ids("tandem", ours.ids, (int)ours.n);
            else fprintf(stderr, "  tandem    %s\n", td_errmsg());
        }
    }
    rc = n_texts > 0 && n_same == n_texts ? 0 : 1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddNumberToObject(j, "texts", n_texts);
    cJSON_AddNumberToObject(j, "same", n_same);
    td_lr_print_json(j);
done:
    td_tokens_free(&ours);
    free(ids);
    td_tokenizer_free(tt);
    if (m) llama_model_free(m);
    cJSON_Delete(cases);
    return rc;
}

/* ------------------------------------------------------------------ template */

static bool td_lr_role(const char *s, td_chat_role *out)
{
    static const char *const names[TD_ROLE_COUNT] = {"system", "user", "assistant"};
    for (int r = 0; r < TD_ROLE_COUNT; r++) {
        if (strcmp(s, names[r]) == 0) {
            *out = (td_chat_role)r;
            return true;
        }
    }
    return false;
}

/* tandem's format for the file, as `tandem chat` picks it: from its chat template, else its name. */
static td_template td_lr_tandem_format(const char *path, const td_tokenizer *tt, int thinking)
{
    char name[256] = "";
    td_gguf *g = NULL;
    if (td_gguf_open(path, &g) == TD_OK && td_gguf_find_kv(g, "general.name"))
        td_gguf_get_str_copy(g, "general.name", name, sizeof name);
    td_gguf_close(g);
    const char *why;
    td_template t = td_template_detect(td_tokenizer_chat_template(tt), name, &why);
    if (t == TD_TEMPLATE_DEEPSEEK_V31 && thinking == 1) t = TD_TEMPLATE_DEEPSEEK_V31_THINK;
    return t;
}

/* What the model sees from llama.cpp's rendering: the BOS text first when the vocabulary adds BOS. */
static char *td_lr_llama_prompt(struct llama_model *m, const td_llama_msg *msgs, int n, const td_lr_opts *o)
{
    char err[512] = "";
    char *text = td_llama_render_chat(m, msgs, n, !o->no_gen_prompt, o->thinking, err, sizeof err);
    if (!text) {
        fprintf(stderr, "td_llama_run: llama.cpp's Jinja engine failed on %s's template: %s\n", o->model, err);
        return NULL;
    }
    const struct llama_vocab *v = llama_model_get_vocab(m);
    char bos[64] = "";
    if (llama_vocab_get_add_bos(v)) {
        int k = llama_token_to_piece(v, llama_vocab_bos(v), bos, sizeof bos - 1, 0, true);
        bos[k > 0 ? k : 0] = '\0';
    }
    size_t nb = strlen(bos), nt = strlen(text);
    char *full = malloc(nb + nt + 1);
    if (full) {
        memcpy(full, bos, nb);
        memcpy(full + nb, text, nt + 1);
    }
    free(text);
    return full;
}

static void td_lr_show(const char *who, const char *s)
{
    fprintf(stderr, "  %-9s ", who);
    for (const char *p = s; *p; p++) {
        if (*p == '\n') fputs("\\n", stderr);
        else fputc(*p, stderr);
    }
    fputc('\n', stderr);
}

int td_lr_cmd_template(const td_lr_opts *o)
{
    if (!o->conv) {
        fprintf(stderr, "td_llama_run template: --conv is required\n");
        return 2;
    }
    cJSON *conv = td_lr_read_json(o->conv);
    struct llama_model *m = td_lr_load(o->model, true, false);
    td_tokenizer *tt = td_lr_tandem_tokenizer(o->model);
    int n = cJSON_GetArraySize(conv), rc = 1;
    td_llama_msg *lm = calloc((size_t)(n > 0 ? n : 1), sizeof *lm);
    td_chat_msg *tm = calloc((size_t)(n > 0 ? n : 1), sizeof *tm);
    char *theirs = NULL, *ours = NULL;
    if (!cJSON_IsArray(conv) || !m || !tt || !lm || !tm) goto done;
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(conv, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content) || !td_lr_role(role->valuestring, &tm[i].role)) {
            fprintf(stderr, "td_llama_run: %s: message %d needs a role (system, user, assistant) and content\n",
                    o->conv, i);
            goto done;
        }
        lm[i] = (td_llama_msg){role->valuestring, content->valuestring};
        tm[i].content = content->valuestring;
    }
    td_template t = td_lr_tandem_format(o->model, tt, o->thinking);
    int32_t bos_id = td_tokenizer_bos(tt);
    size_t bos_len = 0;
    const char *bos_bytes = bos_id >= 0 ? td_tokenizer_token_bytes(tt, bos_id, &bos_len) : "";
    char bos[64];
    snprintf(bos, sizeof bos, "%.*s", (int)bos_len, bos_bytes ? bos_bytes : "");
    if (td_template_render(t, tm, n, bos, !o->no_gen_prompt, &ours) != TD_OK) {
        fprintf(stderr, "td_llama_run: tandem: %s\n", td_errmsg());
        goto done;
    }
    if (!(theirs = td_lr_llama_prompt(m, lm, n, o))) goto done;
    bool same = strcmp(theirs, ours) == 0;
    if (!same) {
        fprintf(stderr, "the renderings differ (format %s):\n", td_template_name(t));
        td_lr_show("llama.cpp", theirs);
        td_lr_show("tandem", ours);
    }
    rc = same ? 0 : 1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "format", td_template_name(t));
    cJSON_AddNumberToObject(j, "messages", n);
    cJSON_AddBoolToObject(j, "same", same);
    cJSON_AddStringToObject(j, "llama", theirs);
    td_lr_print_json(j);
done:
    td_free(ours);
    free(theirs);
    free(lm);
    free(tm);
    td_tokenizer_free(tt);
    if (m) llama_model_free(m);
    cJSON_Delete(conv);
    return rc;
}
