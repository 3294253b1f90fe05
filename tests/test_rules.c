/* Rules: the YAML formats (tandem's and KTransformers'), --override, first-match-wins matching, the
 * defaults, and errors that name file:line:column (computed here from the text, never typed in). */
#include "td_alloc.h"
#include "td_rules.h"
#include "td_test.h"

#include <stdlib.h>
#include <string.h>

static const char *td_src_dir(void)
{
    const char *s = getenv("TANDEM_SOURCE_DIR");
    return s && *s ? s : ".";
}

static const char *td_src_path(const char *rel)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", td_src_dir(), rel);
    return buf;
}

/* "name:line:col" of the first occurrence of `needle` (after `after`, if given) in text. */
static const char *td_loc_of(const char *name, const char *text, const char *after, const char *needle)
{
    static char buf[256];
    const char *from = after ? strstr(text, after) : text;
    const char *at = from ? strstr(from, needle) : NULL;
    if (!at) return "(needle not found)";
    int line = 1, col = 1;
    for (const char *p = text; p < at; p++) {
        if (*p == '\n') line++, col = 1;
        else col++;
    }
    snprintf(buf, sizeof buf, "%s:%d:%d: ", name, line, col);
    return buf;
}

static td_module td_mod(const char *name, td_module_kind kind, int layer)
{
    td_module m = {0};
    snprintf(m.name, sizeof m.name, "%s", name);
    m.kind = kind;
    m.layer = layer;
    return m;
}

/* A DeepSeek-V3-shaped config: layers 0-2 dense, 3.. MoE. */
static td_hparams td_hp(void)
{
    td_hparams hp = {0};
    hp.n_layers = 61;
    hp.first_k_dense_replace = 3;
    hp.moe_layer_freq = 1;
    hp.n_routed_experts = 256;
    hp.q_lora_rank = 1536;
    return hp;
}

static td_rules *td_parse(const char *text, td_status *st)
{
    td_rules *r;
    if (td_rules_create(&r) != TD_OK) return NULL;
    *st = td_rules_load_text(r, text, strlen(text), "t.yaml");
    return r;
}

/* Parses text expecting an error whose message starts at the location of `needle` and contains `want`. */
static void td_expect_error(const char *text, const char *after, const char *needle, const char *want, int line)
{
    td_status st;
    td_rules *r = td_parse(text, &st);
    const char *loc = td_loc_of("t.yaml", text, after, needle);
    TD_CHECKF(st != TD_OK, "line %d: expected an error for:\n%.160s", line, text);
    TD_CHECKF(strncmp(td_errmsg(), loc, strlen(loc)) == 0, "line %d: message '%.160s' should start with '%.160s'", line,
              td_errmsg(), loc);
    TD_CHECKF(strstr(td_errmsg(), want) != NULL, "line %d: message '%.160s' should say '%.160s'", line, td_errmsg(), want);
    td_rules_free(r);
}

static td_rule_match td_match(const td_rules *r, const char *name, td_module_kind kind, int layer)
{
    td_hparams hp = td_hp();
    td_module m = td_mod(name, kind, layer);
    td_rule_match mm;
    td_status st = td_rules_match(r, &m, &hp, &mm);
    TD_CHECKF(st == TD_OK, "match %.160s: %.160s", name, td_errmsg());
    return mm;
}

static bool td_on(td_rule_match mm, td_device_kind kind, int index)
{
    return mm.place.device.kind == kind && mm.place.device.index == index;
}

static void test_presets(void)
{
    static const struct {
        const char *file;
        int rules;
    } presets[] = {{"placement_rules/deepseek-v3-1gpu-24gb.yaml", 3},
                   {"placement_rules/cpu-only.yaml", 2},
                   {"placement_rules/deepseek-v3-2gpu.yaml", 4}};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        td_rules *r;
        TD_CHECK(td_rules_create(&r) == TD_OK);
        td_status st = td_rules_load_file(r, td_src_path(presets[i].file));
        TD_CHECKF(st == TD_OK, "%.160s: %.160s", presets[i].file, td_errmsg());
        TD_CHECK(td_rules_get_format(r) == TD_RULES_TANDEM);
        TD_CHECK(td_rules_count(r) == presets[i].rules);
        td_rules_free(r);
    }
    /* what the 1-GPU preset promises */
    td_rules *r;
    TD_CHECK(td_rules_create(&r) == TD_OK);
    TD_CHECK(td_rules_load_file(r, td_src_path(presets[0].file)) == TD_OK);
    td_rule_match e = td_match(r, "model.layers.7.mlp.experts", TD_MODULE_EXPERTS, 7);
    TD_CHECK(td_on(e, TD_DEVICE_CPU, 0) && e.place.numa == TD_NUMA_SPLIT);
    TD_CHECK(td_on(td_match(r, "model.layers.7.self_attn", TD_MODULE_ATTN, 7), TD_DEVICE_CUDA, 0));
    TD_CHECK(td_on(td_match(r, "model.layers.7.mlp.shared_experts", TD_MODULE_SHARED_EXPERTS, 7), TD_DEVICE_CUDA, 0));
    TD_CHECK(td_on(td_match(r, "model.layers.1.mlp", TD_MODULE_DENSE_MLP, 1), TD_DEVICE_CUDA, 0));
    TD_CHECK(td_on(td_match(r, "lm_head", TD_MODULE_HEAD, -1), TD_DEVICE_CUDA, 0));
    td_rule_match emb = td_match(r, "model.embed_tokens", TD_MODULE_EMBED, -1);
    TD_CHECK(td_on(emb, TD_DEVICE_CPU, 0) && emb.place.numa == TD_NUMA_INTERLEAVE);
    TD_CHECK(td_match(r, "lm_head", TD_MODULE_HEAD, -1).place.numa == TD_NUMA_NONE);
    td_rules_free(r);
}

static void test_first_match_and_defaults(void)
{
    const char *text = "- match: {name: 'experts$', layers: 3-5}\n"
                       "  place: {device: cuda:1}\n"
                       "- match: {name: 'experts$', layers: [4, 9]}\n"
                       "  place: {device: cuda:2, kernel: auto}\n"
                       "- match: {name: 'self_attn', layers: 7}\n"
                       "  place: {kernel: ref, numa: node:1}\n"
                       "- match: {name: 'mlp\\.gate$'}\n"
                       "  place: {weights: q8_0}\n";
    td_status st;
    td_rules *r = td_parse(text, &st);
    TD_CHECKF(st == TD_OK, "%.160s", td_errmsg());
    TD_CHECK(td_rules_count(r) == 4);
    TD_CHECK(td_on(td_match(r, "model.layers.4.mlp.experts", TD_MODULE_EXPERTS, 4), TD_DEVICE_CUDA, 1)); /* first wins */
    TD_CHECK(td_on(td_match(r, "model.layers.6.mlp.experts", TD_MODULE_EXPERTS, 6), TD_DEVICE_CUDA, 2));
    td_rule_match none = td_match(r, "model.layers.10.mlp.experts", TD_MODULE_EXPERTS, 10);
    TD_CHECK(none.rule == -1 && td_on(none, TD_DEVICE_CPU, 0) && none.place.numa == TD_NUMA_SPLIT);
    /* fields a rule leaves out take the kind's defaults */
    td_rule_match a = td_match(r, "model.layers.7.self_attn", TD_MODULE_ATTN, 7);
    TD_CHECK(a.rule == 2 && td_on(a, TD_DEVICE_CPU, 0) && a.place.kernel == TD_KERNELS_REF);
    TD_CHECK(a.place.numa == TD_NUMA_NODE && a.place.numa_node == 1);
    TD_CHECK(td_match(r, "model.layers.8.self_attn", TD_MODULE_ATTN, 8).rule == -1);
    td_rule_match g = td_match(r, "model.layers.3.mlp.gate", TD_MODULE_ROUTER, 3);
    TD_CHECK(g.place.weights == TD_WEIGHTS_CONVERT && g.place.convert_to == TD_TYPE_Q8_0);
    TD_CHECK(g.place.numa == TD_NUMA_INTERLEAVE);
    /* a layer rule never matches modules outside the layers */
    TD_CHECK(td_match(r, "model.embed_tokens", TD_MODULE_EMBED, -1).rule == -1);
    td_rules_free(r);

    /* no rules at all: the documented defaults */
    td_placement d;
    td_placement_default(TD_MODULE_EXPERTS, &d);
    TD_CHECK(d.device.kind == TD_DEVICE_CPU && d.kernel == TD_KERNELS_AUTO && d.weights == TD_WEIGHTS_KEEP &&
             d.numa == TD_NUMA_SPLIT);
    td_placement_default(TD_MODULE_ATTN, &d);
    TD_CHECK(d.numa == TD_NUMA_INTERLEAVE);

    /* an empty file and a rule without match */
    r = td_parse("", &st);
    TD_CHECK(st == TD_OK && td_rules_count(r) == 0);
    td_rules_free(r);
    r = td_parse("- place: {device: cuda:0}\n", &st);
    TD_CHECK(st == TD_OK && td_on(td_match(r, "model.norm", TD_MODULE_NORM, -1), TD_DEVICE_CUDA, 0));
    td_rules_free(r);
    r = td_parse("- match:\n  place: {device: cuda:3}\n", &st);
    TD_CHECK(st == TD_OK && td_on(td_match(r, "lm_head", TD_MODULE_HEAD, -1), TD_DEVICE_CUDA, 3));
    td_rules_free(r);
    /* block style and llama.cpp device names */
    r = td_parse("- match:\n    name: \"exps|experts\"\n  place:\n    device: CUDA1\n", &st);
    TD_CHECKF(st == TD_OK, "%.160s", td_errmsg());
    TD_CHECK(td_on(td_match(r, "model.layers.3.mlp.experts", TD_MODULE_EXPERTS, 3), TD_DEVICE_CUDA, 1));
    td_rules_free(r);
}

static void test_errors(void)
{
    /* unknown keys */
    td_expect_error("- match: {name: 'x'}\n  place: {devcie: cpu}\n", NULL, "devcie",
                    "unknown key 'devcie' in place (expected device, kernel, weights or numa)", __LINE__);
    td_expect_error("- match: {name: 'x'}\n  plcae: {device: cpu}\n", NULL, "plcae",
                    "unknown key 'plcae' in a rule (expected match or place)", __LINE__);
    td_expect_error("- match: {nmae: 'x'}\n  place: {device: cpu}\n", NULL, "nmae",
                    "unknown key 'nmae' in match (expected name or layers)", __LINE__);
    /* a bad regex: the column points into it */
    td_expect_error("- match: {name: 'experts(['}\n  place: {device: cpu}\n", "[", "'}", "bad regex", __LINE__);
    td_expect_error("- match:\n    name: experts)\n  place: {device: cpu}\n", NULL, ")", "bad regex",
                    __LINE__);
    /* devices and values that don't exist */
    td_expect_error("- match: {name: x}\n  place: {device: gpu0}\n", NULL, "gpu0", "expected cpu or cuda:N", __LINE__);
    td_expect_error("- match: {name: x}\n  place: {device: 'cuda:x'}\n", NULL, "'cuda:x'", "is not a device",
                    __LINE__);
    td_expect_error("- match: {name: x}\n  place: {kernel: sse2}\n", NULL, "sse2",
                    "expected auto, ref, avx2, avx512 or amx", __LINE__);
    td_expect_error("- match: {name: x}\n  place: {weights: iq2_xxs}\n", NULL, "iq2_xxs", "tandem converts to",
                    __LINE__);
    td_expect_error("- match: {name: x}\n  place: {numa: node:x}\n", NULL, "node:x",
                    "expected split, interleave or node:N", __LINE__);
    /* impossible combinations */
    td_expect_error("- match: {name: x}\n  place: {device: cuda:0, kernel: avx2}\n", NULL, "avx2",
                    "kernel avx2 is a CPU kernel, but this rule places modules on cuda:0", __LINE__);
    td_expect_error("- match: {name: x}\n  place: {device: cuda:0, numa: split}\n", NULL, "split",
                    "numa applies to host memory", __LINE__);
    /* wrong value types */
    td_expect_error("- match: 5\n  place: {device: cpu}\n", NULL, "5", "match must be a mapping, found a scalar",
                    __LINE__);
    td_expect_error("- match: {name: x}\n  place: {device: [cpu]}\n", NULL, "[cpu]",
                    "device must be a single value, found a list", __LINE__);
    td_expect_error("- match: {layers: abc}\n  place: {device: cpu}\n", NULL, "abc", "expected a layer range",
                    __LINE__);
    td_expect_error("- match: {layers: [3]}\n  place: {device: cpu}\n", NULL, "[3]", "needs two numbers", __LINE__);
    td_expect_error("- match: {layers: 9-3}\n  place: {device: cpu}\n", NULL, "9-3", "is empty", __LINE__);
    td_expect_error("- match: {layers: [3, x]}\n  place: {device: cpu}\n", NULL, "x]", "not a layer number",
                    __LINE__);
    /* structure */
    td_expect_error("- match: {name: x}\n", NULL, "match", "has no place", __LINE__);
    td_expect_error("match: {name: x}\n", NULL, "match", "a rules file is a list of rules", __LINE__);
    td_expect_error("- just a string\n", NULL, "just", "a rule must be a mapping", __LINE__);
    td_expect_error("- match: {name: x, name: y}\n  place: {device: cpu}\n", "x, ", "name", "given twice",
                    __LINE__);
    td_expect_error("- match: {name: x}\n  place: {device: cpu}\n---\n- place: {device: cpu}\n", "---", "- place",
                    "a second YAML document", __LINE__);
    td_expect_error("- match: {name: x}\n  place: {device: cpu}\n- match: {name: y}\n  replace: {class: default}\n",
                    "replace", "replace", "is KTransformers syntax", __LINE__);
    /* not YAML: the parser's position */
    td_status st;
    td_rules *r = td_parse("- match: {name: 'x'\n  place: {device: cpu}\n", &st);
    TD_CHECK(st == TD_E_FORMAT && strstr(td_errmsg(), "t.yaml:") && strstr(td_errmsg(), "not valid YAML"));
    td_rules_free(r);
    r = td_parse("- match: {name: \"a\\0b\"}\n  place: {device: cpu}\n", &st);
    TD_CHECK(st == TD_E_FORMAT && strstr(td_errmsg(), "NUL"));
    td_rules_free(r);
    /* a failed file leaves nothing behind, and a second file is refused */
    r = td_parse("- match: {name: x}\n  place: {device: cpu}\n- match: {name: '('}\n  place: {device: cpu}\n", &st);
    TD_CHECK(st != TD_OK && td_rules_count(r) == 0 && td_rules_get_format(r) == TD_RULES_NONE);
    TD_CHECK(td_rules_load_text(r, "- place: {device: cpu}\n", 23, "u.yaml") == TD_OK);
    TD_CHECK(td_rules_load_text(r, "- place: {device: cpu}\n", 23, "v.yaml") == TD_E_ARG);
    td_rules_free(r);
    r = td_parse("[]", &st);
    TD_CHECK(td_rules_load_file(r, "/nonexistent/rules.yaml") != TD_OK);
    td_rules_free(r);
}

static void test_overrides(void)
{
    td_rules *r;
    TD_CHECK(td_rules_create(&r) == TD_OK);
    /* llama.cpp habits: tensor names and buffer names */
    TD_CHECKF(td_rules_add_override(r, "exps=CPU") == TD_OK, "%.160s", td_errmsg());
    TD_CHECKF(td_rules_add_override(r, "blk\\.(3|4)\\.attn=CUDA1,layers\\.{1}5\\.=cuda:2") == TD_OK, "%.160s", td_errmsg());
    TD_CHECK(td_rules_count(r) == 3);
    TD_CHECK(td_rules_load_text(r, "- place: {device: cuda:0}\n", 26, "t.yaml") == TD_OK);
    td_rule_match e = td_match(r, "model.layers.9.mlp.experts", TD_MODULE_EXPERTS, 9);
    TD_CHECK(e.rule == 0 && td_on(e, TD_DEVICE_CPU, 0) && e.place.numa == TD_NUMA_SPLIT);
    TD_CHECK(td_on(td_match(r, "model.layers.4.self_attn", TD_MODULE_ATTN, 4), TD_DEVICE_CUDA, 1));
    TD_CHECK(!td_on(td_match(r, "model.layers.5.self_attn", TD_MODULE_ATTN, 5), TD_DEVICE_CUDA, 1));
    TD_CHECK(td_on(td_match(r, "model.layers.5.self_attn", TD_MODULE_ATTN, 5), TD_DEVICE_CUDA, 2));
    TD_CHECK(td_on(td_match(r, "model.layers.6.self_attn", TD_MODULE_ATTN, 6), TD_DEVICE_CUDA, 0)); /* the file */
    char buf[64];
    TD_CHECK(strcmp(td_rule_match_origin(r, &e, buf, sizeof buf), "--override #1") == 0);
    /* errors name the option and the column */
    TD_CHECK(td_rules_add_override(r, "experts=cpu,attn") == TD_E_ARG);
    TD_CHECKF(strstr(td_errmsg(), "--override #3, column 13") && strstr(td_errmsg(), "has no '='"), "%.160s", td_errmsg());
    TD_CHECK(td_rules_add_override(r, "attn=tpu") == TD_E_ARG);
    TD_CHECKF(strstr(td_errmsg(), "--override #4, column 6") && strstr(td_errmsg(), "'tpu' is not a device"), "%.160s",
              td_errmsg());
    TD_CHECK(td_rules_add_override(r, "x=cpu,(=cpu") == TD_E_FORMAT);
    TD_CHECKF(strstr(td_errmsg(), "--override #5") && strstr(td_errmsg(), "bad regex"), "%.160s", td_errmsg());
    TD_CHECK(td_rules_add_override(r, "=cpu") == TD_E_ARG);
    TD_CHECK(td_rules_add_override(r, "") == TD_E_ARG);
    TD_CHECK(td_rules_count(r) == 4); /* failed options added nothing */
    td_rules_free(r);
}

static void test_kt_format(void)
{
    td_rules *r;
    TD_CHECK(td_rules_create(&r) == TD_OK);
    td_status st = td_rules_load_file(r, td_src_path("tests/data/rules/kt-deepseek-v3-1gpu.yaml"));
    TD_CHECKF(st == TD_OK, "%.160s", td_errmsg());
    TD_CHECK(td_rules_get_format(r) == TD_RULES_KTRANSFORMERS);
    TD_CHECK(td_on(td_match(r, "model.layers.5.mlp.experts", TD_MODULE_EXPERTS, 5), TD_DEVICE_CPU, 0));
    TD_CHECK(td_on(td_match(r, "model.layers.5.self_attn", TD_MODULE_ATTN, 5), TD_DEVICE_CUDA, 0));
    TD_CHECK(td_on(td_match(r, "model.layers.5.mlp.shared_experts", TD_MODULE_SHARED_EXPERTS, 5), TD_DEVICE_CUDA, 0));
    TD_CHECK(td_on(td_match(r, "model.layers.1.mlp", TD_MODULE_DENSE_MLP, 1), TD_DEVICE_CUDA, 0));
    TD_CHECK(td_on(td_match(r, "model.embed_tokens", TD_MODULE_EMBED, -1), TD_DEVICE_CPU, 0));
    td_rule_match g = td_match(r, "model.layers.5.mlp.gate", TD_MODULE_ROUTER, 5);
    TD_CHECK(g.kt_default && td_on(g, TD_DEVICE_CUDA, 0)); /* no rule: KTransformers' default device */
    td_rules_free(r);

    TD_CHECK(td_rules_create(&r) == TD_OK);
    st = td_rules_load_file(r, td_src_path("tests/data/rules/kt-deepseek-v3-amx.yaml"));
    TD_CHECKF(st == TD_OK, "%.160s", td_errmsg());
    td_rule_match e = td_match(r, "model.layers.5.mlp.experts", TD_MODULE_EXPERTS, 5);
    TD_CHECK(td_on(e, TD_DEVICE_CPU, 0) && e.place.kernel == TD_KERNELS_AMX && e.place.weights == TD_WEIGHTS_REPACK);
    TD_CHECK(td_on(td_match(r, "model.norm", TD_MODULE_NORM, -1), TD_DEVICE_CUDA, 0));
    td_rules_free(r);

    /* recursive: False on an ancestor owns what is below it */
    const char *rec = "- match: {name: '^model\\.layers\\.4$'}\n"
                      "  replace: {class: default, kwargs: {generate_device: cpu}}\n"
                      "  recursive: False\n"
                      "- match: {class: torch.nn.Linear}\n"
                      "  replace: {class: ktransformers.operators.linear.KTransformersLinear, kwargs: {generate_device: "
                      "'cuda:1'}}\n";
    r = td_parse(rec, &st);
    TD_CHECKF(st == TD_OK, "%.160s", td_errmsg());
    TD_CHECK(td_on(td_match(r, "model.layers.4.self_attn", TD_MODULE_ATTN, 4), TD_DEVICE_CPU, 0));
    TD_CHECK(td_on(td_match(r, "model.layers.5.self_attn", TD_MODULE_ATTN, 5), TD_DEVICE_CUDA, 1));
    TD_CHECK(td_on(td_match(r, "lm_head", TD_MODULE_HEAD, -1), TD_DEVICE_CUDA, 1));
    td_rules_free(r);

    /* errors name the line */
    td_expect_error("- match: {name: x}\n  replace: {class: ktransformers.operators.experts.KSomethingNew}\n", NULL,
                    "ktransformers.operators.experts.KSomethingNew", "unknown class 'ktransformers.operators.experts."
                    "KSomethingNew' in replace", __LINE__);
    td_expect_error("- match: {class: mymodels.QwenBlock}\n  replace: {class: default}\n", NULL, "mymodels",
                    "unknown class 'mymodels.QwenBlock' in match", __LINE__);
    td_expect_error("- match: {name: x}\n  replace:\n    class: ktransformers.operators.experts.KTransformersExperts\n"
                    "    kwargs: {generate_device: cuda, generate_op: KExpertsCPU}\n",
                    NULL, "KExpertsCPU", "runs on the CPU, but generate_device is cuda:0", __LINE__);
    td_expect_error("- match: {name: x}\n  replace:\n    class: ktransformers.operators.linear.KTransformersLinear\n"
                    "    kwargs: {generate_op: KExpertsCPU}\n",
                    NULL, "KExpertsCPU", "is not a linear operator", __LINE__);
    td_expect_error("- match: {name: x}\n  replace:\n    kwargs: {generate_device: cpu, backend: AVX9000}\n", NULL,
                    "AVX9000", "backend 'AVX9000' is unknown", __LINE__);
    td_expect_error("- match: {name: x}\n  replace: {kwargs: {generate_device: xpu}}\n", NULL, "xpu",
                    "not a device tandem has", __LINE__);
    td_expect_error("- match: {name: x}\n  replace: {class: default}\n  recursive: maybe\n", NULL, "maybe",
                    "not a boolean", __LINE__);
    td_expect_error("- match: {}\n  replace: {class: default}\n", NULL, "match", "neither name nor class", __LINE__);
    td_expect_error("- match: {name: x}\n  replace: {class: default}\n- match: {name: y}\n  place: {device: cpu}\n",
                    "y}\n", "place", "is tandem syntax", __LINE__);
    /* an operator that cannot replace what the regex also catches */
    r = td_parse("- match: {name: 'layers\\.3\\.'}\n  replace: {class: ktransformers.operators.experts.KTransformersExperts"
                 ", kwargs: {generate_device: cpu}}\n",
                 &st);
    TD_CHECK(st == TD_OK);
    td_hparams hp = td_hp();
    td_module m = td_mod("model.layers.3.self_attn", TD_MODULE_ATTN, 3);
    td_rule_match mm;
    TD_CHECK(td_rules_match(r, &m, &hp, &mm) == TD_E_FORMAT);
    TD_CHECKF(strstr(td_errmsg(), "t.yaml:2:") && strstr(td_errmsg(), "cannot replace"), "%.160s", td_errmsg());
    td_rules_free(r);
}

static void test_regex_budget(void)
{
    /* catastrophic backtracking fails with a message instead of hanging */
    td_status st;
    td_rules *r = td_parse("- match: {name: '^(x+x+)+$'}\n  place: {device: cpu}\n", &st);
    TD_CHECK(st == TD_OK);
    td_hparams hp = td_hp();
    td_module m = td_mod("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxz", TD_MODULE_NORM, -1);
    td_rule_match mm;
    TD_CHECK(td_rules_match(r, &m, &hp, &mm) == TD_E_FORMAT);
    TD_CHECKF(strstr(td_errmsg(), "t.yaml:1:17") && strstr(td_errmsg(), "backtracks"), "%.160s", td_errmsg());
    td_rules_free(r);
}

static void test_write_yaml(void)
{
    td_rules *r;
    TD_CHECK(td_rules_create(&r) == TD_OK);
    TD_CHECK(td_rules_add_auto(r, "\\.mlp\\.experts$", 3, 9, (td_device_id){TD_DEVICE_CUDA, 1}) == TD_OK);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    td_rule_write_yaml(td_rules_at(r, 0), f);
    fclose(f);
    td_rules_clear_auto(r);
    TD_CHECK(td_rules_count(r) == 0);
    TD_CHECKF(td_rules_load_text(r, text, len, "written.yaml") == TD_OK, "%.160s\n%.160s", text, td_errmsg());
    const td_rule *back = td_rules_at(r, 0);
    TD_CHECK(back && back->has_layers && back->layer_lo == 3 && back->layer_hi == 9);
    TD_CHECK(back && strcmp(back->name, "\\.mlp\\.experts$") == 0 && back->set == TD_PLACE_DEVICE);
    TD_CHECK(back && back->place.device.kind == TD_DEVICE_CUDA && back->place.device.index == 1);
    free(text);
    td_rules_free(r);
}

/* Every allocation failing in turn: clean errors, never a crash or a leak (the ASan build checks). */
static void test_out_of_memory(void)
{
    char *text = NULL;
    FILE *f = fopen(td_src_path("tests/data/rules/kt-deepseek-v3-1gpu.yaml"), "rb");
    TD_CHECK(f != NULL);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = malloc((size_t)n + 1);
    TD_CHECK(fread(text, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    int ok = 0, nomem = 0;
    for (long k = 0; k < 400; k++) {
        td_alloc_fail_after(k);
        td_rules *r = NULL;
        td_status st = td_rules_create(&r);
        if (st == TD_OK) st = td_rules_add_override(r, "exps=cpu");
        if (st == TD_OK) st = td_rules_load_text(r, text, (size_t)n, "kt.yaml");
        td_alloc_fail_after(-1);
        if (st == TD_OK) ok++;
        else if (st == TD_E_NOMEM) nomem++;
        else fprintf(stderr, "after %ld allocations: %s: %s\n", k, td_status_name(st), td_errmsg());
        td_rules_free(r);
    }
    TD_CHECK(ok > 0 && nomem > 0 && ok + nomem == 400);
    free(text);
}

int main(void)
{
    test_presets();
    test_first_match_and_defaults();
    test_errors();
    test_overrides();
    test_kt_format();
    test_regex_budget();
    test_write_yaml();
    test_out_of_memory();
    return td_test_finish();
}
