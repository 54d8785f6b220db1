#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>

void log_message(const logger *l, rotq_log_level level, const char *fmt, ...) {
  if (!l || !l->fn) return;
  char line[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  l->fn(level, line, l->context);
}
