#include "cli/work_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char scratch[PATH_MAX]; /* the directory the handlers remove ("" when none) */
static char command_name[64];  /* for the handler's message */
static struct sigaction old_int, old_term;

/* Removes everything inside the directory fd (closing it), with async-signal-safe calls only:
 * getdents64, unlinkat, openat, close. depth bounds the recursion. */
static void empty_dir_at(int fd, int depth) {
  char buf[4096] __attribute__((aligned(8)));
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n <= 0) break;
    bool removed = false;
    for (long off = 0; off < n;) {
      struct {
        unsigned long long ino;
        long long off;
        unsigned short reclen;
        unsigned char type;
        char name[];
      } *e = (void *)(buf + off);
      off += e->reclen;
      if (!strcmp(e->name, ".") || !strcmp(e->name, "..")) continue;
      if (unlinkat(fd, e->name, 0) == 0) {
        removed = true;
        continue;
      }
      if (depth > 0) {
        int child = openat(fd, e->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (child >= 0) empty_dir_at(child, depth - 1);
      }
      if (unlinkat(fd, e->name, AT_REMOVEDIR) == 0) removed = true;
    }
    if (removed) lseek(fd, 0, SEEK_SET); /* entries moved: list again */
  }
  close(fd);
}

static void remove_scratch(const char *path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) empty_dir_at(fd, 8);
  rmdir(path);
}

static void write_text(const char *s) {
  ssize_t ignored = write(STDERR_FILENO, s, strlen(s));
  (void)ignored;
}

static void on_signal(int sig) {
  if (scratch[0]) remove_scratch(scratch);
  char number[16];
  int n = 0;
  for (int v = sig; n == 0 || v > 0; v /= 10) number[n++] = (char)('0' + v % 10);
  char digits[16];
  for (int i = 0; i < n; i++) digits[i] = number[n - 1 - i];
  digits[n] = '\0';
  write_text("rotq ");
  write_text(command_name);
  write_text(": interrupted by signal ");
  write_text(digits);
  write_text("; the scratch directory was removed\n");
  _exit(1);
}

/* Removes "<dir>/.rotq-<tag>-scratch-<pid>" directories whose process is gone. */
static void remove_stale(const char *dir, const char *tag) {
  DIR *d = opendir(dir);
  if (!d) return;
  char prefix[128];
  snprintf(prefix, sizeof prefix, ".rotq-%s-scratch-", tag);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
    char *end;
    long pid = strtol(e->d_name + strlen(prefix), &end, 10);
    if (pid <= 0 || *end || kill((pid_t)pid, 0) == 0 || errno == EPERM) continue;
    char stale[PATH_MAX + 256];
    snprintf(stale, sizeof stale, "%s/%s", dir, e->d_name);
    fprintf(stderr, "rotq %s: removing the scratch directory of an interrupted run: %s\n", tag, stale);
    remove_scratch(stale);
  }
  closedir(d);
}

int work_dir_create(const char *tag, const char *near, char *path, size_t size, rotq_error *err) {
  char copy[PATH_MAX];
  snprintf(copy, sizeof copy, "%s", near && *near ? near : "./x");
  const char *dir = dirname(copy);
  remove_stale(dir, tag);
  if ((size_t)snprintf(path, size, "%s/.rotq-%s-scratch-%ld", dir, tag, (long)getpid()) >= size)
    return rotq_fail(err, "%s: path too long for a scratch directory", dir);
  remove_scratch(path); /* a leftover of an earlier process with this pid */
  if (mkdir(path, 0700) != 0) return rotq_fail(err, "%s: cannot create a scratch directory: %s", path, strerror(errno));
  snprintf(command_name, sizeof command_name, "%s", tag);
  snprintf(scratch, sizeof scratch, "%s", path);
  struct sigaction sa = {.sa_handler = on_signal};
  sigfillset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  return 0;
}

void work_dir_remove(const char *path) {
  if (scratch[0] && !strcmp(path, scratch)) {
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    scratch[0] = '\0';
  }
  remove_scratch(path);
}
