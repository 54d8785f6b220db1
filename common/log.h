/* The library's only voice: messages for a caller's rotq_log_fn (include/rotq.h). Library code
 * never writes to stderr or stdout; it formats a line and hands it to the caller's callback. */
#ifndef ROTQ_COMMON_LOG_H
#define ROTQ_COMMON_LOG_H

#include "rotq.h"

/* A log callback and its context; fn NULL = messages are dropped. */
typedef struct logger {
  rotq_log_fn fn;
  void *context;
} logger;

/* Formats one line (at most 4 KiB; no trailing newline) and passes it to l->fn at level. l NULL
 * or l->fn NULL: nothing. */
void log_message(const logger *l, rotq_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
