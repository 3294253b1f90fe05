/* td_gguf_convert: any model tandem opens (HF safetensors BF16/FP8, or GGUF) -> a GGUF `deepseek2` file in
 * the MLA layout with llama.cpp's tensor names and metadata keys, quantized by td_quantize.
 *
 * Layout written: kv_b_proj is split into attn_k_b {nope, kv_lora, heads} and attn_v_b {kv_lora, v, heads};
 * experts are stacked into ffn_{gate,up,down}_exps slabs; the MTP block (with keep_mtp) becomes
 * blk.<n_layers>.* plus blk.<n_layers>.nextn.{enorm,hnorm,eh_proj,shared_head_norm}; 1-D tensors and the
 * router (ffn_gate_inp) stay F32. The tokenizer comes from the source GGUF, or from tokenizer.json (and
 * tokenizer_config.json) beside an HF model. A source without one is refused unless no_tokenizer says so:
 * llama.cpp and other tools cannot load a GGUF that has none.
 *
 * Every file carries general.file_type and tokenizer.chat_template: the source's template when it has
 * one, else tandem's Jinja for the DeepSeek format named by chat_template, or found from the model's name
 * (td_template_detect), so that front ends that run the template render what tandem does.
 *
 * Types per mode (a row length the type's block does not divide falls back: Q4_K -> Q5_0 -> Q8_0 ->
 * BF16; Q5_K -> Q5_0 -> Q8_0 -> BF16; Q6_K -> Q8_0 -> BF16; Q8_0 -> BF16):
 *   q8_0   every matrix Q8_0
 *   q4_k   every matrix Q4_K
 *   q4_k_m Q6_K for output.weight, attn_v_b and every ffn_down (dense, shared, experts); Q4_K for the rest
 *   q5_k   every matrix Q5_K
 *   q6_k   every matrix Q6_K
 *   bf16   every matrix BF16 */
#ifndef TD_GGUF_CONVERT_H
#define TD_GGUF_CONVERT_H

#include "td_model.h"

typedef enum td_convert_mode {
    TD_CONVERT_Q8_0 = 0,
    TD_CONVERT_Q4_K = 1,
    TD_CONVERT_Q4_K_M = 2,
    TD_CONVERT_Q6_K = 3,
    TD_CONVERT_BF16 = 4,
    TD_CONVERT_Q5_K = 5,
    TD_CONVERT_MODE_COUNT
} td_convert_mode;

const char *td_convert_mode_name(td_convert_mode m);
bool td_convert_mode_from_name(const char *name, td_convert_mode *out);

#define TD_CONVERT_MAX_THREADS 256

typedef struct td_convert_params {
    td_convert_mode mode;
    bool keep_mtp;            /* write the MTP block (an error if the source has none) */
    const char *tokenizer;    /* tokenizer.json to embed; NULL: the source GGUF's, or the one beside an HF source */
    bool no_tokenizer;        /* write no tokenizer, on purpose (llama.cpp will not load the file) */
    const char *chat_template; /* v3 | r1 | v3.1 (td_template_from_name): write tandem's Jinja for it, in place
                                  of the source's; NULL: the source's, else chosen from the model's name */
    int parts;                /* > 1: split output <stem>-0000N-of-0000M.gguf */
    bool progress;            /* progress on stderr */
    int threads;              /* threads quantizing each chunk of rows; 0: one per online CPU (at most
                                 TD_CONVERT_MAX_THREADS); the output is the same bytes for any count */
    bool remove_on_signal;    /* remove the temporary files when SIGINT/SIGTERM ends the process (programs) */
    uint64_t fail_after_bytes; /* tests: fail as a full disk would after this many bytes (0: never) */
    td_model_params model;    /* how the source is opened (mtp_from, expert groups, quiet) */
} td_convert_params;

td_status td_gguf_convert(const char *from, const char *to, const td_convert_params *p);

/* llama.cpp's general.file_type (llama_ftype) for a mode, which it shows as the file's quantization. */
uint32_t td_convert_file_type(td_convert_mode mode);

/* The type a mode gives a GGUF tensor whose rows have `cols` elements (n_dims: its dimensions). */
td_type td_convert_tensor_type(td_convert_mode mode, const char *gguf_name, int n_dims, int64_t cols);

#endif
