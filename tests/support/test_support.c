#include "support/test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

const char *source_path(const char *relative) {
  static char ring[8][4096];
  static int next;
  const char *root = getenv("ROTQ_SOURCE_DIR");
  char *buf = ring[next++ % 8];
  snprintf(buf, sizeof ring[0], "%s/%s", root ? root : ".", relative);
  return buf;
}

char *scratch_dir(const char *tag) {
  const char *tmp = getenv("TMPDIR");
  char *path = malloc(4096);
  snprintf(path, 4096, "%s/rotq-test-%s-XXXXXX", tmp ? tmp : "/tmp", tag);
  if (!mkdtemp(path)) {
    perror("mkdtemp");
    abort();
  }
  return path;
}

void scratch_remove(const char *path) {
  if (path && *path) run_command("rm -rf '%s'", path);
}

int run_command(const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int status = system(cmd);
  if (status == -1 || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}
