/* The rotq subcommands. Each takes the arguments after its name and returns the exit code:
 * 0 success, 1 bad input or failed check, 2 usage error. */
#ifndef ROTQ_CLI_COMMANDS_H
#define ROTQ_CLI_COMMANDS_H

typedef struct command {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv);
} command;

int cmd_info(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_rotate(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_convert(int argc, char **argv);

#endif
