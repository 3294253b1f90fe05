#include "td_chat_shift.h"

int64_t td_chat_answer_room(int64_t ctx, int64_t max_tokens)
{
    int64_t room = max_tokens > 0 ? max_tokens : ctx / 4;
    return room < ctx / 2 ? room : ctx / 2;
}

/* The prompt without the `drop` oldest turns. */
static td_status td_render_without(const td_chat_rt *rt, td_conv *conv, int drop, td_tokens *prompt)
{
    int n;
    const td_chat_msg *msgs = td_conv_messages_without(conv, drop, &n);
    if (!msgs) return td_fail(TD_E_NOMEM, "out of memory");
    prompt->n = 0;
    return td_chat_rt_prompt(rt, msgs, n, prompt);
}

td_status td_chat_fit_prompt(const td_chat_rt *rt, td_conv *conv, int64_t room, bool shift, td_tokens *prompt,
                             int *dropped)
{
    *dropped = 0;
    int64_t ctx = td_session_ctx(rt->session);
    TD_TRY(td_render_without(rt, conv, 0, prompt));
    if (!shift || prompt->n + room <= ctx) return TD_OK;
    /* the newest turn alone: if even that does not fit, no dropping helps */
    int last = td_conv_turns(conv) - 1;
    TD_TRY(td_render_without(rt, conv, last, prompt));
    if (prompt->n > ctx)
        return td_fail(TD_E_ARG,
                       "the message needs %lld tokens%s but the context holds %lld: shorten it or raise --ctx "
                       "(the conversation so far is kept)",
                       (long long)prompt->n, conv->system ? " with the system prompt" : "", (long long)ctx);
    /* the fewest dropped turns that leave room for the answer (the prompt shrinks as more go); when
     * none does, all of them, and the answer gets what is left */
    int drop = last;
    if (prompt->n + room <= ctx) {
        int lo = 1, hi = last;
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            TD_TRY(td_render_without(rt, conv, mid, prompt));
            if (prompt->n + room <= ctx)
                hi = mid;
            else
                lo = mid + 1;
        }
        drop = lo;
    }
    TD_TRY(td_render_without(rt, conv, drop, prompt));
    td_conv_drop_oldest(conv, drop);
    *dropped = drop;
    return TD_OK;
}
