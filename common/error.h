/* Error reporting: every fallible function fills a rotq_error and returns -1. */
#ifndef ROTQ_COMMON_ERROR_H
#define ROTQ_COMMON_ERROR_H

#include "rotq.h"

/* Formats the message into err (if err is not NULL) and returns -1, so callers can write
 * `return rotq_fail(err, "%s: tensor %s: ...", path, name);`. */
int rotq_fail(rotq_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to an existing message (adds context while unwinding); returns -1. */
int rotq_fail_context(rotq_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
