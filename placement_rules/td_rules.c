/* The rules container, regexes (PCRE2), the first-match-wins matcher and the documented defaults. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "td_rules_impl.h"

#include "td_alloc.h"
#include "td_mmap.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    TD_RULES_MAX_PATTERN = 4096,   /* characters of one regex */
    TD_RULES_MATCH_LIMIT = 200000, /* backtracking steps per search: a pathological regex fails, never hangs */
    TD_RULES_HEAP_LIMIT = 16384,   /* KiB of backtracking memory per search */
    TD_RULES_MAX_FILE = 16 << 20,
};

/* ------------------------------------------------------------------ devices, placements, locations */

bool td_device_id_parse(const char *s, td_device_id *out)
{
    if (strcasecmp(s, "cpu") == 0) {
        *out = (td_device_id){TD_DEVICE_CPU, 0};
        return true;
    }
    if (strcasecmp(s, "cuda") == 0) {
        *out = (td_device_id){TD_DEVICE_CUDA, 0};
        return true;
    }
    const char *digits = NULL;
    if (strncmp(s, "cuda:", 5) == 0) digits = s + 5;
    else if (strncmp(s, "CUDA", 4) == 0) digits = s + 4; /* llama.cpp's buffer names: CUDA0, CUDA1 */
    if (!digits || !*digits || strlen(digits) > 3) return false;
    int v = 0;
    for (const char *p = digits; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (*p - '0');
    }
    *out = (td_device_id){TD_DEVICE_CUDA, v};
    return true;
}

const char *td_device_id_str(td_device_id d, char *buf, size_t cap)
{
    if (d.kind == TD_DEVICE_CPU) snprintf(buf, cap, "cpu");
    else snprintf(buf, cap, "cuda:%d", d.index);
    return buf;
}

bool td_device_id_eq(td_device_id a, td_device_id b) { return a.kind == b.kind && a.index == b.index; }

void td_placement_default(td_module_kind kind, td_placement *out)
{
    memset(out, 0, sizeof *out);
    out->device = (td_device_id){TD_DEVICE_CPU, 0};
    out->kernel = TD_KERNELS_AUTO;
    out->weights = TD_WEIGHTS_KEEP;
    out->convert_to = TD_TYPE_COUNT;
    out->numa = kind == TD_MODULE_EXPERTS ? TD_NUMA_SPLIT : TD_NUMA_INTERLEAVE;
}

const char *td_numa_policy_str(const td_placement *p, char *buf, size_t cap)
{
    switch (p->numa) {
    case TD_NUMA_SPLIT: snprintf(buf, cap, "split"); break;
    case TD_NUMA_INTERLEAVE: snprintf(buf, cap, "interleave"); break;
    case TD_NUMA_NODE: snprintf(buf, cap, "node:%d", p->numa_node); break;
    default: snprintf(buf, cap, "-"); break;
    }
    return buf;
}

const char *td_weights_str(const td_placement *p, char *buf, size_t cap)
{
    if (p->weights == TD_WEIGHTS_CONVERT) snprintf(buf, cap, "%s", td_type_name(p->convert_to));
    else snprintf(buf, cap, "%s", p->weights == TD_WEIGHTS_REPACK ? "repack" : "keep");
    return buf;
}

const char *td_src_loc_str(const td_src_loc *loc, char *buf, size_t cap)
{
    if (!loc->file) snprintf(buf, cap, "(built in)");
    else if (strncmp(loc->file, "--", 2) == 0) snprintf(buf, cap, "%s, column %d", loc->file, loc->col);
    else snprintf(buf, cap, "%s:%d:%d", loc->file, loc->line, loc->col);
    return buf;
}

/* ------------------------------------------------------------------ container */

static void *td_pcre2_malloc(PCRE2_SIZE size, void *data)
{
    (void)data;
    return td_malloc(size);
}

static void td_pcre2_free(void *ptr, void *data)
{
    (void)data;
    td_free(ptr);
}

td_status td_rules_create(td_rules **out)
{
    *out = NULL;
    td_rules *r = td_calloc(1, sizeof *r);
    if (!r) return td_fail(TD_E_NOMEM, "out of memory");
    r->gctx = pcre2_general_context_create(td_pcre2_malloc, td_pcre2_free, NULL);
    r->cctx = r->gctx ? pcre2_compile_context_create(r->gctx) : NULL;
    r->mctx = r->gctx ? pcre2_match_context_create(r->gctx) : NULL;
    if (!r->cctx || !r->mctx) {
        td_rules_free(r);
        return td_fail(TD_E_NOMEM, "out of memory");
    }
    pcre2_set_max_pattern_length(r->cctx, TD_RULES_MAX_PATTERN);
    pcre2_set_match_limit(r->mctx, TD_RULES_MATCH_LIMIT);
    pcre2_set_heap_limit(r->mctx, TD_RULES_HEAP_LIMIT);
    *out = r;
    return TD_OK;
}

void td_rule_release(td_rule *rule)
{
    pcre2_code_free(rule->re);
    td_free(rule->name);
    td_free(rule->kt);
    memset(rule, 0, sizeof *rule);
}

void td_rules_free(td_rules *r)
{
    if (!r) return;
    for (int i = 0; i < r->n; i++) td_rule_release(&r->rules[i]);
    td_free(r->rules);
    for (int i = 0; i < r->n_strings; i++) td_free(r->strings[i]);
    td_free(r->strings);
    td_free(r->file);
    pcre2_match_context_free(r->mctx);
    pcre2_compile_context_free(r->cctx);
    pcre2_general_context_free(r->gctx);
    td_free(r);
}

td_rule *td_rules_insert(td_rules *r, int at)
{
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 16;
        td_rule *n = td_realloc(r->rules, (size_t)cap * sizeof *n);
        if (!n) return NULL;
        r->rules = n;
        r->cap = cap;
    }
    if (at < r->n) memmove(&r->rules[at + 1], &r->rules[at], (size_t)(r->n - at) * sizeof *r->rules);
    r->n++;
    memset(&r->rules[at], 0, sizeof r->rules[at]);
    return &r->rules[at];
}

const char *td_rules_keep_string(td_rules *r, const char *s)
{
    if (r->n_strings == r->cap_strings) {
        int cap = r->cap_strings ? r->cap_strings * 2 : 8;
        char **n = td_realloc(r->strings, (size_t)cap * sizeof *n);
        if (!n) return NULL;
        r->strings = n;
        r->cap_strings = cap;
    }
    char *c = td_strdup(s);
    if (!c) return NULL;
    r->strings[r->n_strings++] = c;
    return c;
}

td_rules_format td_rules_get_format(const td_rules *r) { return r->format; }
const char *td_rules_file(const td_rules *r) { return r->file ? r->file : ""; }
int td_rules_count(const td_rules *r) { return r->n; }
const td_rule *td_rules_at(const td_rules *r, int i) { return (i >= 0 && i < r->n) ? &r->rules[i] : NULL; }

/* ------------------------------------------------------------------ regexes */

td_status td_rules_compile(td_rules *r, td_rule *rule, int col_shift)
{
    int code;
    PCRE2_SIZE off;
    rule->re = pcre2_compile((PCRE2_SPTR)rule->name, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &off,
                             r->cctx);
    if (rule->re) return TD_OK;
    if (code == PCRE2_ERROR_HEAP_FAILED || code == PCRE2_ERROR_NOMEMORY) return td_fail(TD_E_NOMEM, "out of memory");
    PCRE2_UCHAR msg[160];
    if (pcre2_get_error_message(code, msg, sizeof msg) < 0) snprintf((char *)msg, sizeof msg, "error %d", code);
    td_src_loc at = rule->name_loc;
    at.col += col_shift + (int)off;
    char where[160];
    return td_fail(TD_E_FORMAT, "%s: bad regex '%.80s': %s (at character %d); expected a PCRE2 regular expression",
                   td_src_loc_str(&at, where, sizeof where), rule->name, (const char *)msg, (int)off + 1);
}

td_status td_rules_search(const td_rules *r, const td_rule *rule, const char *subject, bool *matched)
{
    *matched = true;
    if (!rule->re) return TD_OK;
    pcre2_match_data *md = pcre2_match_data_create(1, r->gctx);
    if (!md) return td_fail(TD_E_NOMEM, "out of memory");
    int rc = pcre2_match(rule->re, (PCRE2_SPTR)subject, PCRE2_ZERO_TERMINATED, 0, 0, md, r->mctx);
    pcre2_match_data_free(md);
    if (rc >= 0) return TD_OK;
    *matched = false;
    if (rc == PCRE2_ERROR_NOMATCH) return TD_OK;
    char where[160];
    if (rc == PCRE2_ERROR_NOMEMORY) return td_fail(TD_E_NOMEM, "out of memory");
    return td_fail(TD_E_FORMAT,
                   "%s: regex '%.80s' gave up on '%s' (it backtracks too much: error %d); simplify the regex",
                   td_src_loc_str(&rule->name_loc, where, sizeof where), rule->name, subject, rc);
}

/* ------------------------------------------------------------------ matching */

typedef struct td_any_match {
    const td_rules *r;
    const td_rule *rule;
    bool hit;
    td_status st;
} td_any_match;

static void td_match_gguf_name(const char *name, void *ctx)
{
    td_any_match *a = ctx;
    if (a->hit || a->st != TD_OK) return;
    bool m;
    a->st = td_rules_search(a->r, a->rule, name, &m);
    if (a->st == TD_OK && m) a->hit = true;
}

static td_status td_rule_matches(const td_rules *r, const td_rule *rule, const td_module *m, const td_hparams *hp,
                                 bool *hit)
{
    *hit = false;
    if (rule->has_layers && (m->layer < rule->layer_lo || m->layer > rule->layer_hi)) return TD_OK;
    TD_TRY(td_rules_search(r, rule, m->name, hit));
    if (*hit || rule->origin != TD_RULE_OVERRIDE) return TD_OK;
    /* overrides also see llama.cpp's tensor names, so '-ot' habits carry over */
    td_any_match a = {r, rule, false, TD_OK};
    td_module_gguf_names(m, hp, td_match_gguf_name, &a);
    *hit = a.hit;
    return a.st;
}

td_status td_rules_rule_matches(const td_rules *r, int i, const td_module *m, const td_hparams *hp, bool *hit)
{
    *hit = false;
    if (i < 0 || i >= r->n) return td_fail(TD_E_ARG, "rule %d does not exist (%d rules)", i, r->n);
    if (r->rules[i].kt) return td_fail(TD_E_ARG, "rule %d is a KTransformers rule: it matches by class", i);
    return td_rule_matches(r, &r->rules[i], m, hp, hit);
}

void td_rule_apply(const td_rule *rule, td_module_kind kind, td_rule_match *out)
{
    td_placement_default(kind, &out->place);
    out->set = rule->set;
    if (rule->set & TD_PLACE_DEVICE) out->place.device = rule->place.device;
    if (out->place.device.kind != TD_DEVICE_CPU) out->place.numa = TD_NUMA_NONE;
    if (rule->set & TD_PLACE_KERNEL) out->place.kernel = rule->place.kernel;
    if (rule->set & TD_PLACE_WEIGHTS) {
        out->place.weights = rule->place.weights;
        out->place.convert_to = rule->place.convert_to;
    }
    if (rule->set & TD_PLACE_NUMA) {
        out->place.numa = rule->place.numa;
        out->place.numa_node = rule->place.numa_node;
    }
}

td_status td_rules_match(const td_rules *r, const td_module *m, const td_hparams *hp, td_rule_match *out)
{
    memset(out, 0, sizeof *out);
    out->rule = -1;
    int first_file = r->n_override + r->n_auto;
    int end = r->format == TD_RULES_KTRANSFORMERS ? first_file : r->n;
    for (int i = 0; i < end; i++) {
        bool hit;
        TD_TRY(td_rule_matches(r, &r->rules[i], m, hp, &hit));
        if (!hit) continue;
        out->rule = i;
        td_rule_apply(&r->rules[i], m->kind, out);
        return TD_OK;
    }
    if (r->format == TD_RULES_KTRANSFORMERS) return td_kt_resolve(r, m, hp, out);
    td_placement_default(m->kind, &out->place);
    return TD_OK;
}

const char *td_rule_match_origin(const td_rules *r, const td_rule_match *mm, char *buf, size_t cap)
{
    if (mm->kt_default) {
        snprintf(buf, cap, "KTransformers default");
        return buf;
    }
    const td_rule *rule = r ? td_rules_at(r, mm->rule) : NULL;
    if (!rule) snprintf(buf, cap, "defaults");
    else if (rule->origin == TD_RULE_AUTO) snprintf(buf, cap, "--auto");
    else if (rule->origin == TD_RULE_OVERRIDE) snprintf(buf, cap, "%s", rule->loc.file);
    else {
        const char *slash = strrchr(rule->loc.file, '/'); /* tables name the file, messages the path */
        snprintf(buf, cap, "%s:%d", slash ? slash + 1 : rule->loc.file, rule->loc.line);
    }
    return buf;
}

/* ------------------------------------------------------------------ loading and writing */

td_status td_rules_load_text(td_rules *r, const char *text, size_t len, const char *name)
{
    if (r->format != TD_RULES_NONE)
        return td_fail(TD_E_ARG, "%s: rules were already loaded from %s; give one rules file", name,
                       td_rules_file(r));
    td_free(r->file);
    r->file = td_strdup(name);
    if (!r->file) return td_fail(TD_E_NOMEM, "out of memory");
    td_status st = td_rules_parse_yaml(r, text, len, r->file);
    if (st != TD_OK) {
        /* leave no half-loaded file behind */
        int first_file = r->n_override + r->n_auto;
        for (int i = first_file; i < r->n; i++) td_rule_release(&r->rules[i]);
        r->n = first_file;
        r->format = TD_RULES_NONE;
    }
    return st;
}

const char *td_rules_resolve_path(const char *name, const char *presets_dir, char *buf, size_t cap)
{
    if (td_path_exists(name)) return name;
    const char *dirs[2] = {getenv("TANDEM_RULES_DIR"), presets_dir};
    for (int i = 0; i < 2; i++) {
        if (!dirs[i] || !*dirs[i]) continue;
        snprintf(buf, cap, "%s/%s", dirs[i], name);
        if (td_path_exists(buf)) return buf;
        snprintf(buf, cap, "%s/%s.yaml", dirs[i], name);
        if (td_path_exists(buf)) return buf;
    }
    return name;
}

td_status td_rules_load_file(td_rules *r, const char *path)
{
    char *text;
    uint64_t len;
    TD_TRY(td_read_text_file(path, TD_RULES_MAX_FILE, &text, &len));
    td_status st = td_rules_load_text(r, text, (size_t)len, path);
    td_free(text);
    return st;
}

td_status td_rules_add_auto(td_rules *r, const char *name_regex, int lo, int hi, td_device_id device)
{
    td_rule rule = {.origin = TD_RULE_AUTO, .has_layers = true, .layer_lo = lo, .layer_hi = hi,
                    .set = TD_PLACE_DEVICE, .place.device = device};
    rule.name = td_strdup(name_regex);
    if (!rule.name) return td_fail(TD_E_NOMEM, "out of memory");
    td_status st = td_rules_compile(r, &rule, 0);
    td_rule *slot = st == TD_OK ? td_rules_insert(r, r->n_override + r->n_auto) : NULL;
    if (!slot) {
        td_rule_release(&rule);
        return st != TD_OK ? st : td_fail(TD_E_NOMEM, "out of memory");
    }
    *slot = rule;
    r->n_auto++;
    return TD_OK;
}

void td_rules_clear_auto(td_rules *r)
{
    int a = r->n_override, b = r->n_override + r->n_auto;
    if (a == b) return;
    for (int i = a; i < b; i++) td_rule_release(&r->rules[i]);
    memmove(&r->rules[a], &r->rules[b], (size_t)(r->n - b) * sizeof *r->rules);
    r->n -= r->n_auto;
    r->n_auto = 0;
}

static void td_yaml_quote(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f); /* YAML single quotes escape ' as '' */
        fputc(*s, f);
    }
    fputc('\'', f);
}

void td_rule_write_yaml(const td_rule *rule, FILE *f)
{
    fprintf(f, "- match: {");
    const char *sep = "";
    if (rule->name) {
        fprintf(f, "name: ");
        td_yaml_quote(f, rule->name);
        sep = ", ";
    }
    if (rule->has_layers) {
        if (rule->layer_lo == rule->layer_hi) fprintf(f, "%slayers: %d", sep, rule->layer_lo);
        else fprintf(f, "%slayers: %d-%d", sep, rule->layer_lo, rule->layer_hi);
    }
    fprintf(f, "}\n  place: {");
    sep = "";
    char b[32];
    if (rule->set & TD_PLACE_DEVICE) {
        fprintf(f, "device: %s", td_device_id_str(rule->place.device, b, sizeof b));
        sep = ", ";
    }
    if (rule->set & TD_PLACE_KERNEL) {
        fprintf(f, "%skernel: %s", sep, td_kernels_name(rule->place.kernel));
        sep = ", ";
    }
    if (rule->set & TD_PLACE_WEIGHTS) {
        fprintf(f, "%sweights: %s", sep, td_weights_str(&rule->place, b, sizeof b));
        sep = ", ";
    }
    if (rule->set & TD_PLACE_NUMA) fprintf(f, "%snuma: %s", sep, td_numa_policy_str(&rule->place, b, sizeof b));
    fprintf(f, "}\n");
}

/* ------------------------------------------------------------------ llama.cpp tensor names */

static void td_emit(void (*fn)(const char *, void *), void *ctx, const char *fmt, int layer)
{
    char n[96];
    snprintf(n, sizeof n, fmt, layer);
    fn(n, ctx);
}

void td_module_gguf_names(const td_module *m, const td_hparams *hp, void (*fn)(const char *name, void *ctx),
                          void *ctx)
{
    static const char *const attn[] = {"blk.%d.attn_norm.weight",      "blk.%d.attn_q_a.weight",
                                       "blk.%d.attn_q_a_norm.weight",  "blk.%d.attn_q_b.weight",
                                       "blk.%d.attn_q.weight",         "blk.%d.attn_kv_a_mqa.weight",
                                       "blk.%d.attn_kv_a_norm.weight", "blk.%d.attn_kv_b.weight",
                                       "blk.%d.attn_k_b.weight",       "blk.%d.attn_v_b.weight",
                                       "blk.%d.attn_output.weight",    "blk.%d.ffn_norm.weight"};
    static const char *const dense[] = {"blk.%d.ffn_gate.weight", "blk.%d.ffn_up.weight", "blk.%d.ffn_down.weight"};
    static const char *const router[] = {"blk.%d.ffn_gate_inp.weight", "blk.%d.exp_probs_b.bias"};
    static const char *const experts[] = {"blk.%d.ffn_gate_exps.weight", "blk.%d.ffn_up_exps.weight",
                                          "blk.%d.ffn_down_exps.weight"};
    static const char *const shared[] = {"blk.%d.ffn_gate_shexp.weight", "blk.%d.ffn_up_shexp.weight",
                                         "blk.%d.ffn_down_shexp.weight"};
    static const char *const mtp[] = {"blk.%d.nextn.eh_proj.weight",         "blk.%d.nextn.enorm.weight",
                                      "blk.%d.nextn.hnorm.weight",           "blk.%d.nextn.embed_tokens.weight",
                                      "blk.%d.nextn.shared_head_norm.weight", "blk.%d.nextn.shared_head_head.weight"};
    const char *const *names = NULL;
    size_t n = 0;
    (void)hp;
    switch (m->kind) {
    case TD_MODULE_EMBED: fn("token_embd.weight", ctx); return;
    case TD_MODULE_NORM: fn("output_norm.weight", ctx); return;
    case TD_MODULE_HEAD: fn("output.weight", ctx); return;
    case TD_MODULE_ATTN: names = attn, n = sizeof attn / sizeof *attn; break;
    case TD_MODULE_DENSE_MLP: names = dense, n = sizeof dense / sizeof *dense; break;
    case TD_MODULE_ROUTER: names = router, n = sizeof router / sizeof *router; break;
    case TD_MODULE_EXPERTS: names = experts, n = sizeof experts / sizeof *experts; break;
    case TD_MODULE_SHARED_EXPERTS: names = shared, n = sizeof shared / sizeof *shared; break;
    case TD_MODULE_MTP: names = mtp, n = sizeof mtp / sizeof *mtp; break;
    default: return;
    }
    for (size_t i = 0; i < n; i++) td_emit(fn, ctx, names[i], m->layer);
}
