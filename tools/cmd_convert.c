/* tandem convert: an HF model or a GGUF -> a GGUF deepseek2 file (MLA layout, llama.cpp names). */
#include "td_cli.h"
#include "td_commands.h"
#include "td_gguf_convert.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void td_convert_help(void)
{
    printf("usage: tandem convert --from <hf dir|.safetensors|.gguf> --to <out.gguf> --type T [options]\n\n"
           "Writes GGUF `deepseek2` in the MLA layout (attn_k_b/attn_v_b), with llama.cpp's tensor names and\n"
           "metadata keys, stacked expert slabs and the tokenizer (from the source GGUF, or tokenizer.json beside\n"
           "an HF model). Routing-group keys are always written.\n\n"
           "  --type T             q8_0 | q4_k | q4_k_m | q6_k | bf16\n"
           "                       q4_k_m: Q6_K for output, attn_v_b and every ffn_down, Q4_K for the rest;\n"
           "                       rows a type's block does not divide fall back (Q4_K->Q5_0->Q8_0->BF16,\n"
           "                       Q6_K->Q8_0->BF16); norms, biases and the router stay F32\n"
           "  --keep-mtp           keep the MTP block as blk.<n_layers>.nextn.* (published GGUFs drop it)\n"
           "  --mtp-from P         attach the MTP block from an official safetensors file or directory first\n"
           "  --tokenizer F        tokenizer.json to embed (default: the one beside an HF source)\n"
           "  --split N            write N parts <stem>-0000K-of-0000N.gguf (llama.cpp's gguf-split layout)\n"
           "  --expert-groups N/M  routing groups of a source GGUF without group keys\n"
           "  --threads N          threads quantizing (default: one per CPU; the file is the same for any N)\n"
           "  --quiet              no progress or notices\n");
}

int td_cmd_convert(int argc, char **argv)
{
    const char *from = NULL, *to = NULL, *v;
    bool have_type = false;
    td_convert_params p = {.mode = TD_CONVERT_Q8_0, .progress = isatty(STDERR_FILENO) != 0};
    td_args a;
    td_args_init(&a, "convert", argc, argv);
    while (td_args_next(&a)) {
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_convert_help();
            return 0;
        } else if (td_args_is(&a, "--from")) {
            if (!(from = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--to")) {
            if (!(to = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--type")) {
            if (!(v = td_args_value(&a))) return 2;
            if (!td_convert_mode_from_name(v, &p.mode))
                return td_cli_usage_error("convert", "--type: '%s' is not one of q8_0, q4_k, q4_k_m, q6_k, bf16", v);
            have_type = true;
        } else if (td_args_is(&a, "--keep-mtp")) {
            p.keep_mtp = true;
        } else if (td_args_is(&a, "--mtp-from")) {
            if (!(p.model.mtp_from = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--tokenizer")) {
            if (!(p.tokenizer = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--split")) {
            if (!(v = td_args_value(&a)) || !td_parse_int(&a, v, 1, 9999, &p.parts)) return 2;
        } else if (td_args_is(&a, "--expert-groups")) {
            if (!(v = td_args_value(&a)) ||
                !td_parse_expert_groups(&a, v, &p.model.expert_groups, &p.model.expert_groups_used))
                return 2;
        } else if (td_args_is(&a, "--threads")) {
            if (!(v = td_args_value(&a)) || !td_parse_int(&a, v, 1, TD_CONVERT_MAX_THREADS, &p.threads)) return 2;
        } else if (td_args_is(&a, "--quiet")) {
            p.progress = false;
            p.model.quiet = true;
        } else {
            return td_args_unknown(&a);
        }
    }
    if (!from || !to) return td_cli_usage_error("convert", "--from and --to are required");
    if (!have_type) return td_cli_usage_error("convert", "--type is required (q8_0, q4_k, q4_k_m, q6_k or bf16)");
    td_status st = td_gguf_convert(from, to, &p);
    if (st != TD_OK) return td_cli_fail("convert", st);
    if (!p.model.quiet) fprintf(stderr, "tandem convert: wrote %s (%s)\n", to, td_convert_mode_name(p.mode));
    return 0;
}
