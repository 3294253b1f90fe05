/* Internals of the request parser shared by its files: the parse context, typed readers of JSON values
 * that fill the error with the field's name, and the readers of messages and tools. */
#ifndef TD_SRV_PARSE_IMPL_H
#define TD_SRV_PARSE_IMPL_H

#include "td_srv_parse.h"

/* A parse context: the error to fill. */
typedef struct td_pctx {
    td_srv_err *err;
} td_pctx;

/* Records what is wrong with `param` and returns TD_E_FORMAT. */
td_status td_bad(td_pctx *c, const char *param, const char *fmt, ...) TD_PRINTF(3, 4);
const char *td_json_type(const cJSON *v); /* "a string", "null", ... for messages */
bool td_absent(const cJSON *v);           /* missing or null */
/* Typed values: a UTF-8 string (copied; *out freed first), a number in [lo, hi], a whole number in
 * [lo, hi], a boolean, and stop (a string or up to TD_GEN_MAX_STOP strings). */
td_status td_get_str(td_pctx *c, const cJSON *v, const char *param, char **out);
td_status td_get_num(td_pctx *c, const cJSON *v, const char *param, double lo, double hi, double *out);
td_status td_get_int(td_pctx *c, const cJSON *v, const char *param, double lo, double hi, int64_t *out);
td_status td_get_bool(td_pctx *c, const cJSON *v, const char *param, bool *out);
td_status td_get_stop(td_pctx *c, const cJSON *v, const char *param, td_srv_req *r);

/* td_srv_parse_msgs.c: messages (OpenAI's or Ollama's), tools and tool_choice into r. */
td_status td_get_messages(td_pctx *c, const cJSON *v, bool ollama, td_srv_req *r);
td_status td_get_tools(td_pctx *c, const cJSON *v, td_srv_req *r);
td_status td_get_tool_choice(td_pctx *c, const cJSON *v, td_srv_req *r);

#endif
