/* --kv-type, one parser for every command that makes a session (eval, generate, chat, bench mtp) and for
 * the planner (rules): how the latent KV cache stores its values. */
#ifndef TD_CLI_KV_H
#define TD_CLI_KV_H

#include "td_backend.h"
#include "td_cli.h"

/* The help line's text after "--kv-type T". */
#define TD_KV_TYPE_HELP "KV cache: bf16 | f32 (default bf16; f32 with --kernels ref)"

/* "bf16" or "f32"; on anything else prints "tandem <cmd>: --kv-type: ..." and returns false (exit 2). */
bool td_parse_kv_type(const td_args *a, const char *s, td_kv_type *out);

#endif
