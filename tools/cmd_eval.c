/* tandem eval: the correctness contract against a reference file. */
#include "td_cli.h"
#include "td_cli_kv.h"
#include "td_commands.h"
#include "cmd_eval_tier.h"
#include "td_cli_plan.h"
#include "td_eval.h"
#include "td_tokenizer.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void td_eval_help(void)
{
    printf("usage: tandem eval --model <dir|file> [--reference <reference.safetensors>] [options]\n\n"
           "Runs the model on the reference's prompt (one prefill), decodes its greedy continuation through the\n"
           "KV cache with teacher forcing, compares MTP logits when both have them, and prints a table whose last\n"
           "line is one JSON object. Exits 0 only when the check passes.\n\n"
           "Two tiers judge it. exact (the default): max rel err <= 1e-4 and every greedy step followed with\n"
           "--kernels ref; mean KL <= 1e-3 and top-1 >= 0.98 otherwise. bf16: held to what plain bf16 inference\n"
           "makes on the same fixture (variant A of bf16-reference.json): eval also runs the exact path\n"
           "(--kernels ref, f32 KV cache) in-process, marks the positions where some MoE layer chose other\n"
           "experts (flipped), and passes when the KL over the other positions is at most 2x the yardstick's,\n"
           "the flipped positions at most one more, and top-1 at most 0.02 lower. Positions are the prompt's\n"
           "(prefill) and one per greedy step after the first (decode), as the yardstick counts them.\n\n"
           "  --model M            HF directory, .safetensors file (config.json beside it) or .gguf file\n"
           "  --reference R        reference.safetensors (default: M/reference.safetensors, or\n"
           "                       <name>.reference.safetensors beside a file, also without a split\n"
           "                       suffix and a quantization tag in <name>: X-Q4_K_M-00001-of-00009.gguf\n"
           "                       finds X.reference.safetensors)\n"
           "  --kernels K          ref | auto (default auto) | avx2 | avx512 | amx\n"
           "                       (auto: AVX2/AVX-512; amx adds bf16 tiles for batches: faster prefill,\n"
           "                       weights and activations rounded to bf16; on a GPU, auto multiplies\n"
           "                       batches of more than 8 rows on bf16 tensor cores, ref in fp32)\n"
           "  --max-rel-err X      pass threshold on max|ours-ref|/max|ref| (default 1e-4 with ref kernels)\n"
           "  --max-kld X          pass threshold on the mean KL divergence (default 1e-3 with fast kernels)\n"
           "  --attn A             prefill attention: auto | decompressed | absorbed\n"
           "  --kv-type T          " TD_KV_TYPE_HELP "\n"
           "  --tier T             exact (default) | bf16\n"
           "  --bf16-reference J   the bf16 tier's yardsticks (default: $TANDEM_SHARED/fixtures/\n"
           "                       bf16-reference.json); the model's entry is found by its directory or\n"
           "                       file name (tiny-dsv3-bf16, tiny-dsv3-q8_0-legacy.gguf)\n"
           "  --threads N          CPU threads (default: %s)\n"
           "  --mtp-from P         attach the MTP block from an official safetensors file or directory\n"
           "  --expert-groups N/M  route with N expert groups, keeping the top M (GGUFs without group keys)\n"
           "%s"
           "  --json               print only the JSON line\n\n"
           "  --write-reference R  instead of checking, write R in the fixtures' format from this model's own\n"
           "                       outputs (prompt logits, greedy continuation and its logits, MTP logits); then\n"
           "                       `tandem eval --reference R` checks other kernels, KV types or placements\n"
           "  --prompt TEXT        its prompt, through the model's tokenizer (default: random token ids)\n"
           "  --prompt-tokens N    random prompt length without --prompt (default 24)\n"
           "  --greedy N           greedy steps (default 8)\n",
           td_cli_threads_default(), td_cli_plan_help());
}

/* True when s (one '-' or '.' separated piece of a file name) names a quantization: q8_0, Q4_K_M, IQ2_XXS,
 * bf16, f16, f32, fp8. */
static bool td_is_quant_tag(const char *s, size_t n)
{
    static const char *const plain[] = {"bf16", "f16", "f32", "fp16", "fp32", "fp8"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (n == strlen(plain[i]) && strncasecmp(s, plain[i], n) == 0) return true;
    size_t i = (s[0] == 'i' || s[0] == 'I') ? 1 : 0;
    return n > i + 1 && (s[i] == 'q' || s[i] == 'Q') && isdigit((unsigned char)s[i + 1]);
}

/* The reference beside a model, as the files are named: M/reference.safetensors for a directory;
 * <stem>.reference.safetensors beside a file, where the stem may drop a split suffix (-00001-of-00009)
 * and then a quantization tag (-q8_0), so that tandem-tiny-q8_0.gguf finds tandem-tiny.reference.safetensors,
 * which serves every quantization of the model. The first that exists; else NULL, with what was looked
 * for in `looked`. */
static char *td_default_reference(const char *model, char *looked, size_t cap)
{
    char stem[4096], cand[4200];
    looked[0] = '\0';
    if (td_path_is_dir(model)) {
        snprintf(cand, sizeof cand, "%s/reference.safetensors", model);
        snprintf(looked, cap, "%s", cand);
        return td_path_exists(cand) ? strdup(cand) : NULL;
    }
    snprintf(stem, sizeof stem, "%s", model);
    char *dot = strrchr(stem, '.'), *slash = strrchr(stem, '/');
    if (dot && (!slash || dot > slash) && (strcmp(dot, ".gguf") == 0 || strcmp(dot, ".safetensors") == 0)) *dot = '\0';
    const char *base = slash ? strrchr(stem, '/') + 1 : stem;
    for (int step = 0; step < 3; step++) {
        if (step == 1) { /* -00001-of-00009 */
            size_t n = strlen(stem);
            int a, b, used = 0;
            if (n > 15 && sscanf(stem + n - 15, "-%5d-of-%5d%n", &a, &b, &used) == 2 && used == 15) stem[n - 15] = '\0';
            else continue;
        }
        if (step == 2) { /* the last piece, if it names a quantization */
            char *cut = NULL;
            for (char *c = (char *)base; *c; c++)
                if (*c == '-' || *c == '.') cut = c;
            if (!cut || !td_is_quant_tag(cut + 1, strlen(cut + 1))) continue;
            *cut = '\0';
        }
        snprintf(cand, sizeof cand, "%s.reference.safetensors", stem);
        size_t used = strlen(looked);
        snprintf(looked + used, cap - used, "%s%s", used ? ", " : "", cand);
        if (td_path_exists(cand)) return strdup(cand);
    }
    return NULL;
}

typedef enum td_eval_tier { TD_TIER_EXACT, TD_TIER_BF16 } td_eval_tier;

typedef struct td_eval_opts {
    const char *model, *reference, *mtp_from, *bf16_reference;
    td_eval_tier tier;
    td_cli_plan_opts plan;
    td_kernels kernels;
    td_attn_path attn;
    td_kv_type kv_type;
    int threads;
    int expert_groups, expert_groups_used;
    double max_rel_err, max_kld; /* < 0: not given */
    bool json_only;
    const char *write_reference, *prompt; /* --write-reference mode */
    int64_t prompt_tokens, greedy;
} td_eval_opts;

static td_status td_eval_reference(const td_eval_opts *o, char **out)
{
    char looked[8192];
    *out = o->reference ? strdup(o->reference) : td_default_reference(o->model, looked, sizeof looked);
    if (*out) return TD_OK;
    if (o->reference) return td_fail(TD_E_NOMEM, "out of memory");
    return td_fail(TD_E_NOT_FOUND, "no reference beside %s (looked for %s): give one with --reference", o->model,
                   looked);
}

static int td_eval_parse(int argc, char **argv, td_eval_opts *o)
{
    *o = (td_eval_opts){.kernels = TD_KERNELS_AUTO, .max_rel_err = -1, .max_kld = -1, .prompt_tokens = 24, .greedy = 8};
    td_args a;
    td_args_init(&a, "eval", argc, argv);
    while (td_args_next(&a)) {
        const char *v;
        int taken;
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_eval_help();
            return 0;
        } else if (td_args_is(&a, "--json")) {
            o->json_only = true;
        } else if (td_args_is(&a, "--model")) {
            if (!(o->model = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--reference")) {
            if (!(o->reference = td_args_value(&a))) return 2;
        } else if ((taken = td_cli_plan_parse(&a, &o->plan)) != 0) {
            if (taken < 0) return 2;
        } else if (td_args_is(&a, "--mtp-from")) {
            if (!(o->mtp_from = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--expert-groups")) {
            if (!(v = td_args_value(&a)) || !td_parse_expert_groups(&a, v, &o->expert_groups, &o->expert_groups_used))
                return 2;
        } else if (td_args_is(&a, "--kernels")) {
            if (!(v = td_args_value(&a))) return 2;
            if (!td_kernels_from_name(v, &o->kernels))
                return td_cli_usage_error("eval", "--kernels: '%s' is not one of ref, auto, avx2, avx512, amx", v);
        } else if (td_args_is(&a, "--attn")) {
            if (!(v = td_args_value(&a))) return 2;
            if (strcmp(v, "auto") == 0) o->attn = TD_ATTN_AUTO;
            else if (strcmp(v, "decompressed") == 0) o->attn = TD_ATTN_DECOMPRESSED;
            else if (strcmp(v, "absorbed") == 0) o->attn = TD_ATTN_ABSORBED;
            else return td_cli_usage_error("eval", "--attn: '%s' is not one of auto, decompressed, absorbed", v);
        } else if (td_args_is(&a, "--kv-type")) {
            if (!(v = td_args_value(&a)) || !td_parse_kv_type(&a, v, &o->kv_type)) return 2;
        } else if (td_args_is(&a, "--tier")) {
            if (!(v = td_args_value(&a))) return 2;
            if (strcmp(v, "exact") == 0) o->tier = TD_TIER_EXACT;
            else if (strcmp(v, "bf16") == 0) o->tier = TD_TIER_BF16;
            else return td_cli_usage_error("eval", "--tier: '%s' is not one of exact, bf16", v);
        } else if (td_args_is(&a, "--bf16-reference")) {
            if (!(o->bf16_reference = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--threads")) {
            if (!(v = td_args_value(&a)) || !td_parse_threads(&a, v, &o->threads)) return 2;
        } else if (td_args_is(&a, "--max-rel-err")) {
            if (!(v = td_args_value(&a)) || !td_parse_double(&a, v, 0, 1e6, &o->max_rel_err)) return 2;
        } else if (td_args_is(&a, "--max-kld")) {
            if (!(v = td_args_value(&a)) || !td_parse_double(&a, v, 0, 1e6, &o->max_kld)) return 2;
        } else if (td_args_is(&a, "--write-reference")) {
            if (!(o->write_reference = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--prompt")) {
            if (!(o->prompt = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--prompt-tokens")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 2, 2048, &o->prompt_tokens)) return 2;
        } else if (td_args_is(&a, "--greedy")) {
            if (!(v = td_args_value(&a)) || !td_parse_i64(&a, v, 1, 2048, &o->greedy)) return 2;
        } else {
            return td_args_unknown(&a);
        }
    }
    if (!o->model) return td_cli_usage_error("eval", "--model is required");
    if (o->write_reference && (o->reference || o->tier != TD_TIER_EXACT))
        return td_cli_usage_error("eval", "--write-reference writes a reference; --reference and --tier check against "
                                          "one: give one of them");
    if (o->tier == TD_TIER_BF16 && (o->max_rel_err >= 0 || o->max_kld >= 0))
        return td_cli_usage_error("eval", "--max-rel-err and --max-kld are the exact tier's limits; the bf16 tier "
                                          "takes its limits from the yardstick");
    if (o->bf16_reference && o->tier != TD_TIER_BF16)
        return td_cli_usage_error("eval", "--bf16-reference is the bf16 tier's yardstick: add --tier bf16");
    return -1;
}

/* The pass rule of the issue: exact with reference kernels, statistical with fast ones. */
/* The exact tier, the contract before the bf16 one: exact with reference kernels, statistical with fast ones. */
static bool td_eval_passes(const td_eval_opts *o, const td_eval_result *r, double *rel_limit, double *kld_limit)
{
    bool ref = o->kernels == TD_KERNELS_REF;
    bool overridden = o->max_rel_err >= 0 || o->max_kld >= 0;
    /* given limits replace the defaults: a quantized model checked by KL alone is not held to 1e-4 */
    *rel_limit = o->max_rel_err >= 0 ? o->max_rel_err : (ref && !overridden ? 1e-4 : -1);
    *kld_limit = o->max_kld >= 0 ? o->max_kld : (!ref && !overridden ? 1e-3 : -1);
    bool pass = true;
    if (*rel_limit >= 0) {
        pass &= r->logits_max_rel_err <= *rel_limit;
        if (r->mtp_max_rel_err >= 0) pass &= r->mtp_max_rel_err <= *rel_limit;
    }
    if (*kld_limit >= 0) pass &= r->kld_mean <= *kld_limit;
    /* exact runs must follow every greedy step; quantized comparisons (a limit given) may flip near-ties */
    if (ref && o->max_rel_err < 0 && o->max_kld < 0) pass &= r->greedy_match == r->greedy_steps;
    else pass &= r->top1_agree >= 0.98;
    if (r->has_mtp_ref && !r->has_mtp_model) pass = false;
    return pass;
}

static void td_eval_table(const td_eval_opts *o, const td_model *m, const char *ref, const td_eval_result *r,
                          int64_t kv_bytes, double rel_limit, double kld_limit)
{
    char lim[32];
    printf("model       %s (%s)\n", m->path, m->format);
    printf("reference   %s: %lld prompt tokens, %lld greedy steps, min greedy margin %g\n", ref,
           (long long)r->prompt_tokens, (long long)r->greedy_steps, r->min_greedy_margin);
    printf("kernels     %s; KV cache %lld B/token as stored (%s)\n", td_kernels_name(o->kernels), (long long)kv_bytes,
           td_kv_type_name(o->kv_type));
    printf("tier        %s\n", o->tier == TD_TIER_EXACT ? "exact" : "bf16 (limits below, from the yardstick)");
    printf("%-28s %-12s %s\n", "check", "value", "limit");
    snprintf(lim, sizeof lim, rel_limit >= 0 ? "<= %g" : "-", rel_limit);
    printf("%-28s %-12.3e %s\n", "prefill logits max rel err", r->prefill_max_rel_err, lim);
    if (r->decode_max_rel_err >= 0) printf("%-28s %-12.3e %s\n", "decode logits max rel err", r->decode_max_rel_err, lim);
    printf("%-28s %-12.4f %s\n", "top-1 agreement", r->top1_agree,
           o->tier == TD_TIER_EXACT ? ">= 0.98 unless exact" : "-");
    snprintf(lim, sizeof lim, kld_limit >= 0 ? "<= %g" : "-", kld_limit);
    printf("%-28s %-12.3e %s\n", "kld mean", r->kld_mean, lim);
    printf("%-28s %lld/%lld\n", "greedy match", (long long)r->greedy_match, (long long)r->greedy_steps);
    if (r->mtp_max_rel_err >= 0) printf("%-28s %-12.3e\n", "mtp logits max rel err", r->mtp_max_rel_err);
    else if (r->has_mtp_ref) printf("%-28s %s\n", "mtp logits", "reference has them but the model has no MTP block");
}

static void td_eval_json(const td_eval_opts *o, const td_eval_result *r, int64_t kv_bytes, const td_bf16_yardstick *y,
                         const td_bf16_limits *lim, bool pass)
{
    cJSON *j = cJSON_CreateObject();
    char gm[48];
    snprintf(gm, sizeof gm, "%lld/%lld", (long long)r->greedy_match, (long long)r->greedy_steps);
    cJSON_AddNumberToObject(j, "logits_max_rel_err", r->logits_max_rel_err);
    cJSON_AddNumberToObject(j, "prefill_max_rel_err", r->prefill_max_rel_err);
    if (r->decode_max_rel_err >= 0) cJSON_AddNumberToObject(j, "decode_max_rel_err", r->decode_max_rel_err);
    else cJSON_AddNullToObject(j, "decode_max_rel_err");
    cJSON_AddNumberToObject(j, "top1_agree", r->top1_agree);
    cJSON_AddNumberToObject(j, "kld_mean", r->kld_mean);
    cJSON_AddNumberToObject(j, "kld_max", r->kld_max);
    cJSON_AddStringToObject(j, "greedy_match", gm);
    if (r->mtp_max_rel_err >= 0) cJSON_AddNumberToObject(j, "mtp_max_rel_err", r->mtp_max_rel_err);
    else cJSON_AddNullToObject(j, "mtp_max_rel_err");
    cJSON_AddStringToObject(j, "kernels", td_kernels_name(o->kernels));
    cJSON_AddNumberToObject(j, "kv_bytes_per_token", (double)kv_bytes);
    cJSON_AddStringToObject(j, "kv_type", td_kv_type_name(o->kv_type));
    cJSON_AddStringToObject(j, "tier", o->tier == TD_TIER_EXACT ? "exact" : "bf16");
    td_eval_tier_json(j, r, o->tier == TD_TIER_BF16 ? y : NULL, lim);
    cJSON_AddBoolToObject(j, "pass", pass);
    char *s = cJSON_PrintUnformatted(j);
    if (s) puts(s);
    free(s);
    cJSON_Delete(j);
}

/* --write-reference: the prompt (the text through the model's tokenizer, or random ids), then the file. */
static int td_eval_write(const td_eval_opts *o, td_model *m, td_session *s)
{
    td_tokens ids = {0};
    td_tokenizer *tok = NULL;
    td_status st = TD_OK;
    if (o->prompt) {
        st = td_tokenizer_for_model(m, &tok);
        if (st == TD_OK) st = td_tokenizer_encode(tok, o->prompt, strlen(o->prompt), true, &ids);
        if (st == TD_OK && ids.n < 2) st = td_fail(TD_E_ARG, "--prompt: '%s' is %lld token(s); a reference needs 2 or more", o->prompt, (long long)ids.n);
    } else {
        uint64_t rng = 2024;
        for (int64_t i = 0; st == TD_OK && i < o->prompt_tokens; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            st = td_tokens_push(&ids, (int32_t)((rng >> 33) % (uint64_t)m->hp.vocab_size));
        }
    }
    td_eval_reference_info info;
    if (st == TD_OK) st = td_eval_write_reference(s, ids.ids, ids.n, o->greedy, o->write_reference, &info);
    td_tokens_free(&ids);
    td_tokenizer_free(tok);
    if (st != TD_OK) return td_cli_fail("eval", st);
    if (!o->json_only)
        printf("reference   %s: %lld prompt tokens, %lld greedy steps, %s, min greedy margin %g (%s kernels, KV %s)\n",
               o->write_reference, (long long)info.prompt_tokens, (long long)info.greedy_steps,
               info.mtp ? "MTP logits" : "no MTP", info.min_greedy_margin, td_kernels_name(o->kernels),
               td_kv_type_name(td_session_kv_type(s)));
    printf("{\"reference\":\"%s\",\"prompt_tokens\":%lld,\"greedy_steps\":%lld,\"mtp\":%s,\"min_greedy_margin\":%.9g}\n",
           o->write_reference, (long long)info.prompt_tokens, (long long)info.greedy_steps, info.mtp ? "true" : "false",
           info.min_greedy_margin);
    return 0;
}

int td_cmd_eval(int argc, char **argv)
{
    td_eval_opts o;
    int rc = td_eval_parse(argc, argv, &o);
    if (rc >= 0) return rc;
    td_bf16_yardstick yard = {0};
    char yard_path[4096] = "";
    if (o.tier == TD_TIER_BF16 &&
        (rc = td_eval_tier_yardstick(o.model, o.bf16_reference, &yard, yard_path, sizeof yard_path)) >= 0)
        return rc;
    char *ref = NULL;
    td_model *m = NULL;
    td_engine *e = NULL;
    td_session *s = NULL;
    td_rules *rules = NULL;
    td_plan *plan = NULL;
    td_model_params mp = {
        .mtp_from = o.mtp_from, .expert_groups = o.expert_groups, .expert_groups_used = o.expert_groups_used};
    td_status st = td_model_open(o.model, &mp, &m);
    if (st == TD_OK && !o.write_reference) st = td_eval_reference(&o, &ref);
    if (st == TD_OK) {
        td_kv_type kv = o.kv_type != TD_KV_AUTO ? o.kv_type : o.kernels == TD_KERNELS_REF ? TD_KV_F32 : TD_KV_BF16;
        st = td_cli_plan_make(&o.plan, "eval", m, 4096, td_kv_type_bytes(kv), &rules, &plan);
    }
    if (st == TD_OK) {
        td_engine_params ep = {.kernels = o.kernels, .n_threads = o.threads, .plan = plan};
        st = td_engine_open(m, &ep, &e);
        if (st == TD_OK && plan) o.kernels = td_cpu_kernels(td_engine_cpu(e)); /* the plan may choose them */
    }
    if (st == TD_OK) {
        td_session_params sp = {.n_ctx = 4096, .kv_type = o.kv_type};
        st = td_session_create(e, &sp, &s);
        if (st == TD_OK) td_cli_plan_print_gpu_mem(plan, stderr);
    }
    if (st == TD_OK && o.write_reference) {
        rc = td_eval_write(&o, m, s);
        goto close_all;
    }
    td_eval_result r;
    if (st == TD_OK) {
        td_eval_params evp = {.attn = o.attn, .routing = o.tier == TD_TIER_BF16, .routing_threads = o.threads};
        st = td_eval_run(s, ref, &evp, &r);
    }
    if (st == TD_OK && o.tier == TD_TIER_BF16 && r.all.positions != yard.positions)
        st = td_fail(TD_E_ARG, "%s counts %lld positions for '%s' but %s gives %lld (%lld prompt + %lld greedy - 1): the "
                     "yardstick was made for another prompt; give the matching --reference or --bf16-reference",
                     yard_path, (long long)yard.positions, yard.fixture, ref, (long long)r.all.positions,
                     (long long)r.prompt_tokens, (long long)r.greedy_steps);
    if (st != TD_OK) {
        rc = td_cli_fail("eval", st);
    } else {
        double rel_limit = -1, kld_limit = -1;
        td_bf16_limits lim = td_bf16_tier_limits(&yard);
        bool pass = o.tier == TD_TIER_EXACT ? td_eval_passes(&o, &r, &rel_limit, &kld_limit)
                                            : td_bf16_tier_passes(&r, &lim) && !(r.has_mtp_ref && !r.has_mtp_model);
        int64_t kv = td_session_kv_bytes_per_token(s);
        o.kv_type = td_session_kv_type(s);
        if (!o.json_only) {
            td_eval_table(&o, m, ref, &r, kv, rel_limit, kld_limit);
            td_eval_tier_table(&r, o.tier == TD_TIER_BF16 ? &yard : NULL, yard_path, &lim);
            printf("%-28s %s\n", "result", pass ? "PASS" : "FAIL");
        }
        td_eval_json(&o, &r, kv, &yard, &lim, pass);
        rc = pass ? 0 : 1;
    }
close_all:
    td_session_free(s);
    td_engine_close(e);
    td_plan_free(plan);
    td_rules_free(rules);
    td_model_close(m);
    free(ref);
    return rc;
}
