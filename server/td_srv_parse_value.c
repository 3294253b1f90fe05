/* The request parser's typed readers of JSON values: each failure names the field. */
#include "td_srv_parse_impl.h"

#include "td_alloc.h"
#include "td_tokenizer.h" /* td_utf8_valid_prefix */

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

td_status td_bad(td_pctx *c, const char *param, const char *fmt, ...)
{
    snprintf(c->err->param, sizeof c->err->param, "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err->message, sizeof c->err->message, fmt, ap);
    va_end(ap);
    return td_fail(TD_E_FORMAT, "%s", c->err->message);
}

const char *td_json_type(const cJSON *v)
{
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an unknown value";
}

bool td_absent(const cJSON *v)
{
    return !v || cJSON_IsNull(v);
}

/* A string field: copied, checked for UTF-8. */
td_status td_get_str(td_pctx *c, const cJSON *v, const char *param, char **out)
{
    if (!cJSON_IsString(v) || !v->valuestring)
        return td_bad(c, param, "'%s' must be a string, not %s", param, td_json_type(v));
    size_t n = strlen(v->valuestring);
    size_t ok = td_utf8_valid_prefix((const uint8_t *)v->valuestring, n);
    if (ok != n) return td_bad(c, param, "'%s' is not valid UTF-8 at byte %zu", param, ok);
    td_free(*out);
    *out = td_strdup(v->valuestring);
    return *out ? TD_OK : td_fail(TD_E_NOMEM, "out of memory");
}

td_status td_get_num(td_pctx *c, const cJSON *v, const char *param, double lo, double hi, double *out)
{
    if (!cJSON_IsNumber(v)) return td_bad(c, param, "'%s' must be a number, not %s", param, td_json_type(v));
    if (!(v->valuedouble >= lo && v->valuedouble <= hi))
        return td_bad(c, param, "'%s' is %g; it must be between %g and %g", param, v->valuedouble, lo, hi);
    *out = v->valuedouble;
    return TD_OK;
}

td_status td_get_int(td_pctx *c, const cJSON *v, const char *param, double lo, double hi, int64_t *out)
{
    double d;
    TD_TRY(td_get_num(c, v, param, lo, hi, &d));
    if (d != floor(d)) return td_bad(c, param, "'%s' must be a whole number, not %g", param, d);
    *out = (int64_t)d;
    return TD_OK;
}

td_status td_get_bool(td_pctx *c, const cJSON *v, const char *param, bool *out)
{
    if (!cJSON_IsBool(v)) return td_bad(c, param, "'%s' must be true or false, not %s", param, td_json_type(v));
    *out = cJSON_IsTrue(v);
    return TD_OK;
}

/* stop: a string or an array of up to TD_GEN_MAX_STOP non-empty strings. */
td_status td_get_stop(td_pctx *c, const cJSON *v, const char *param, td_srv_req *r)
{
    for (; r->n_stop > 0; r->n_stop--) td_free(r->stop[r->n_stop - 1]); /* a repeated key: the last wins */
    if (td_absent(v)) return TD_OK;
    if (cJSON_IsString(v)) {
        if (!v->valuestring[0]) return TD_OK; /* "" stops nowhere */
        TD_TRY(td_get_str(c, v, param, &r->stop[0]));
        r->n_stop = 1;
        return TD_OK;
    }
    if (!cJSON_IsArray(v))
        return td_bad(c, param, "'%s' must be a string or an array of strings, not %s", param, td_json_type(v));
    if (cJSON_GetArraySize(v) > TD_GEN_MAX_STOP)
        return td_bad(c, param, "'%s' has %d strings; at most %d are supported", param, cJSON_GetArraySize(v),
                      TD_GEN_MAX_STOP);
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        char *s = NULL;
        TD_TRY(td_get_str(c, e, param, &s));
        if (!s[0]) {
            td_free(s);
            return td_bad(c, param, "'%s' holds an empty string", param);
        }
        r->stop[r->n_stop++] = s;
    }
    return TD_OK;
}
