/* tandem eval --write-reference: a reference file in the fixtures' format from a model's own outputs, so
 * that any model (a synthetic one included) can be checked against itself across kernels, KV types and
 * placements. The outputs come from exactly the calls td_eval_run makes, in the same order. */
#include "td_eval.h"

#include "td_alloc.h"
#include "td_ops.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct td_ref_tensor {
    const char *name;
    const char *dtype;   /* "I32" or "F32" */
    int64_t shape[2];
    int ndim;
    const void *data;
    uint64_t bytes;
} td_ref_tensor;

/* The smallest top-1 margin of a row of logits over the greedy steps. */
static double td_margin(const float *x, int64_t n)
{
    float a = -INFINITY, b = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] > a) b = a, a = x[i];
        else if (x[i] > b) b = x[i];
    }
    return (double)a - (double)b;
}

static td_status td_st_write(const char *path, const td_ref_tensor *t, int n, cJSON *meta)
{
    cJSON *h = cJSON_CreateObject();
    cJSON_AddItemToObject(h, "__metadata__", meta);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(h, t[i].name);
        cJSON_AddStringToObject(e, "dtype", t[i].dtype);
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t[i].ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + t[i].bytes)));
        off += t[i].bytes;
    }
    char *json = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!json) return td_fail(TD_E_NOMEM, "out of memory");
    size_t len = strlen(json), padded = (len + 7) / 8 * 8; /* the data region starts 8-aligned */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    td_status st = f ? TD_OK : td_fail(TD_E_IO, "%s: cannot create: %s", tmp, strerror(errno));
    uint8_t hl[8];
    for (int i = 0; i < 8; i++) hl[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    bool ok = f && fwrite(hl, 1, 8, f) == 8 && fwrite(json, 1, len, f) == len;
    for (size_t i = len; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    for (int i = 0; ok && i < n; i++) ok = fwrite(t[i].data, 1, (size_t)t[i].bytes, f) == t[i].bytes;
    if (f && fclose(f) != 0) ok = false;
    if (st == TD_OK && !ok) st = td_fail(TD_E_IO, "%s: write failed: %s (disk full?)", tmp, strerror(errno));
    if (st == TD_OK && rename(tmp, path) != 0) st = td_fail(TD_E_IO, "%s: cannot rename: %s", tmp, strerror(errno));
    if (st != TD_OK && f) remove(tmp);
    free(json);
    return st;
}

td_status td_eval_write_reference(td_session *s, const int32_t *prompt, int64_t T, int64_t G, const char *path,
                                  td_eval_reference_info *info)
{
    td_model *m = td_engine_model(td_session_engine(s));
    int64_t V = m->hp.vocab_size, H = m->hp.hidden_size;
    if (td_session_pos(s) != 0) return td_fail(TD_E_ARG, "writing a reference needs a fresh session");
    if (T < 2 || G < 1 || T + G > td_session_ctx(s))
        return td_fail(TD_E_ARG, "a reference of %lld prompt and %lld greedy tokens does not fit the session's %lld "
                       "positions (at least 2 and 1)", (long long)T, (long long)G, (long long)td_session_ctx(s));
    float *logits = td_malloc((size_t)(T * V) * sizeof *logits);
    float *hidden = td_malloc((size_t)(T * H) * sizeof *hidden);
    float *glog = td_malloc((size_t)(G * V) * sizeof *glog);
    float *mtp = m->mtp ? td_malloc((size_t)((T - 1) * V) * sizeof *mtp) : NULL;
    int32_t *greedy = td_malloc((size_t)G * sizeof *greedy);
    td_status st = logits && hidden && glog && greedy && (mtp || !m->mtp) ? TD_OK : td_fail(TD_E_NOMEM, "out of memory");
    /* 1. one prefill; 2. greedy decode, step k's logits from the prompt plus greedy[0..k); 3. MTP rows */
    if (st == TD_OK) st = td_session_forward(s, prompt, T, logits, hidden);
    if (st == TD_OK) memcpy(glog, logits + (T - 1) * V, (size_t)V * sizeof *glog);
    double margin = INFINITY;
    for (int64_t k = 0; st == TD_OK && k < G; k++) {
        if (k > 0) {
            st = td_session_forward(s, &greedy[k - 1], 1, NULL, NULL);
            if (st == TD_OK) memcpy(glog + k * V, td_session_logits(s), (size_t)V * sizeof *glog);
        }
        greedy[k] = (int32_t)td_argmax_f32(glog + k * V, V);
        margin = fmin(margin, td_margin(glog + k * V, V));
    }
    if (st == TD_OK && mtp) st = td_session_mtp_forward(s, hidden, prompt + 1, T - 1, mtp, NULL);
    if (st == TD_OK) {
        td_ref_tensor t[5] = {
            {"input_ids", "I32", {T, 0}, 1, prompt, (uint64_t)T * 4},
            {"logits", "F32", {T, V}, 2, logits, (uint64_t)(T * V) * 4},
            {"greedy_ids", "I32", {G, 0}, 1, greedy, (uint64_t)G * 4},
            {"greedy_logits", "F32", {G, V}, 2, glog, (uint64_t)(G * V) * 4},
            {"mtp_logits", "F32", {T - 1, V}, 2, mtp, (uint64_t)((T - 1) * V) * 4},
        };
        char num[64];
        cJSON *meta = cJSON_CreateObject();
        snprintf(num, sizeof num, "%.9g", margin);
        cJSON_AddStringToObject(meta, "min_greedy_margin", num);
        cJSON_AddStringToObject(meta, "written_by", "tandem eval --write-reference");
        cJSON_AddStringToObject(meta, "model", m->path);
        cJSON_AddStringToObject(meta, "kernels", td_kernels_name(td_cpu_kernels(td_engine_cpu(td_session_engine(s)))));
        cJSON_AddStringToObject(meta, "kv_type", td_kv_type_name(td_session_kv_type(s)));
        st = td_st_write(path, t, mtp ? 5 : 4, meta);
    }
    if (info) *info = (td_eval_reference_info){.prompt_tokens = T, .greedy_steps = G, .mtp = mtp != NULL,
                                               .min_greedy_margin = margin};
    td_free(logits);
    td_free(hidden);
    td_free(glog);
    td_free(mtp);
    td_free(greedy);
    return st;
}
