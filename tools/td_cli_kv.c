#include "td_cli_kv.h"

bool td_parse_kv_type(const td_args *a, const char *s, td_kv_type *out)
{
    /* "auto" is the session's default, not a storage type: leaving the option out asks for it */
    if (td_kv_type_from_name(s, out) && *out != TD_KV_AUTO) return true;
    td_cli_usage_error(a->cmd, "%s: '%s' is not one of bf16, f32", a->opt, s);
    return false;
}
