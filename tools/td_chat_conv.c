#include "td_chat_conv.h"

#include "td_alloc.h"
#include "td_mmap.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const td_role_names[TD_ROLE_COUNT] = {"system", "user", "assistant"};

void td_conv_clear(td_conv *c)
{
    for (int i = 0; i < c->n; i++) td_free((char *)c->msgs[i].content);
    c->n = 0;
}

void td_conv_free(td_conv *c)
{
    td_conv_clear(c);
    td_free(c->msgs);
    td_free(c->view);
    td_free(c->system);
    memset(c, 0, sizeof *c);
}

td_status td_conv_set_system(td_conv *c, const char *text)
{
    char *copy = NULL;
    if (text && *text && !(copy = td_strdup(text))) return td_fail(TD_E_NOMEM, "out of memory");
    td_free(c->system);
    c->system = copy;
    return TD_OK;
}

td_status td_conv_add(td_conv *c, td_chat_role role, const char *content, size_t len)
{
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 16;
        td_chat_msg *m = td_realloc(c->msgs, (size_t)cap * sizeof *m);
        if (!m) return td_fail(TD_E_NOMEM, "out of memory");
        c->msgs = m;
        td_chat_msg *v = td_realloc(c->view, (size_t)(cap + 1) * sizeof *v);
        if (!v) return td_fail(TD_E_NOMEM, "out of memory");
        c->view = v;
        c->cap = cap;
    }
    char *copy = td_strndup(content, len);
    if (!copy) return td_fail(TD_E_NOMEM, "out of memory");
    c->msgs[c->n++] = (td_chat_msg){role, copy};
    return TD_OK;
}

void td_conv_pop(td_conv *c)
{
    if (c->n > 0) td_free((char *)c->msgs[--c->n].content);
}

int td_conv_turns(const td_conv *c)
{
    int turns = 0;
    for (int i = 0; i < c->n; i++) turns += c->msgs[i].role == TD_ROLE_USER;
    return turns == 0 && c->n > 0 ? 1 : turns;
}

/* The index of the first message kept when the `drop` oldest turns go. */
static int td_conv_turn_start(const td_conv *c, int drop)
{
    if (drop <= 0) return 0;
    int users = 0;
    for (int i = 0; i < c->n; i++)
        if (c->msgs[i].role == TD_ROLE_USER && users++ == drop) return i;
    return c->n;
}

const td_chat_msg *td_conv_messages_without(td_conv *c, int drop, int *n)
{
    if (!c->view && !(c->view = td_malloc(sizeof *c->view))) {
        *n = 0;
        return NULL;
    }
    int k = 0;
    if (c->system) c->view[k++] = (td_chat_msg){TD_ROLE_SYSTEM, c->system};
    for (int i = td_conv_turn_start(c, drop); i < c->n; i++) c->view[k++] = c->msgs[i];
    *n = k;
    return c->view;
}

const td_chat_msg *td_conv_messages(td_conv *c, int *n)
{
    return td_conv_messages_without(c, 0, n);
}

void td_conv_drop_oldest(td_conv *c, int drop)
{
    int first = td_conv_turn_start(c, drop);
    for (int i = 0; i < first; i++) td_free((char *)c->msgs[i].content);
    memmove(c->msgs, c->msgs + first, (size_t)(c->n - first) * sizeof *c->msgs);
    c->n -= first;
}

td_status td_conv_save(const td_conv *c, const char *path, const char *template_name)
{
    cJSON *root = cJSON_CreateObject();
    if (template_name) cJSON_AddStringToObject(root, "template", template_name);
    cJSON *arr = cJSON_AddArrayToObject(root, "messages");
    for (int i = -1; i < c->n; i++) {
        if (i < 0 && !c->system) continue;
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", td_role_names[i < 0 ? TD_ROLE_SYSTEM : c->msgs[i].role]);
        cJSON_AddStringToObject(m, "content", i < 0 ? c->system : c->msgs[i].content);
        cJSON_AddItemToArray(arr, m);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return td_fail(TD_E_NOMEM, "out of memory");
    FILE *f = fopen(path, "wb");
    td_status st = TD_OK;
    if (!f)
        st = td_fail(TD_E_IO, "%s: cannot write: %s", path, strerror(errno));
    else {
        bool ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
        if (fclose(f) != 0 || !ok) st = td_fail(TD_E_IO, "%s: writing failed: %s", path, strerror(errno));
    }
    free(text);
    return st;
}

td_status td_conv_load(td_conv *c, const char *path)
{
    char *text;
    uint64_t len;
    TD_TRY(td_read_text_file(path, 256ull << 20, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, (size_t)len);
    td_free(text);
    if (!root) return td_fail(TD_E_FORMAT, "%s: not valid JSON", path);
    const cJSON *arr = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "messages");
    td_conv fresh = {0};
    td_status st = TD_OK;
    if (!cJSON_IsArray(arr)) st = td_fail(TD_E_FORMAT, "%s: no \"messages\" array", path);
    int i = 0;
    const cJSON *m;
    const cJSON *list = st == TD_OK ? arr : (const cJSON *)NULL;
    cJSON_ArrayForEach(m, list)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        int r = -1;
        for (int k = 0; k < TD_ROLE_COUNT && cJSON_IsString(role); k++)
            if (strcmp(role->valuestring, td_role_names[k]) == 0) r = k;
        if (r < 0 || !cJSON_IsString(content)) {
            st = td_fail(TD_E_FORMAT, "%s: message %d needs a role (system, user or assistant) and a string content",
                         path, i);
            break;
        }
        if (r == TD_ROLE_SYSTEM) {
            /* several system messages join as the templates join them */
            size_t old = fresh.system ? strlen(fresh.system) : 0, add = strlen(content->valuestring);
            char *s = td_malloc(old + add + 3);
            if (!s) {
                st = td_fail(TD_E_NOMEM, "out of memory");
                break;
            }
            snprintf(s, old + add + 3, "%s%s%s", old ? fresh.system : "", old ? "\n\n" : "", content->valuestring);
            td_free(fresh.system);
            fresh.system = s;
        } else if ((st = td_conv_add(&fresh, (td_chat_role)r, content->valuestring, strlen(content->valuestring))) !=
                   TD_OK) {
            break;
        }
        i++;
    }
    cJSON_Delete(root);
    if (st != TD_OK) {
        td_conv_free(&fresh);
        return st;
    }
    td_conv_free(c);
    *c = fresh;
    return TD_OK;
}
