/* td_srv_parse: the JSON bodies of generation requests, OpenAI's and Ollama's, into one request.
 *
 * Every field is checked for its type and range; a field tandem does not implement (response_format,
 * logprobs, penalties, n > 1, an Ollama option it lacks, ...) is refused with a message that names it,
 * never ignored. The message and the field's name go to the HTTP layer as a 400. */
#ifndef TD_SRV_PARSE_H
#define TD_SRV_PARSE_H

#include "td_answer.h"
#include "td_sampler.h"
#include "td_status.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum td_srv_api {
    TD_API_CHAT = 0,        /* POST /v1/chat/completions */
    TD_API_COMPLETIONS = 1, /* POST /v1/completions */
    TD_API_OLLAMA_CHAT = 2, /* POST /api/chat */
    TD_API_OLLAMA_GEN = 3,  /* POST /api/generate */
    TD_API_COUNT
} td_srv_api;

typedef enum td_srv_role {
    TD_SRV_SYSTEM = 0,
    TD_SRV_USER = 1,
    TD_SRV_ASSISTANT = 2,
    TD_SRV_TOOL = 3,
    TD_SRV_ROLE_COUNT
} td_srv_role;

typedef struct td_srv_tool_call {
    char *id;        /* may be NULL */
    char *name;
    char *arguments; /* JSON text */
} td_srv_tool_call;

typedef struct td_srv_msg {
    td_srv_role role;
    char *content; /* never NULL ("" for an assistant turn that only calls tools) */
    td_srv_tool_call *calls;
    int n_calls;
} td_srv_msg;

typedef struct td_srv_tool {
    char *name;
    char *description;   /* may be NULL */
    cJSON *parameters;   /* the JSON schema; may be NULL */
} td_srv_tool;

typedef enum td_srv_tool_choice {
    TD_TOOLS_AUTO = 0,
    TD_TOOLS_NONE = 1,     /* tools are not offered to the model */
    TD_TOOLS_REQUIRED = 2, /* tandem cannot force a call: refused */
    TD_TOOLS_CHOICE_COUNT
} td_srv_tool_choice;

typedef struct td_srv_req {
    td_srv_api api;
    char *model; /* as given; NULL when absent */
    td_srv_msg *msgs; /* chat */
    int n_msgs;
    char *prompt; /* completions / generate */
    char *system; /* Ollama generate */
    bool raw;     /* Ollama generate: the prompt as is, no chat format */
    bool stream;
    bool include_usage; /* stream_options.include_usage */
    int64_t max_tokens; /* -1: not given */
    td_sampler_params sampling;
    bool seed_set;
    char *stop[TD_GEN_MAX_STOP];
    int n_stop;
    td_srv_tool *tools;
    int n_tools;
    td_srv_tool_choice tool_choice;
    int think; /* Ollama think: -1 not given, 0 false, 1 true */
} td_srv_req;

/* What is wrong with a request: a message, and the field at fault ("" when none). */
typedef struct td_srv_err {
    char param[96];
    char message[512];
} td_srv_err;

/* Parses body (not NUL-terminated) for api. On failure the request is left empty and err says why. */
td_status td_srv_parse(td_srv_api api, const char *body, size_t len, td_srv_req *out, td_srv_err *err);
void td_srv_req_free(td_srv_req *r);

/* Ollama's {"model": "..."} of /api/show. */
td_status td_srv_parse_model_only(const char *body, size_t len, char **model, td_srv_err *err);

#endif
