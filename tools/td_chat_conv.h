/* A chat conversation: the system prompt and the turns, saved and loaded as JSON:
 *   {"template": "deepseek-r1", "messages": [{"role": "system", "content": "..."},
 *                                            {"role": "user", "content": "..."}, ...]}
 * (the messages array is the OpenAI chat format, so files from other tools load too). */
#ifndef TD_CHAT_CONV_H
#define TD_CHAT_CONV_H

#include "td_chat_template.h"
#include "td_status.h"

#include <stddef.h>

typedef struct td_conv {
    char *system;      /* NULL: none */
    td_chat_msg *msgs; /* user and assistant turns; contents owned */
    int n, cap;
    td_chat_msg *view; /* system + turns, for rendering */
} td_conv;

void td_conv_free(td_conv *c);
/* Drops the turns; keeps the system prompt. */
void td_conv_clear(td_conv *c);
td_status td_conv_set_system(td_conv *c, const char *text); /* NULL or "" removes it */
td_status td_conv_add(td_conv *c, td_chat_role role, const char *content, size_t len);
/* Removes the last turn (a user turn whose answer failed). */
void td_conv_pop(td_conv *c);
/* The messages to render: the system prompt (if any) first. Valid until the next change. */
const td_chat_msg *td_conv_messages(td_conv *c, int *n);

/* Turns: a user message and the messages after it up to the next user message (messages before the first
 * user message, as a loaded file may have, belong to the first turn). */
int td_conv_turns(const td_conv *c);
/* td_conv_messages without the `drop` oldest turns (the system prompt stays). */
const td_chat_msg *td_conv_messages_without(td_conv *c, int drop, int *n);
/* Forgets the `drop` oldest turns; the system prompt stays. */
void td_conv_drop_oldest(td_conv *c, int drop);

td_status td_conv_save(const td_conv *c, const char *path, const char *template_name);
/* Replaces c with the file's conversation; c is unchanged on failure. */
td_status td_conv_load(td_conv *c, const char *path);

#endif
