/* Context shift for `tandem chat`: when the conversation and room for the answer no longer fit the
 * context, the oldest turns are dropped (the system prompt stays), as llama.cpp and Ollama do, instead of
 * every later turn failing. A message that does not fit even alone is refused and the history kept. */
#ifndef TD_CHAT_SHIFT_H
#define TD_CHAT_SHIFT_H

#include "td_chat_conv.h"
#include "td_chat_setup.h"

/* Tokens kept free for the answer: max_tokens (a quarter of the context when 0), at most half of it. */
int64_t td_chat_answer_room(int64_t ctx, int64_t max_tokens);

/* The prompt for the conversation, whose last turn is the new message. With shift, the fewest oldest
 * turns are dropped from conv that let prompt + room fit the context (*dropped says how many). Without
 * shift, or when the newest turn and the system prompt alone exceed the context (TD_E_ARG, nothing
 * dropped), the prompt is the whole conversation. */
td_status td_chat_fit_prompt(const td_chat_rt *rt, td_conv *conv, int64_t room, bool shift, td_tokens *prompt,
                             int *dropped);

#endif
