/* --override 'regex=device[,regex=device...]': llama.cpp's -ot habit. Each pair becomes a rule that is
 * tried before the rules file. A comma splits pairs only outside (), [] and {}, so regexes such as
 * 'layers\.(3|4)\.|experts\.{1,2}' keep theirs; the device follows the last '=' of a pair. */
#include "td_rules_impl.h"

#include "td_alloc.h"

#include <stdio.h>
#include <string.h>

/* Length of the pair starting at s: up to a comma outside brackets, or the end. */
static size_t td_override_pair_len(const char *s)
{
    int depth = 0;
    size_t i = 0;
    for (; s[i]; i++) {
        char ch = s[i];
        if (ch == '\\' && s[i + 1]) {
            i++;
            continue;
        }
        if (ch == '(' || ch == '[' || ch == '{') depth++;
        else if ((ch == ')' || ch == ']' || ch == '}') && depth > 0) depth--;
        else if (ch == ',' && depth == 0) break;
    }
    return i;
}

static td_status td_override_pair(td_rules *r, const char *label, const char *pair, size_t len, int col)
{
    char buf[4096];
    char where[160];
    td_src_loc at = {label, 1, col};
    if (len >= sizeof buf)
        return td_fail(TD_E_ARG, "%s: this override is longer than %zu characters", td_src_loc_str(&at, where, sizeof where),
                       sizeof buf - 1);
    memcpy(buf, pair, len);
    buf[len] = '\0';
    char *eq = strrchr(buf, '=');
    if (!eq)
        return td_fail(TD_E_ARG,
                       "%s: '%s' has no '='; expected regex=device, such as 'exps=CPU' or '\\.mlp\\.experts$=cuda:0'",
                       td_src_loc_str(&at, where, sizeof where), buf);
    *eq = '\0';
    const char *dev = eq + 1;
    td_rule rule = {.origin = TD_RULE_OVERRIDE, .loc = at, .set = TD_PLACE_DEVICE};
    rule.field_loc[TD_FIELD_DEVICE] = (td_src_loc){label, 1, col + (int)(dev - buf)};
    if (!buf[0])
        return td_fail(TD_E_ARG, "%s: the regex before '=' is empty; expected regex=device",
                       td_src_loc_str(&at, where, sizeof where));
    if (!td_device_id_parse(dev, &rule.place.device))
        return td_fail(TD_E_ARG, "%s: '%s' is not a device; expected cpu or cuda:N (llama.cpp's CPU and CUDA0 work too)",
                       td_src_loc_str(&rule.field_loc[TD_FIELD_DEVICE], where, sizeof where), dev);
    rule.name = td_strdup(buf);
    if (!rule.name) return td_fail(TD_E_NOMEM, "out of memory");
    rule.name_loc = at;
    td_status st = td_rules_compile(r, &rule, 0);
    td_rule *slot = st == TD_OK ? td_rules_insert(r, r->n_override) : NULL;
    if (!slot) {
        td_rule_release(&rule);
        return st != TD_OK ? st : td_fail(TD_E_NOMEM, "out of memory");
    }
    *slot = rule;
    r->n_override++;
    return TD_OK;
}

td_status td_rules_add_override(td_rules *r, const char *spec)
{
    char label[48];
    snprintf(label, sizeof label, "--override #%d", ++r->n_override_opts);
    const char *kept = td_rules_keep_string(r, label);
    if (!kept) return td_fail(TD_E_NOMEM, "out of memory");
    if (!*spec) return td_fail(TD_E_ARG, "%s: empty; expected regex=device[,regex=device...]", kept);
    int before = r->n_override;
    const char *p = spec;
    for (;;) {
        size_t len = td_override_pair_len(p);
        td_status st = td_override_pair(r, kept, p, len, (int)(p - spec) + 1);
        if (st != TD_OK) {
            /* all or nothing: drop this option's pairs */
            if (r->n_override > before) {
                for (int i = before; i < r->n_override; i++) td_rule_release(&r->rules[i]);
                memmove(&r->rules[before], &r->rules[r->n_override],
                        (size_t)(r->n - r->n_override) * sizeof *r->rules);
                r->n -= r->n_override - before;
                r->n_override = before;
            }
            return st;
        }
        if (!p[len]) break;
        p += len + 1;
    }
    return TD_OK;
}
