/* Chat templates: rendered prompts against strings written by hand.
 *
 * How the expected strings were checked: each was written out by reading the Jinja template the model
 * ships (tokenizer_config.json "chat_template" of deepseek-ai/DeepSeek-V3, DeepSeek-R1 and
 * DeepSeek-V3.1) and following it by hand for this conversation:
 *  - all templates first gather every system message, joined by "\n\n", and print bos_token + them;
 *  - V3: a user turn prints '<｜User｜>' + content; an assistant turn '<｜Assistant｜>' + content +
 *    '<｜end▁of▁sentence｜>'; the generation prompt is '<｜Assistant｜>';
 *  - R1: as V3, but an assistant content containing '</think>' is replaced by
 *    content.split('</think>')[-1] (what follows the LAST tag, leading "\n\n" kept), and the
 *    generation prompt is '<｜Assistant｜><think>\n';
 *  - V3.1: an assistant turn that follows a user turn prints '<｜Assistant｜></think>' first, then
 *    content.split('</think>', 1)[1] when the tag is present (what follows the FIRST tag), then
 *    '<｜end▁of▁sentence｜>'; the generation prompt is '<｜Assistant｜></think>' (thinking = false) or
 *    '<｜Assistant｜><think>' (thinking = true). The V3.1 model card shows the same multi-turn layout.
 * The strings below use the readable characters (｜ is U+FF5C, ▁ is U+2581) so they can be compared
 * with the templates by eye. */
#include "td_alloc.h"
#include "td_chat_template.h"
#include "td_test.h"
#include "td_tokenizer.h"

#include <string.h>

static const char *BOS = "<｜begin▁of▁sentence｜>";

static void td_expect(td_template t, const td_chat_msg *m, int n, bool gen, const char *want)
{
    char *got = NULL;
    TD_CHECK(td_template_render(t, m, n, BOS, gen, &got) == TD_OK);
    TD_CHECKF(got && strcmp(got, want) == 0, "%s:\n got  %s\n want %s", td_template_name(t), got ? got : "(null)",
              want);
    td_free(got);
}

static void td_test_render(void)
{
    const char *answer_with_reasoning = "<think>\nThe user greets me.\n</think>\n\nHello! How can I help?";
    td_chat_msg conv[] = {
        {TD_ROLE_SYSTEM, "You are a helpful assistant."},
        {TD_ROLE_USER, "Hi!"},
        {TD_ROLE_ASSISTANT, "Hello! How can I help?"},
        {TD_ROLE_SYSTEM, "Answer briefly."},
        {TD_ROLE_USER, "What is 2+2?"},
    };
    td_expect(TD_TEMPLATE_DEEPSEEK_V3, conv, 5, true,
              "<｜begin▁of▁sentence｜>You are a helpful assistant.\n\nAnswer briefly."
              "<｜User｜>Hi!<｜Assistant｜>Hello! How can I help?<｜end▁of▁sentence｜>"
              "<｜User｜>What is 2+2?<｜Assistant｜>");
    /* without the generation prompt the conversation just ends after the last user turn */
    td_expect(TD_TEMPLATE_DEEPSEEK_V3, conv, 5, false,
              "<｜begin▁of▁sentence｜>You are a helpful assistant.\n\nAnswer briefly."
              "<｜User｜>Hi!<｜Assistant｜>Hello! How can I help?<｜end▁of▁sentence｜>"
              "<｜User｜>What is 2+2?");

    td_chat_msg r1[5];
    memcpy(r1, conv, sizeof r1);
    r1[2].content = answer_with_reasoning;
    td_expect(TD_TEMPLATE_DEEPSEEK_R1, r1, 5, true,
              "<｜begin▁of▁sentence｜>You are a helpful assistant.\n\nAnswer briefly."
              "<｜User｜>Hi!<｜Assistant｜>\n\nHello! How can I help?<｜end▁of▁sentence｜>"
              "<｜User｜>What is 2+2?<｜Assistant｜><think>\n");
    /* R1 keeps what follows the last tag */
    r1[2].content = "a</think>b</think>c";
    td_expect(TD_TEMPLATE_DEEPSEEK_R1, r1 + 1, 2, false,
              "<｜begin▁of▁sentence｜><｜User｜>Hi!<｜Assistant｜>c<｜end▁of▁sentence｜>");

    td_expect(TD_TEMPLATE_DEEPSEEK_V31, conv, 5, true,
              "<｜begin▁of▁sentence｜>You are a helpful assistant.\n\nAnswer briefly."
              "<｜User｜>Hi!<｜Assistant｜></think>Hello! How can I help?<｜end▁of▁sentence｜>"
              "<｜User｜>What is 2+2?<｜Assistant｜></think>");
    td_chat_msg v31[5];
    memcpy(v31, conv, sizeof v31);
    v31[2].content = "The user greets me.</think>Hello!";
    td_expect(TD_TEMPLATE_DEEPSEEK_V31_THINK, v31, 5, true,
              "<｜begin▁of▁sentence｜>You are a helpful assistant.\n\nAnswer briefly."
              "<｜User｜>Hi!<｜Assistant｜></think>Hello!<｜end▁of▁sentence｜>"
              "<｜User｜>What is 2+2?<｜Assistant｜><think>");
    /* V3.1 keeps what follows the first tag */
    v31[2].content = "a</think>b</think>c";
    td_expect(TD_TEMPLATE_DEEPSEEK_V31, v31 + 1, 2, false,
              "<｜begin▁of▁sentence｜><｜User｜>Hi!<｜Assistant｜></think>b</think>c<｜end▁of▁sentence｜>");
    /* no system prompt, one turn */
    td_expect(TD_TEMPLATE_DEEPSEEK_V3, conv + 4, 1, true,
              "<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜>");
    td_expect(TD_TEMPLATE_RAW, conv + 4, 1, true, "<｜begin▁of▁sentence｜>What is 2+2?");

    char *out = (char *)1;
    td_chat_msg bad = {TD_ROLE_USER, NULL};
    TD_CHECK(td_template_render(TD_TEMPLATE_DEEPSEEK_V3, &bad, 1, BOS, true, &out) == TD_E_ARG && out == NULL);
    TD_CHECK(td_template_render(TD_TEMPLATE_COUNT, conv, 1, BOS, true, &out) == TD_E_ARG);
}

static void td_test_detect(void)
{
    /* the parts of each published template that tell them apart */
    const char *v3 = "{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}{%- if message['role'] == "
                     "'user' %}{{'<｜User｜>' + message['content']}}{%- endif %}{% if add_generation_prompt and not "
                     "ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}";
    const char *r1 = "{% set content = message['content'] %}{% if '</think>' in content %}{% set content = "
                     "content.split('</think>')[-1] %}{% endif %}{% if add_generation_prompt and not ns.is_tool "
                     "%}{{'<｜Assistant｜><think>\\n'}}{% endif %}";
    const char *v31 = "{% if not thinking is defined %}{% set thinking = false %}{% endif %}{%- if not thinking "
                      "%}{{'</think>'}}{%- else %}{{'<think>'}}{%- endif %}";
    const char *why;
    TD_CHECK(td_template_detect(v3, NULL, &why) == TD_TEMPLATE_DEEPSEEK_V3);
    TD_CHECK(td_template_detect(r1, "DeepSeek-V3", &why) == TD_TEMPLATE_DEEPSEEK_R1);
    TD_CHECK(td_template_detect(v31, NULL, &why) == TD_TEMPLATE_DEEPSEEK_V31);
    TD_CHECK(td_template_detect(NULL, "DeepSeek-R1-0528-Q4_K_M", &why) == TD_TEMPLATE_DEEPSEEK_R1);
    TD_CHECK(td_template_detect(NULL, "/models/DeepSeek-V3.1-Terminus", &why) == TD_TEMPLATE_DEEPSEEK_V31);
    TD_CHECK(td_template_detect(NULL, "tiny-dsv3-q4_k_m-mla-mtp", &why) == TD_TEMPLATE_DEEPSEEK_V3);
    TD_CHECK(td_template_detect("{{ messages }}", NULL, &why) == TD_TEMPLATE_DEEPSEEK_V3 && strstr(why, "not one"));
    td_template t;
    TD_CHECK(td_template_from_name("r1", &t) && t == TD_TEMPLATE_DEEPSEEK_R1);
    TD_CHECK(td_template_from_name("deepseek-v3.1-think", &t) && t == TD_TEMPLATE_DEEPSEEK_V31_THINK);
    TD_CHECK(!td_template_from_name("chatml", &t));
    TD_CHECK(td_template_starts_thinking(TD_TEMPLATE_DEEPSEEK_R1) &&
             !td_template_starts_thinking(TD_TEMPLATE_DEEPSEEK_V3));
}

/* A rendered prompt tokenizes with DeepSeek's markers as single tokens (the fixture vocabulary). */
static void td_test_tokenized(void)
{
    td_tokenizer *tok;
    if (td_tokenizer_load(td_test_fixture("tokenizer/tokenizer.json"), &tok) != TD_OK) {
        fprintf(stderr, "fixture tokenizer not found: skipping the tokenized check\n");
        return;
    }
    td_chat_msg m[] = {{TD_ROLE_SYSTEM, "Be kind."}, {TD_ROLE_USER, "Hi"}};
    char *p;
    TD_CHECK(td_template_render(TD_TEMPLATE_DEEPSEEK_R1, m, 2, BOS, true, &p) == TD_OK);
    td_tokens ids = {0};
    TD_CHECK(td_tokenizer_encode(tok, p, strlen(p), false, &ids) == TD_OK);
    int32_t user = td_tokenizer_find(tok, "<｜User｜>"), assistant = td_tokenizer_find(tok, "<｜Assistant｜>");
    int32_t think = td_tokenizer_find(tok, "<think>");
    TD_CHECK(ids.n > 5 && ids.ids[0] == td_tokenizer_bos(tok));
    TD_CHECK(ids.ids[ids.n - 3] == assistant && ids.ids[ids.n - 2] == think);
    int users = 0;
    for (int64_t i = 0; i < ids.n; i++) users += ids.ids[i] == user;
    TD_CHECK(users == 1);
    td_tokens_free(&ids);
    td_free(p);
    td_tokenizer_free(tok);
}

int main(void)
{
    td_test_render();
    td_test_detect();
    td_test_tokenized();
    return td_test_finish();
}
