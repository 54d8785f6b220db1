/* Helpers shared by the tests: paths to bundled data and scratch directories. */
#ifndef ROTQ_TESTS_SUPPORT_H
#define ROTQ_TESTS_SUPPORT_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

/* $ROTQ_SOURCE_DIR/relative (the repository root; set by ctest), in a static buffer ring. */
const char *source_path(const char *relative);
/* A fresh empty scratch directory under $TMPDIR (removed by scratch_remove). Caller frees. */
char *scratch_dir(const char *tag);
/* rm -rf path. */
void scratch_remove(const char *path);
/* Runs a shell command, returns its exit status (0..255, or -1). */
int run_command(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
