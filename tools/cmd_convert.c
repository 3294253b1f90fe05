/* tandem convert: an HF model or a GGUF -> a GGUF deepseek2 file (MLA layout, llama.cpp names). */
#include "td_cli.h"
#include "td_chat_template.h"
#include "td_commands.h"
#include "td_gguf_convert.h"
#include "td_gguf_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void td_convert_help(void)
{
    printf("usage: tandem convert --from <hf dir|.safetensors|.gguf> --to <out.gguf> --type T [options]\n\n"
           "Writes GGUF `deepseek2` in the MLA layout (attn_k_b/attn_v_b), with llama.cpp's tensor names and\n"
           "metadata keys, stacked expert slabs, the tokenizer (from the source GGUF, or tokenizer.json beside\n"
           "an HF model) and a chat template (the source's, else tandem's for the format). Routing-group keys are\n"
           "always written. Files are written under temporary names and renamed when all are complete.\n\n"
           "  --type T             q8_0 | q4_k | q4_k_m | q6_k | bf16\n"
           "                       q4_k_m: Q6_K for output, attn_v_b and every ffn_down, Q4_K for the rest;\n"
           "                       rows a type's block does not divide fall back (Q4_K->Q5_0->Q8_0->BF16,\n"
           "                       Q6_K->Q8_0->BF16); norms, biases and the router stay F32\n"
           "  --keep-mtp           keep the MTP block as blk.<n_layers>.nextn.* (published GGUFs drop it)\n"
           "  --mtp-from P         attach the MTP block from an official safetensors file or directory first\n"
           "  --tokenizer F        tokenizer.json to embed (default: the one beside an HF source); a source\n"
           "                       without a tokenizer is refused: other tools cannot load such a file\n"
           "  --no-tokenizer       write no tokenizer, on purpose (llama.cpp will not load the file)\n"
           "  --template T         chat template to write: v3 | r1 | v3.1 (default: the source's, else\n"
           "                       chosen from the model's name)\n"
           "  --split N            write N parts <stem>-0000K-of-0000N.gguf (llama.cpp's gguf-split layout)\n"
           "  --expert-groups N/M  routing groups of a source GGUF without group keys\n"
           "  --threads N          threads quantizing (default: one per CPU; the file is the same for any N)\n"
           "  --quiet              no progress or notices\n");
}

int td_cmd_convert(int argc, char **argv)
{
    const char *from = NULL, *to = NULL, *v;
    bool have_type = false;
    td_convert_params p = {.mode = TD_CONVERT_Q8_0, .progress = isatty(STDERR_FILENO) != 0, .remove_on_signal = true};
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
        } else if (td_args_is(&a, "--no-tokenizer")) {
            p.no_tokenizer = true;
        } else if (td_args_is(&a, "--template")) {
            if (!(p.chat_template = td_args_value(&a))) return 2;
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
    if (p.tokenizer && p.no_tokenizer) return td_cli_usage_error("convert", "give --tokenizer or --no-tokenizer, not both");
    td_template t;
    if (p.chat_template && (!td_template_from_name(p.chat_template, &t) || !td_template_jinja(t)))
        return td_cli_usage_error("convert", "--template: '%s' is not one of v3, r1, v3.1", p.chat_template);
    /* tests: a write that fails part-way, as a full disk would */
    const char *fail = getenv("TANDEM_TEST_FAIL_WRITE_AFTER");
    if (fail && *fail) p.fail_after_bytes = strtoull(fail, NULL, 10);
    td_status st = td_gguf_convert(from, to, &p);
    if (st != TD_OK) return td_cli_fail("convert", st);
    if (p.model.quiet) return 0;
    if (p.parts > 1) { /* the files written are the parts, not `to` */
        char first[4200], last[4200];
        td_gguf_split_path(to, 1, p.parts, first, sizeof first);
        td_gguf_split_path(to, p.parts, p.parts, last, sizeof last);
        fprintf(stderr, "tandem convert: wrote %d parts, %s ... %s (%s)\n", p.parts, first, last,
                td_convert_mode_name(p.mode));
    } else {
        fprintf(stderr, "tandem convert: wrote %s (%s)\n", to, td_convert_mode_name(p.mode));
    }
    return 0;
}
