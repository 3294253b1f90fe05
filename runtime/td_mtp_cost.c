/* Measuring and caching the cost of a speculative step: see td_mtp_cost.h. */
#include "td_mtp_cost.h"

#include "td_alloc.h"
#include "td_clock.h"
#include "td_mmap.h"
#include "td_mtp_spec.h"
#include "td_ops.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TD_COST_MIN_REPS 5
#define TD_COST_MAX_REPS 31
#define TD_COST_BUDGET_S 0.02 /* past the minimum, repeat while the measurement has taken less than this */
#define TD_COST_CACHE_LINES 64 /* lines a cache file keeps (the newest) */

static double td_median(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double x = v[j];
            v[j] = v[j - 1], v[j - 1] = x;
        }
    return v[n / 2];
}

/* The steps are timed from a base state: the session at position q-1, its MTP rows valid below q-2.
 *  plain: one token at q-1 and its argmax (then at q, MTP rows still valid below q-2);
 *  speculative, from there: a draft, which runs MTP rows q-2 and q-1 as it does after an accepted draft,
 *  k-1 chained drafts, the verify pass of k+1 tokens with every row's logits, their argmaxes; then back to
 *  q-1, which forgets MTP row q-2 again.
 * The tokens are fixed: what they are does not change the work, apart from which experts they route to. */
static td_status td_time_steps(td_session *s, const int32_t *toks, int k, bool mtp_drafts, float *logits,
                               double *plain, double *spec)
{
    int64_t base = td_session_pos(s), V = td_session_model(s)->hp.vocab_size;
    volatile int64_t chosen = 0;
    double t0 = td_now();
    TD_TRY(td_session_forward(s, toks, 1, NULL, NULL));
    chosen += td_argmax_f32(td_session_logits(s), V);
    double t1 = td_now();
    if (mtp_drafts) {
        TD_TRY(td_session_mtp_draft(s, toks[1]));
        chosen += td_argmax_f32(td_session_mtp_logits(s), V);
        for (int i = 1; i < k; i++) {
            TD_TRY(td_session_mtp_chain(s, toks[1 + i]));
            chosen += td_argmax_f32(td_session_mtp_logits(s), V);
        }
    }
    TD_TRY(td_session_forward(s, toks + 1, k + 1, logits, NULL));
    for (int i = 0; i <= k; i++) chosen += td_argmax_f32(logits + i * V, V);
    double t2 = td_now();
    (void)chosen;
    *plain = t1 - t0;
    *spec = t2 - t1;
    return td_session_rewind(s, base);
}

td_status td_mtp_cost_measure(td_session *s, int k, bool mtp_drafts, float *logits, td_mtp_cost *out)
{
    int64_t p0 = td_session_pos(s), V = td_session_model(s)->hp.vocab_size;
    if (p0 + k + 3 > td_session_ctx(s))
        return td_fail(TD_E_ARG, "no room in the context to time MTP (%d positions needed)", k + 3);
    int32_t toks[TD_MTP_MAX_DRAFTS + 2];
    for (int i = 0; i <= k + 1; i++) toks[i] = (int32_t)((V / 2 + (int64_t)i * 997) % V); /* spread-out ids */
    /* the base state: one position run, its MTP row brought up to date and then forgotten */
    td_status st = td_session_forward(s, toks, 1, NULL, NULL);
    if (st == TD_OK && mtp_drafts) st = td_session_mtp_draft(s, toks[0]);
    if (st == TD_OK && mtp_drafts) st = td_session_mtp_rewind(s, p0);
    double plain[TD_COST_MAX_REPS], spec[TD_COST_MAX_REPS], start = td_now();
    int n = 0;
    while (st == TD_OK && n < TD_COST_MAX_REPS && (n < TD_COST_MIN_REPS || td_now() - start < TD_COST_BUDGET_S)) {
        st = td_time_steps(s, toks, k, mtp_drafts, logits, &plain[n], &spec[n]);
        n++;
    }
    td_status back = td_session_rewind(s, p0);
    if (st != TD_OK) return st;
    TD_TRY(back);
    out->plain_s = td_median(plain, n);
    out->spec_s = td_median(spec, n);
    return TD_OK;
}

/* ------------------------------------------------------------------ the cache file */

static void td_cpu_model_name(char *buf, size_t cap)
{
    snprintf(buf, cap, "?");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        const char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon) continue;
        snprintf(buf, cap, "%s", colon + 2);
        buf[strcspn(buf, "\n")] = '\0';
        break;
    }
    fclose(f);
}

void td_mtp_cost_key(td_session *s, int k, char *buf, size_t cap)
{
    const td_model *m = td_session_model(s);
    char path[PATH_MAX], cpu_name[256], cpu_desc[256];
    if (!realpath(m->path, path)) snprintf(path, sizeof path, "%s", m->path);
    struct stat st;
    if (stat(m->path, &st) != 0) memset(&st, 0, sizeof st);
    td_cpu_model_name(cpu_name, sizeof cpu_name);
    td_cpu *cpu = td_engine_cpu(td_session_engine(s));
    td_cpu_describe(cpu, cpu_desc, sizeof cpu_desc);
    snprintf(buf, cap, "v1 %s %lld %lld | %s | %s, kernels %s, kv %s | k=%d", path, (long long)st.st_size,
             (long long)st.st_mtime, cpu_name, cpu_desc, td_kernels_name(td_cpu_kernels(cpu)),
             td_kv_type_name(td_session_kv_type(s)), k);
    for (char *c = buf; *c; c++)
        if (*c == '\t' || *c == '\n') *c = ' '; /* the file's separators */
}

bool td_mtp_cost_load(const char *cache, const char *key, td_mtp_cost *out)
{
    char *text;
    if (!cache || td_read_text_file(cache, 1u << 20, &text, NULL) != TD_OK) {
        td_err_clear();
        return false;
    }
    bool found = false;
    size_t kl = strlen(key);
    for (char *line = text; line && *line && !found;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        double plain, spec;
        if (strncmp(line, key, kl) == 0 && line[kl] == '\t' && sscanf(line + kl + 1, "%lf %lf", &plain, &spec) == 2 &&
            plain > 0 && spec > 0) {
            *out = (td_mtp_cost){.plain_s = plain, .spec_s = spec};
            found = true;
        }
        line = next;
    }
    td_free(text);
    return found;
}

const char *td_mtp_cost_cache_path(char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0] == '/') snprintf(buf, cap, "%s/tandem/mtp-cost.tsv", xdg);
    else if (home && home[0]) snprintf(buf, cap, "%s/.cache/tandem/mtp-cost.tsv", home);
    else return NULL;
    return buf;
}

/* mkdir -p of the file's directory (best effort) */
static void td_make_parent_dirs(const char *file)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(dir, 0755);
        *p = '/';
    }
    mkdir(dir, 0755);
}

void td_mtp_cost_save(const char *cache, const char *key, const td_mtp_cost *c)
{
    if (!cache) return;
    char *old = NULL;
    if (td_read_text_file(cache, 1u << 20, &old, NULL) != TD_OK) td_err_clear();
    /* the other keys' lines, newest last, then ours; written beside and renamed, so that a reader never
     * sees half a file */
    const char *lines[TD_COST_CACHE_LINES];
    int n = 0;
    size_t kl = strlen(key);
    for (char *line = old; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (*line && !(strncmp(line, key, kl) == 0 && line[kl] == '\t')) {
            if (n == TD_COST_CACHE_LINES - 1) memmove(lines, lines + 1, (size_t)--n * sizeof *lines);
            lines[n++] = line;
        }
        line = next;
    }
    td_make_parent_dirs(cache);
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", cache, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (f) {
        for (int i = 0; i < n; i++) fprintf(f, "%s\n", lines[i]);
        fprintf(f, "%s\t%.9g %.9g\n", key, c->plain_s, c->spec_s);
        bool ok = fclose(f) == 0;
        if (!ok || rename(tmp, cache) != 0) unlink(tmp);
    }
    td_free(old);
}
