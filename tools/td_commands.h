/* The subcommands of `tandem`; each takes argv with argv[0] = its own name. */
#ifndef TD_COMMANDS_H
#define TD_COMMANDS_H

int td_cmd_eval(int argc, char **argv);
int td_cmd_inspect(int argc, char **argv);
int td_cmd_bench(int argc, char **argv);
int td_cmd_convert(int argc, char **argv);
int td_cmd_rules(int argc, char **argv);
int td_cmd_tokenize(int argc, char **argv);
int td_cmd_generate(int argc, char **argv);
int td_cmd_chat(int argc, char **argv);
int td_cmd_synth(int argc, char **argv);
int td_cmd_serve(int argc, char **argv);

#endif
