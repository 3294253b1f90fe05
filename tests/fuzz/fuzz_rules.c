/* libFuzzer target for the rules parser (both YAML formats) and --override specs, then the matcher over
 * a DeepSeek-V3-shaped module list. Inputs starting with "OVR:" are override specs. */
#include "td_rules.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void td_fuzz_match(const td_rules *r)
{
    td_hparams hp = {0};
    hp.n_layers = 4;
    hp.first_k_dense_replace = 1;
    hp.moe_layer_freq = 1;
    hp.n_routed_experts = 16;
    static const struct {
        const char *name;
        td_module_kind kind;
        int layer;
    } mods[] = {
        {"model.embed_tokens", TD_MODULE_EMBED, -1},
        {"model.layers.0.self_attn", TD_MODULE_ATTN, 0},
        {"model.layers.0.mlp", TD_MODULE_DENSE_MLP, 0},
        {"model.layers.2.mlp.gate", TD_MODULE_ROUTER, 2},
        {"model.layers.2.mlp.experts", TD_MODULE_EXPERTS, 2},
        {"model.layers.3.mlp.shared_experts", TD_MODULE_SHARED_EXPERTS, 3},
        {"model.norm", TD_MODULE_NORM, -1},
        {"lm_head", TD_MODULE_HEAD, -1},
        {"model.layers.4", TD_MODULE_MTP, 4},
        {"model.layers.4.self_attn", TD_MODULE_ATTN, 4},
        {"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxz", TD_MODULE_NORM, -1},
    };
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) {
        td_module m = {0};
        snprintf(m.name, sizeof m.name, "%s", mods[i].name);
        m.kind = mods[i].kind;
        m.layer = mods[i].layer;
        td_rule_match mm;
        if (td_rules_match(r, &m, &hp, &mm) != TD_OK) continue;
        char buf[128];
        td_rule_match_origin(r, &mm, buf, sizeof buf);
    }
    FILE *sink = fopen("/dev/null", "w");
    for (int i = 0; sink && i < td_rules_count(r); i++) td_rule_write_yaml(td_rules_at(r, i), sink);
    if (sink) fclose(sink);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 16)) return 0;
    td_rules *r;
    if (td_rules_create(&r) != TD_OK) return 0;
    td_status st;
    if (size >= 4 && memcmp(data, "OVR:", 4) == 0) {
        char *spec = malloc(size - 3);
        if (!spec) {
            td_rules_free(r);
            return 0;
        }
        memcpy(spec, data + 4, size - 4);
        spec[size - 4] = '\0';
        st = td_rules_add_override(r, spec);
        free(spec);
    } else {
        st = td_rules_load_text(r, (const char *)data, size, "fuzz.yaml");
    }
    if (st == TD_OK) td_fuzz_match(r);
    td_rules_free(r);
    return 0;
}
