#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int rotq_fail(rotq_error *err, const char *fmt, ...) {
  if (!err) return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  return -1;
}

int rotq_fail_context(rotq_error *err, const char *fmt, ...) {
  if (!err) return -1;
  char prefix[512], old[sizeof err->message];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, err->message, sizeof old);
  size_t n = strlen(prefix);
  if (n > sizeof err->message - 3) n = sizeof err->message - 3;
  memcpy(err->message, prefix, n);
  memcpy(err->message + n, ": ", 2);
  size_t room = sizeof err->message - n - 3;
  size_t m = strnlen(old, room);
  memcpy(err->message + n + 2, old, m);
  err->message[n + 2 + m] = '\0';
  return -1;
}

const char *rotq_version(void) { return ROTQ_VERSION; }
