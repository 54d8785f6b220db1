#include "cli/work_dir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int work_dir_create(const char *tag, char *path, size_t size, rotq_error *err) {
  const char *tmp = getenv("TMPDIR");
  snprintf(path, size, "%s/rotq-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
  if (!mkdtemp(path)) return rotq_fail(err, "%s: cannot create a scratch directory: %s", path, strerror(errno));
  return 0;
}

void work_dir_remove(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      char child[4200];
      snprintf(child, sizeof child, "%s/%s", path, e->d_name);
      struct stat st;
      if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode))
        work_dir_remove(child);
      else
        unlink(child);
    }
    closedir(d);
  }
  rmdir(path);
}
