/* The CLI's side of rotq_rotate: the process-wide things the library does not do. It catches
 * SIGINT/SIGTERM (a flag its cancel callback returns) and ignores SIGXFSZ (a write past a file
 * size limit then fails with EFBIG and is cleaned up), runs OpenBLAS on one thread (the output
 * must not depend on its thread count), and prints what the library logs. */
#ifndef ROTQ_CLI_ROTATE_RUN_H
#define ROTQ_CLI_ROTATE_RUN_H

#include <stdbool.h>

#include "rotq.h"

/* How the CLI prints the library's log lines (a rotq_log_fn's context). */
typedef struct cli_log {
  const char *command; /* "rotate", "report", ...: the "rotq <command>: " prefix */
  bool quiet;          /* INFO and WARNING not shown */
} cli_log;

/* A rotq_log_fn printing to stderr, context a cli_log: DEBUG as "rotq <message>" when ROTQ_TIMING
 * is set (not "0"), INFO as "rotq <command>: <message>", WARNING as "rotq <command>: warning:
 * <message>" (neither under quiet), NOTICE as "rotq: <message>" (always). */
void cli_print_log(rotq_log_level level, const char *message, void *context);

/* Catching SIGINT/SIGTERM into a flag and ignoring SIGXFSZ, from begin to end (the previous
 * handlers restored by end). */
void cli_interrupt_begin(void);
void cli_interrupt_end(void);
/* The signal caught since cli_interrupt_begin, 0 if none; a cancel callback (context unused). */
int cli_interrupted(void *context);

/* The process set up for rotation, and put back: interrupts caught (cli_interrupt_begin),
 * OpenBLAS on one thread (the caller's count restored by end). */
void cli_rotation_begin(void);
void cli_rotation_end(void);

/* rotq_rotate(o) with the process set up around it: interrupts caught (o->cancel set to
 * cli_interrupted unless set), OpenBLAS on one thread (restored afterwards). An interrupted run
 * fails with "interrupted by signal N; the partial output was removed". */
int cli_rotate(rotq_rotate_options *o, rotq_error *err);

#endif
