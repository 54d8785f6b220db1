#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Stores text (length n) in err->message; a message longer than the buffer keeps its beginning
 * and its end (where the reason is) around " … ", so an over-long path never cuts off the why. */
static void store(rotq_error *err, const char *text, size_t n) {
  const size_t cap = sizeof err->message;
  if (n < cap) {
    memcpy(err->message, text, n + 1);
    return;
  }
  static const char gap[] = " … ";
  const size_t gap_len = sizeof gap - 1, room = cap - 1 - gap_len, head = room / 3, tail = room - head;
  memcpy(err->message, text, head);
  memcpy(err->message + head, gap, gap_len);
  memcpy(err->message + head + gap_len, text + n - tail, tail);
  err->message[cap - 1] = '\0';
}

/* Formats into err->message (see store); without memory, a plain truncated message. */
static void format(rotq_error *err, const char *fmt, va_list ap) {
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
  if (n >= (int)sizeof err->message) {
    char *full = malloc((size_t)n + 1);
    if (full) {
      vsnprintf(full, (size_t)n + 1, fmt, copy);
      store(err, full, (size_t)n);
      free(full);
    }
  }
  va_end(copy);
}

int rotq_fail(rotq_error *err, const char *fmt, ...) {
  if (!err) return -1;
  va_list ap;
  va_start(ap, fmt);
  format(err, fmt, ap);
  va_end(ap);
  return -1;
}

int rotq_fail_context(rotq_error *err, const char *fmt, ...) {
  if (!err) return -1;
  char old[sizeof err->message];
  memcpy(old, err->message, sizeof old);
  va_list ap;
  va_start(ap, fmt);
  format(err, fmt, ap);
  va_end(ap);
  size_t n = strlen(err->message), m = strnlen(old, sizeof old - 1);
  char *joined = malloc(n + 2 + m + 1);
  if (!joined) { /* keep the original message: it has the reason */
    memcpy(err->message, old, sizeof old);
    return -1;
  }
  memcpy(joined, err->message, n);
  memcpy(joined + n, ": ", 2);
  memcpy(joined + n + 2, old, m);
  joined[n + 2 + m] = '\0';
  store(err, joined, n + 2 + m);
  free(joined);
  return -1;
}

const char *rotq_version(void) { return ROTQ_VERSION; }
