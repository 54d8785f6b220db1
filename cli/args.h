/* A small long-option parser shared by the subcommands: "--name value" and "--flag". */
#ifndef ROTQ_CLI_ARGS_H
#define ROTQ_CLI_ARGS_H

#include <stdbool.h>

/* ARG_INT: a decimal integer that fits an int (stored in a long); ARG_LONG: any decimal long
 * (seeds, byte counts); ARG_U64: a non-negative decimal integer up to 2^64 - 1 (stored in a
 * uint64_t: rotate's seeds). None reads octal or hex, and a value out of range is an error, never
 * truncated. */
typedef enum arg_kind { ARG_STRING, ARG_INT, ARG_DOUBLE, ARG_FLAG, ARG_LONG, ARG_U64 } arg_kind;

typedef struct arg_spec {
  const char *name; /* without the leading "--" */
  arg_kind kind;
  void *target; /* const char**, long* (ARG_INT, ARG_LONG), uint64_t* (ARG_U64), double*, or bool* */
} arg_spec;

/* Parses argv[1..argc) against specs; on an unknown option, a missing or malformed value, prints
 * "rotq <command>: ..." to stderr and returns -1. Returns 1 if --help/-h was given, else 0. */
int args_parse(const char *command, int argc, char **argv, const arg_spec *specs, int count);

#endif
