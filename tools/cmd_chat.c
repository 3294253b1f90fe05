/* tandem chat: a conversation in the terminal. Streams answers (reasoning dimmed or hidden), keeps the
 * KV cache between turns, and takes /commands. Piped input is read line by line with no escape codes. */
#include "td_chat_conv.h"
#include "td_chat_input.h"
#include "td_chat_setup.h"
#include "td_chat_shift.h"
#include "td_commands.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TD_DIM   "\x1b[2m"
#define TD_RESET "\x1b[0m"

static volatile sig_atomic_t td_chat_cancel;

static void td_chat_on_sigint(int sig)
{
    (void)sig;
    td_chat_cancel = 1;
}

typedef struct td_chat {
    td_chat_opts o;
    td_chat_rt rt;
    td_conv conv;
    td_input *in;
    bool interactive; /* stdin is a terminal: line editing and history */
    bool color;       /* stdout takes escape codes */
    bool hide_think;
    bool context_shift; /* drop the oldest turns when the context is full (--no-context-shift: refuse) */
    const char *history; /* NULL: no history file */
    bool have_last;
    td_gen_stats last;
    int64_t turns, answered_tokens;
    int64_t failed_turns; /* piped chat exits 1 when one failed */
    /* one answer being streamed */
    bool in_think, think_started, dim_on, skip_newlines;
    char last_char;
} td_chat;

static void td_chat_help_cli(void)
{
    printf("usage: tandem chat [--model M] [options]\n\n"
           "A conversation in the terminal: type a message, get the answer streamed. Line editing and history\n"
           "(kept in $XDG_STATE_HOME/tandem/history or ~/.local/state/tandem/history). Ctrl-C stops an answer,\n"
           "Ctrl-D quits. Piped input is read one message per line, with plain output (no escape codes), the\n"
           "status lines and errors on stderr, and exit 1 when a turn failed. When the context is full, the\n"
           "oldest turns are dropped to make room (said on stderr). Type /help in the chat for its commands.\n\n"
           "  --system S           the system prompt\n"
           "  --hide-think         do not show R1/V3.1 reasoning (shown dimmed by default)\n"
           "  --history F          history file (--no-history: keep none)\n"
           "  --plain              no escape codes, even on a terminal\n"
           "  --no-context-shift   when the context is full, refuse the message (today's /reset advice)\n"
           "                       instead of dropping the oldest turns (the system prompt always stays)\n"
           "%s",
           td_chat_opts_help());
}

static void td_chat_help(void)
{
    printf("commands:\n"
           "  /reset                 forget the conversation (the system prompt stays)\n"
           "  /system [text]         show or set the system prompt (/system - removes it)\n"
           "  /set temp|top_p|top_k|min_p|seed|max <v>   change sampling (/set alone shows it)\n"
           "  /stats                 speed, MTP acceptance and context use of the last answer\n"
           "  /save <file>           save the conversation as JSON\n"
           "  /load <file>           load a conversation saved as JSON\n"
           "  /help                  this list\n"
           "  /quit                  leave (Ctrl-D too); Ctrl-C stops an answer\n");
}

/* ------------------------------------------------------------------ streaming an answer */

/* On a terminal, control characters from the model (an ESC could restyle or move the cursor) are shown
 * as their Unicode pictures (U+2400...); pipes get the bytes as they are. */
static void td_out(td_chat *c, const char *s, size_t n)
{
    if (n == 0) return;
    if (!c->color) {
        fwrite(s, 1, n, stdout);
    } else {
        size_t from = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned char b = (unsigned char)s[i];
            if ((b >= 0x20 && b != 0x7f) || b == '\n' || b == '\t' || b == '\r') continue;
            fwrite(s + from, 1, i - from, stdout);
            unsigned cp = b == 0x7f ? 0x2421 : 0x2400 + b;
            char pic[3] = {(char)(0xE0 | (cp >> 12)), (char)(0x80 | ((cp >> 6) & 0x3F)), (char)(0x80 | (cp & 0x3F))};
            fwrite(pic, 1, 3, stdout);
            from = i + 1;
        }
        fwrite(s + from, 1, n - from, stdout);
    }
    c->last_char = s[n - 1];
}

static void td_out_str(td_chat *c, const char *s)
{
    td_out(c, s, strlen(s));
}

static void td_dim(td_chat *c, bool on)
{
    if (!c->color || c->dim_on == on) return;
    fputs(on ? TD_DIM : TD_RESET, stdout);
    c->dim_on = on;
}

static void td_chat_piece(void *user, td_gen_piece kind, const char *s, size_t n)
{
    td_chat *c = user;
    switch (kind) {
    case TD_PIECE_THINK_OPEN: break; /* shown when its first reasoning text arrives */
    case TD_PIECE_THINK:
        if (!c->think_started) {
            c->think_started = true;
            if (c->hide_think) {
                if (c->color) fputs(TD_DIM "(thinking...)" TD_RESET, stdout);
            } else if (c->color) {
                td_dim(c, true);
            } else {
                td_out_str(c, "<think>");
            }
        }
        c->in_think = true;
        if (!c->hide_think) td_out(c, s, n);
        break;
    case TD_PIECE_THINK_CLOSE:
        c->in_think = false;
        if (c->hide_think) {
            if (c->color && c->think_started) fputs("\r\x1b[K", stdout);
            c->skip_newlines = true;
        } else if (c->color) {
            td_dim(c, false);
        } else {
            td_out_str(c, "</think>");
        }
        break;
    case TD_PIECE_TEXT:
    default:
        td_dim(c, false);
        while (c->skip_newlines && n > 0 && (*s == '\n' || *s == '\r')) s++, n--;
        if (n) c->skip_newlines = false;
        td_out(c, s, n);
        break;
    }
    fflush(stdout);
}

static void td_status_line(td_chat *c, const td_gen_stats *st)
{
    const char *full = c->context_shift ? " · context full (the next message drops the oldest turns)"
                                        : " · context full (/reset)";
    const char *why = st->stop == TD_GEN_STOP_CANCELLED    ? " · stopped"
                      : st->stop == TD_GEN_STOP_MAX_TOKENS ? " · max tokens"
                      : st->stop == TD_GEN_STOP_CONTEXT    ? full
                                                           : "";
    char line[320], cached[48] = "";
    if (st->reused_tokens) snprintf(cached, sizeof cached, " (+%lld cached)", (long long)st->reused_tokens);
    snprintf(line, sizeof line,
             "[prompt %lld tok%s, %.1f tok/s · answer %lld tok, %.1f tok/s · %lld/%lld tokens of context%s]",
             (long long)st->prompt_tokens, cached, st->prompt_tok_s, (long long)st->gen_tokens, st->decode_tok_s,
             (long long)td_chat_ctx_shown(st->ctx_used, st->ctx_size), (long long)st->ctx_size, why);
    fflush(stdout); /* the answer before its status line, also when stderr is the same file */
    if (c->color)
        printf(TD_DIM "%s" TD_RESET "\n", line);
    else if (c->interactive)
        printf("%s\n", line);
    else
        fprintf(stderr, "%s\n", line);
    fflush(stdout);
}

/* Errors go to stderr, never between the answers on stdout. */
static void td_chat_error(void)
{
    fflush(stdout);
    fprintf(stderr, "error: %s\n", td_errmsg());
}

static void td_chat_failed(td_chat *c, td_status st)
{
    td_chat_error();
    if (st == TD_E_ARG && !c->context_shift && strstr(td_errmsg(), "context"))
        fprintf(stderr, "(type /reset to start over)\n");
    c->failed_turns++;
}

/* The conversation, ending with the new message, as a prompt that fits the context (dropping the oldest
 * turns when context shift is on, and saying so). */
static td_status td_chat_prompt(td_chat *c, td_tokens *prompt)
{
    int64_t room = td_chat_answer_room(td_session_ctx(c->rt.session), c->o.max_tokens);
    int dropped;
    TD_TRY(td_chat_fit_prompt(&c->rt, &c->conv, room, c->context_shift, prompt, &dropped));
    if (dropped) {
        fflush(stdout);
        fprintf(stderr,
                "(context full: dropped the %d oldest turn%s to make room%s; --no-context-shift turns this off)\n",
                dropped, dropped == 1 ? "" : "s", c->conv.system ? ", the system prompt stays" : "");
    }
    return TD_OK;
}

static td_status td_chat_answer(td_chat *c, const td_tokens *prompt, td_gen_stats *gs)
{
    td_gen_params p = {.max_tokens = c->o.max_tokens,
                       .starts_thinking = td_template_starts_thinking(c->rt.tmpl),
                       .on_text = td_chat_piece,
                       .user = c,
                       .cancel = &td_chat_cancel};
    struct sigaction sa = {0}, old;
    sa.sa_handler = td_chat_on_sigint;
    sigemptyset(&sa.sa_mask);
    td_chat_cancel = 0;
    sigaction(SIGINT, &sa, &old);
    td_status st = td_generate(c->rt.gen, prompt->ids, prompt->n, &p, NULL, gs);
    sigaction(SIGINT, &old, NULL);
    return st;
}

/* One turn: the user's line in, the answer streamed out, both kept in the conversation. */
static void td_chat_turn(td_chat *c, const char *line, size_t len)
{
    td_status st = td_chat_check_utf8("your message", line, len);
    if (st == TD_OK) st = td_conv_add(&c->conv, TD_ROLE_USER, line, len);
    if (st != TD_OK) {
        td_chat_failed(c, st);
        return;
    }
    td_tokens prompt = {0};
    td_gen_stats gs;
    c->in_think = c->think_started = c->dim_on = c->skip_newlines = false;
    c->last_char = '\n';
    st = td_chat_prompt(c, &prompt);
    if (st == TD_OK) st = td_chat_answer(c, &prompt, &gs);
    td_tokens_free(&prompt);
    td_dim(c, false);
    if (c->last_char != '\n') td_out_str(c, "\n");
    if (st != TD_OK) {
        td_conv_pop(&c->conv);
        td_chat_failed(c, st);
        return;
    }
    size_t tlen;
    const char *text = td_generator_text(c->rt.gen, &tlen);
    if (tlen == 0 && gs.stop == TD_GEN_STOP_CANCELLED)
        td_conv_pop(&c->conv); /* nothing to keep */
    else if (td_conv_add(&c->conv, TD_ROLE_ASSISTANT, text, tlen) != TD_OK)
        td_chat_error();
    c->last = gs;
    c->have_last = true;
    c->turns++;
    c->answered_tokens += gs.gen_tokens;
    td_status_line(c, &gs);
}

/* ------------------------------------------------------------------ commands */

static void td_chat_show_settings(const td_chat *c)
{
    const td_sampler_params *p = td_sampler_params_of(c->rt.sampler);
    printf("temp %g · top_p %g · top_k %d · min_p %g · seed %llu · max %lld tokens\n", p->temperature, p->top_p,
           p->top_k, p->min_p, (unsigned long long)p->seed, (long long)c->o.max_tokens);
}

/* Complaints about a command go to stderr, like errors, so that stdout holds only answers and output. */
static void td_chat_complain(const char *fmt, ...) TD_PRINTF(1, 2);
static void td_chat_complain(const char *fmt, ...)
{
    fflush(stdout);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* /set: the sampling values through the same check as the command-line flags, and max. */
static void td_chat_set(td_chat *c, const char *arg)
{
    char key[32], val[64], extra;
    if (!arg || !*arg) {
        td_chat_show_settings(c);
        return;
    }
    if (sscanf(arg, "%31s %63s %c", key, val, &extra) != 2) {
        td_chat_complain("usage: /set temp|top_p|top_k|min_p|seed|max <value>");
        return;
    }
    if (strcmp(key, "max") == 0) {
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end || v < 0 || v > (1 << 24)) {
            td_chat_complain("/set max: '%s' is not a whole number in 0..%d (0: until EOS or a full context)", val,
                             1 << 24);
            return;
        }
        c->o.max_tokens = v;
    } else {
        td_sampler_params p = *td_sampler_params_of(c->rt.sampler);
        td_status st = td_sampler_params_set(&p, key, val);
        if (st == TD_OK) st = td_sampler_set_params(c->rt.sampler, &p);
        if (st == TD_E_NOT_FOUND) {
            td_chat_complain("/set: unknown setting '%s' (%s, max)", key, td_sampler_param_names());
            return;
        }
        if (st != TD_OK) {
            td_chat_complain("/set %s: %s", key, td_errmsg());
            return;
        }
    }
    td_chat_show_settings(c);
}

/* MTP since the chat started: mode, acceptance, and what auto measured */
static void td_chat_mtp_stats(const td_chat *c)
{
    if (!c->rt.mtp) {
        printf("mtp        off%s\n", td_session_has_mtp(c->rt.session) ? "" : " (the model has no MTP block)");
        return;
    }
    td_mtp_stats ms;
    td_mtp_spec_stats(c->rt.mtp, &ms);
    printf("mtp        %s, %d draft%s per step: %lld of %lld drafts accepted (%.1f%%) in %lld speculative steps\n",
           td_mtp_mode_name(ms.mode), ms.k, ms.k == 1 ? "" : "s", (long long)ms.accepted, (long long)ms.drafted,
           ms.drafted ? 100.0 * (double)ms.accepted / (double)ms.drafted : 0.0, (long long)ms.spec_steps);
    if (ms.mode != TD_MTP_AUTO) return;
    if (ms.decided)
        printf("           auto kept %s: MTP %.1f tok/s vs plain %.1f tok/s = %.2fx\n",
               ms.drafting ? "MTP" : "plain decoding", ms.mtp_tok_s, ms.plain_tok_s, ms.speedup);
    else
        printf("           auto is still measuring (MTP %.1f tok/s, plain %.1f tok/s so far)\n", ms.mtp_tok_s,
               ms.plain_tok_s);
}

static void td_chat_stats(const td_chat *c)
{
    printf("model      %s (%s), template %s (%s)\n", c->rt.model->path, c->rt.model->format,
           td_template_name(c->rt.tmpl), c->rt.tmpl_why);
    printf("turns      %lld answered, %lld tokens generated in all\n", (long long)c->turns,
           (long long)c->answered_tokens);
    if (c->have_last) {
        const td_gen_stats *s = &c->last;
        printf("last       prompt %lld tokens (%lld reused from the cache) in %.3f s = %.1f tok/s\n",
               (long long)(s->prompt_tokens + s->reused_tokens), (long long)s->reused_tokens, s->prompt_s,
               s->prompt_tok_s);
        char acc[32] = "n/a (MTP off)";
        if (!isnan(s->mtp_acceptance)) snprintf(acc, sizeof acc, "%.3f", s->mtp_acceptance);
        printf("           answer %lld tokens in %.3f s = %.1f tok/s, %.2f tokens/step, MTP acceptance %s, stop: %s\n",
               (long long)s->gen_tokens, s->decode_s, s->decode_tok_s, s->tokens_per_step, acc,
               td_gen_stop_name(s->stop));
    }
    td_chat_mtp_stats(c);
    printf("context    %lld/%lld tokens, KV cache %s: %lld B/token\n", (long long)td_generator_ctx_used(c->rt.gen),
           (long long)td_session_ctx(c->rt.session), td_kv_type_name(td_session_kv_type(c->rt.session)),
           (long long)td_session_kv_bytes_per_token(c->rt.session));
    td_chat_show_settings(c);
}

/* false: leave the chat */
static bool td_chat_command(td_chat *c, const char *line)
{
    char cmd[32] = {0};
    size_t k = 0;
    while (line[k] && line[k] != ' ' && k < sizeof cmd - 1) cmd[k] = line[k], k++;
    const char *arg = line + k;
    while (*arg == ' ') arg++;
    if (strcmp(cmd, "/quit") == 0 || strcmp(cmd, "/exit") == 0) return false;
    if (strcmp(cmd, "/help") == 0)
        td_chat_help();
    else if (strcmp(cmd, "/reset") == 0) {
        td_conv_clear(&c->conv);
        td_generator_reset(c->rt.gen);
        printf("(conversation cleared)\n");
    } else if (strcmp(cmd, "/system") == 0) {
        if (*arg && (td_chat_check_utf8("the system prompt", arg, strlen(arg)) != TD_OK ||
                     td_conv_set_system(&c->conv, strcmp(arg, "-") == 0 ? NULL : arg) != TD_OK))
            td_chat_error();
        printf("system prompt: %s\n", c->conv.system ? c->conv.system : "(none)");
    } else if (strcmp(cmd, "/set") == 0) {
        td_chat_set(c, arg);
    } else if (strcmp(cmd, "/stats") == 0) {
        td_chat_stats(c);
    } else if (strcmp(cmd, "/save") == 0 || strcmp(cmd, "/load") == 0) {
        bool save = cmd[1] == 's';
        if (!*arg)
            td_chat_complain("usage: %s <file>", cmd);
        else if ((save ? td_conv_save(&c->conv, arg, td_template_name(c->rt.tmpl)) : td_conv_load(&c->conv, arg)) !=
                 TD_OK)
            td_chat_error();
        else
            printf(save ? "(saved %d turns to %s)\n" : "(loaded %d turns from %s)\n", c->conv.n, arg);
    } else {
        td_chat_complain("unknown command %s (type /help)", cmd);
    }
    fflush(stdout);
    return true;
}

/* ------------------------------------------------------------------ the loop */

static int td_chat_parse(int argc, char **argv, td_chat *c, const char **system)
{
    c->o.sampling = (td_sampler_params){.temperature = 0.6, .top_p = 0.95};
    c->o.max_tokens = -1;
    c->context_shift = true;
    bool no_history = false, plain = false;
    td_args a;
    td_args_init(&a, "chat", argc, argv);
    while (td_args_next(&a)) {
        int r = td_chat_opts_parse(&a, &c->o);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (td_args_is(&a, "--help") || td_args_is(&a, "-h")) {
            td_chat_help_cli();
            return 0;
        } else if (td_args_is(&a, "--system")) {
            if (!(*system = td_args_value(&a))) return 2;
            if (td_chat_check_utf8("--system", *system, strlen(*system)) != TD_OK)
                return td_cli_usage_error("chat", "%s", td_errmsg());
        } else if (td_args_is(&a, "--hide-think")) {
            c->hide_think = true;
        } else if (td_args_is(&a, "--history")) {
            if (!(c->history = td_args_value(&a))) return 2;
        } else if (td_args_is(&a, "--no-history")) {
            no_history = true;
        } else if (td_args_is(&a, "--plain")) {
            plain = true;
        } else if (td_args_is(&a, "--no-context-shift")) {
            c->context_shift = false;
        } else {
            return td_args_unknown(&a);
        }
    }
    c->interactive = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    c->color = c->interactive && !plain && getenv("NO_COLOR") == NULL;
    if (no_history)
        c->history = NULL;
    else if (!c->history && c->interactive) {
        const char *why;
        c->history = td_input_history_path(&why);
        if (!c->history) fprintf(stderr, "note: no history file (%s)\n", why);
    }
    /* the tiny default model gives short answers; the context is the model's (capped at 4096), as in
     * generate */
    if (c->o.max_tokens < 0) c->o.max_tokens = c->o.model ? 1024 : 200;
    td_chat_opts_pick_seed(&c->o, true); /* /set temp can turn sampling on later */
    return -1;
}

static void td_chat_banner(const td_chat *c)
{
    FILE *f = c->interactive ? stdout : stderr;
    fprintf(f, "%standem chat · %s (%s) · template %s (%s) · context %lld tokens%s\n", c->color ? TD_DIM : "",
            c->rt.model_name, c->rt.model->format, td_template_name(c->rt.tmpl), c->rt.tmpl_why,
            (long long)td_session_ctx(c->rt.session), c->color ? TD_RESET : "");
    if (!c->o.model)
        fprintf(f, "%s(the bundled 10 M-parameter model: it answers dictionary questions in the right form, often "
                   "wrongly; --model picks a real one)%s\n",
                c->color ? TD_DIM : "", c->color ? TD_RESET : "");
    if (c->interactive)
        fprintf(f, "%sType a message; /help for commands, Ctrl-C stops an answer, Ctrl-D quits.%s\n",
                c->color ? TD_DIM : "", c->color ? TD_RESET : "");
    fflush(f);
}

int td_cmd_chat(int argc, char **argv)
{
    td_chat c = {0};
    const char *system = NULL;
    int rc = td_chat_parse(argc, argv, &c, &system);
    if (rc >= 0) return rc;
    td_status st = td_chat_rt_open(&c.o, &c.rt);
    if (st == TD_OK && system) st = td_conv_set_system(&c.conv, system);
    if (st != TD_OK) {
        rc = td_cli_fail("chat", st);
        td_chat_rt_close(&c.rt);
        td_conv_free(&c.conv);
        return rc;
    }
    c.in = td_input_open(c.interactive, c.history, c.color ? "\1\x1b[1m\1>\1\x1b[0m\1 " : "> ");
    if (!c.in) {
        fprintf(stderr, "tandem chat: cannot start line editing\n");
        td_chat_rt_close(&c.rt);
        td_conv_free(&c.conv);
        return 1;
    }
    td_chat_banner(&c);
    for (;;) {
        const char *line;
        size_t len;
        td_input_result r = td_input_read(c.in, &line, &len);
        if (r == TD_INPUT_EOF) {
            if (c.interactive) printf("\n");
            break;
        }
        if (r == TD_INPUT_INTERRUPT) {
            printf("\n(Ctrl-C stops an answer; Ctrl-D or /quit leaves)\n");
            continue;
        }
        if (len == 0) continue;
        td_input_remember(c.in, line);
        if (line[0] == '/') {
            if (!td_chat_command(&c, line)) break;
            continue;
        }
        td_chat_turn(&c, line, len);
    }
    td_input_close(c.in);
    td_chat_rt_close(&c.rt);
    td_conv_free(&c.conv);
    /* a script learns that a turn failed; at the terminal, the user saw it and leaving is a normal end */
    if (c.failed_turns && !c.interactive) {
        fprintf(stderr, "tandem chat: %lld turn%s failed\n", (long long)c.failed_turns, c.failed_turns == 1 ? "" : "s");
        return 1;
    }
    return 0;
}
