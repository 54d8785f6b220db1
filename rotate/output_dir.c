#include "rotate/output_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

int remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
  return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int fsync_path(const char *path, int flags) {
  int fd = open(path, flags | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

/* path's parent and base name (path need not exist). */
static void split_path(const char *path, char *parent, char *base, size_t cap) {
  char a[4096], b[4096];
  snprintf(a, sizeof a, "%s", path);
  snprintf(b, sizeof b, "%s", path);
  size_t n = strlen(a); /* drop trailing slashes */
  while (n > 1 && a[n - 1] == '/') a[--n] = '\0', b[n] = '\0';
  snprintf(parent, cap, "%s", dirname(a));
  snprintf(base, cap, "%s", basename(b));
}

/* Is `inner` equal to or below `outer` (both canonical)? */
static bool path_within(const char *inner, const char *outer) {
  size_t n = strlen(outer);
  return strncmp(inner, outer, n) == 0 && (inner[n] == '\0' || inner[n] == '/' || strcmp(outer, "/") == 0);
}

/* Removes "<parent>/.<base>.rotq-partial-<pid>" directories whose process is gone. */
static void remove_stale_partials(const char *parent, const char *base) {
  DIR *d = opendir(parent);
  if (!d) return;
  char prefix[4200], old_prefix[4200];
  snprintf(prefix, sizeof prefix, ".%s.rotq-partial-", base);
  snprintf(old_prefix, sizeof old_prefix, "%s.rotq-old-", base);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, old_prefix, strlen(old_prefix)) == 0) {
      /* a replaced output whose replacement was interrupted: put it back if nothing took its place */
      char old[8400], final[8400];
      snprintf(old, sizeof old, "%s/%s", parent, e->d_name);
      snprintf(final, sizeof final, "%s/%s", parent, base);
      struct stat st;
      long pid = strtol(e->d_name + strlen(old_prefix), NULL, 10);
      if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) continue;
      if (lstat(final, &st) != 0 && rename(old, final) == 0)
        fprintf(stderr, "rotq: restored the previous output of an interrupted run: %s\n", final);
      else
        remove_tree(old);
      continue;
    }
    if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
    long pid = strtol(e->d_name + strlen(prefix), NULL, 10);
    if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) continue; /* still running */
    char stale[8400];
    snprintf(stale, sizeof stale, "%s/%s", parent, e->d_name);
    fprintf(stderr, "rotq: removing the partial output of an interrupted run: %s\n", stale);
    remove_tree(stale);
  }
  closedir(d);
}

/* mkdir -p path (like HF's save_pretrained, the output's parents are created). */
static int make_parents(const char *path) {
  char p[4096];
  snprintf(p, sizeof p, "%s", path);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
    *s = '/';
  }
  return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

int output_dir_begin(const char *input_dir, const char *output, bool force, output_dir *o, rotq_error *err) {
  memset(o, 0, sizeof *o);
  char parent[4096], base[4096], in_real[PATH_MAX], parent_real[PATH_MAX];
  split_path(output, parent, base, sizeof parent);
  if (make_parents(parent) != 0)
    return rotq_fail(err, "output '%s': cannot create parent directory '%s': %s", output, parent, strerror(errno));
  if (!strcmp(base, ".") || !strcmp(base, "..") || !strcmp(base, "/"))
    return rotq_fail(err, "output '%s': name a new directory", output);
  if (!realpath(input_dir, in_real)) return rotq_fail(err, "%s: %s", input_dir, strerror(errno));
  if (!realpath(parent, parent_real))
    return rotq_fail(err, "output '%s': parent directory '%s': %s", output, parent, strerror(errno));
  snprintf(o->final_path, sizeof o->final_path, "%s/%s", parent_real, base);
  if (path_within(o->final_path, in_real))
    return rotq_fail(err, "output '%s' is inside the input directory '%s'", output, input_dir);
  if (path_within(in_real, o->final_path))
    return rotq_fail(err, "output '%s' contains the input directory '%s'", output, input_dir);
  struct stat st;
  if (lstat(o->final_path, &st) == 0 && !force)
    return rotq_fail(err, "output '%s' already exists (use --force to replace it)", output);
  if (access(parent_real, W_OK) != 0)
    return rotq_fail(err, "output '%s': cannot write in '%s': %s", output, parent_real, strerror(errno));
  remove_stale_partials(parent_real, base);
  snprintf(o->temp_path, sizeof o->temp_path, "%s/.%s.rotq-partial-%ld", parent_real, base, (long)getpid());
  remove_tree(o->temp_path);
  if (mkdir(o->temp_path, 0755) != 0)
    return rotq_fail(err, "output '%s': cannot create '%s': %s", output, o->temp_path, strerror(errno));
  return 0;
}

int output_dir_commit(output_dir *o, rotq_error *err) {
  if (fsync_path(o->temp_path, O_RDONLY | O_DIRECTORY) != 0)
    return rotq_fail(err, "%s: fsync: %s", o->temp_path, strerror(errno));
  struct stat st;
  if (lstat(o->final_path, &st) == 0) {
    /* --force: swap the new output and the old one atomically; the old one, now under the
     * temporary name, is removed (or by the next run, if this one is killed first). */
    if (renameat2(AT_FDCWD, o->temp_path, AT_FDCWD, o->final_path, RENAME_EXCHANGE) == 0) {
      remove_tree(o->temp_path);
    } else if (errno == EINVAL || errno == ENOSYS) { /* a filesystem without RENAME_EXCHANGE */
      char old[4200];
      snprintf(old, sizeof old, "%s.rotq-old-%ld", o->final_path, (long)getpid());
      if (rename(o->final_path, old) != 0)
        return rotq_fail(err, "%s: cannot replace: %s", o->final_path, strerror(errno));
      if (rename(o->temp_path, o->final_path) != 0) {
        int e = errno;
        rename(old, o->final_path);
        return rotq_fail(err, "cannot rename '%s' to '%s': %s", o->temp_path, o->final_path, strerror(e));
      }
      remove_tree(old);
    } else {
      return rotq_fail(err, "cannot replace '%s' with '%s': %s", o->final_path, o->temp_path, strerror(errno));
    }
  } else if (rename(o->temp_path, o->final_path) != 0) {
    return rotq_fail(err, "cannot rename '%s' to '%s': %s", o->temp_path, o->final_path, strerror(errno));
  }
  char parent[4096], base[4096];
  split_path(o->final_path, parent, base, sizeof parent);
  fsync_path(parent, O_RDONLY | O_DIRECTORY);
  o->temp_path[0] = '\0';
  return 0;
}

void output_dir_abort(output_dir *o) {
  if (o->temp_path[0]) remove_tree(o->temp_path);
  o->temp_path[0] = '\0';
}

static int write_all(int fd, const char *buf, size_t n) {
  while (n) {
    ssize_t w = write(fd, buf, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    buf += w, n -= (size_t)w;
  }
  return 0;
}

int copy_file(const char *src, const char *dst, rotq_error *err) {
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0) return rotq_fail(err, "%s: %s", src, strerror(errno));
  int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    int e = errno;
    close(in);
    return rotq_fail(err, "%s: %s", dst, strerror(e));
  }
  char buf[1 << 16];
  int rc = 0;
  for (;;) {
    ssize_t r = read(in, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = rotq_fail(err, "%s: read: %s", src, strerror(errno));
      break;
    }
    if (r == 0) break;
    if (write_all(out, buf, (size_t)r) != 0) {
      rc = rotq_fail(err, "%s: write: %s", dst, strerror(errno));
      break;
    }
  }
  if (rc == 0 && fsync(out) != 0) rc = rotq_fail(err, "%s: fsync: %s", dst, strerror(errno));
  close(in);
  if (close(out) != 0 && rc == 0) rc = rotq_fail(err, "%s: close: %s", dst, strerror(errno));
  return rc;
}

int write_text_file(const char *path, const char *text, rotq_error *err) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return rotq_fail(err, "%s: %s", path, strerror(errno));
  int rc = 0;
  if (write_all(fd, text, strlen(text)) != 0) rc = rotq_fail(err, "%s: write: %s", path, strerror(errno));
  if (rc == 0 && fsync(fd) != 0) rc = rotq_fail(err, "%s: fsync: %s", path, strerror(errno));
  if (close(fd) != 0 && rc == 0) rc = rotq_fail(err, "%s: close: %s", path, strerror(errno));
  return rc;
}
