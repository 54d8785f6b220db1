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
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/regular_file.h"

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

/* path's parent and base name (path need not exist); -1 if either does not fit in cap. */
static int split_path(const char *path, char *parent, char *base, size_t cap) {
  char a[PATH_MAX], b[PATH_MAX];
  if (strlen(path) >= sizeof a) return -1;
  snprintf(a, sizeof a, "%s", path);
  snprintf(b, sizeof b, "%s", path);
  size_t n = strlen(a); /* drop trailing slashes */
  while (n > 1 && a[n - 1] == '/') a[--n] = '\0', b[n] = '\0';
  if ((size_t)snprintf(parent, cap, "%s", dirname(a)) >= cap) return -1;
  return (size_t)snprintf(base, cap, "%s", basename(b)) >= cap ? -1 : 0;
}

/* Is `inner` equal to or below `outer` (both canonical)? */
static bool path_within(const char *inner, const char *outer) {
  size_t n = strlen(outer);
  return strncmp(inner, outer, n) == 0 && (inner[n] == '\0' || inner[n] == '/' || strcmp(outer, "/") == 0);
}

/* Removes "<parent>/.<base>.rotq-partial-<pid>" directories whose process is gone, and puts back
 * "<base>.rotq-old-<pid>" (an output replaced by a run killed between its two renames) when
 * nothing took its place; such a directory is otherwise left alone (docs/reliability.md). */
static void remove_stale_partials(const char *parent, const char *base, const logger *log) {
  DIR *d = opendir(parent);
  if (!d) return;
  char prefix[PATH_MAX + 32], old_prefix[PATH_MAX + 32];
  snprintf(prefix, sizeof prefix, ".%s.rotq-partial-", base);
  snprintf(old_prefix, sizeof old_prefix, "%s.rotq-old-", base);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, old_prefix, strlen(old_prefix)) == 0) {
      char old[2 * PATH_MAX], final[2 * PATH_MAX];
      snprintf(old, sizeof old, "%s/%s", parent, e->d_name);
      snprintf(final, sizeof final, "%s/%s", parent, base);
      struct stat st;
      char *end;
      long pid = strtol(e->d_name + strlen(old_prefix), &end, 10);
      if (pid <= 0 || *end || kill((pid_t)pid, 0) == 0 || errno == EPERM) continue;
      if (lstat(final, &st) != 0 && errno == ENOENT && rename(old, final) == 0)
        log_message(log, ROTQ_LOG_NOTICE, "restored the previous output of an interrupted run: %s", final);
      continue;
    }
    if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
    char *end;
    long pid = strtol(e->d_name + strlen(prefix), &end, 10);
    if (pid <= 0 || *end) continue;
    if (kill((pid_t)pid, 0) == 0 || errno == EPERM) continue; /* still running */
    char stale[2 * PATH_MAX];
    snprintf(stale, sizeof stale, "%s/%s", parent, e->d_name);
    log_message(log, ROTQ_LOG_NOTICE, "removing the partial output of an interrupted run: %s", stale);
    remove_tree(stale);
  }
  closedir(d);
}

/* The canonical form of path, which need not exist: realpath of its deepest existing ancestor
 * (into existing[]) followed by the missing components, which may not be "." or "..". */
static int resolve_missing(const char *path, char *resolved, char *existing, rotq_error *err, const char *output) {
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s", path);
  char *missing = NULL; /* components cut off, separated by NULs, in reverse */
  size_t n = strlen(p);
  for (;;) {
    if (realpath(p, existing)) break;
    if (errno != ENOENT) return rotq_fail(err, "output '%s': parent directory '%s': %s", output, p, strerror(errno));
    while (n > 1 && p[n - 1] == '/') p[--n] = '\0';
    char *slash = strrchr(p, '/');
    const char *component = slash ? slash + 1 : p;
    if (!strcmp(component, ".") || !strcmp(component, ".."))
      return rotq_fail(err, "output '%s': '%s' does not exist", output, p);
    missing = slash ? slash + 1 : p;
    if (!slash) {
      snprintf(existing, PATH_MAX, "%s", ".");
      if (!realpath(".", existing)) return rotq_fail(err, "output '%s': %s", output, strerror(errno));
      break;
    }
    *slash = '\0';
    n = (size_t)(slash - p);
    if (n == 0) { /* "/x": the root */
      snprintf(existing, PATH_MAX, "/");
      break;
    }
  }
  /* existing + the rest of the original path after the existing prefix */
  const char *rest = missing ? path + (missing - p) : "";
  int w = snprintf(resolved, PATH_MAX, "%s%s%s", existing, *rest && strcmp(existing, "/") ? "/" : "", rest);
  if (w < 0 || w >= PATH_MAX) return rotq_fail(err, "output '%s': path too long", output);
  return 0;
}

/* mkdir -p path, whose deepest existing ancestor is `existing` (like HF's save_pretrained, the
 * output's parents are created); the first directory created goes into created[] ("" if none). */
static int make_parents(const char *path, const char *existing, char *created) {
  created[0] = '\0';
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s", path);
  size_t start = strlen(existing);
  for (char *s = p + start + 1; s <= p + strlen(path); s++) {
    if (*s != '/' && *s != '\0') continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0755) == 0) {
      if (!created[0]) snprintf(created, PATH_MAX, "%s", p);
    } else if (errno != EEXIST) {
      return -1;
    }
    *s = c;
    if (c == '\0') break;
  }
  return 0;
}

/* rmdir the empty directories from path up to and including top (what make_parents created). */
static void remove_created_parents(const char *path, const char *top) {
  if (!top[0]) return;
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s", path);
  size_t top_len = strlen(top);
  while (strlen(p) >= top_len) {
    if (rmdir(p) != 0) return;
    char *slash = strrchr(p, '/');
    if (!slash || slash == p) return;
    *slash = '\0';
  }
}

static bool regular_at(int dir, const char *name) {
  struct stat st;
  return fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

/* Whether the existing path may be replaced by --force: only a real directory (not a symbolic
 * link) that is a checkpoint (config.json and a *.safetensors file) or an earlier rotq output
 * (rotation.json), or an empty directory. Its description goes into what[], else an error. */
static int replaceable(const char *path, const char *output, char *what, size_t size, rotq_error *err) {
  struct stat st;
  if (lstat(path, &st) != 0) return rotq_fail(err, "output '%s': %s", output, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return rotq_fail(err,
                     "output '%s' exists and is %s; --force replaces only a checkpoint directory or an earlier "
                     "rotq output",
                     output, file_kind(st.st_mode));
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    int e = errno;
    if (fd >= 0) close(fd);
    return rotq_fail(err, "output '%s': cannot list: %s", output, strerror(e));
  }
  bool safetensors = false, entries = false;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    entries = true;
    size_t len = strlen(e->d_name);
    if (len > 12 && !strcmp(e->d_name + len - 12, ".safetensors") && regular_at(fd, e->d_name)) safetensors = true;
  }
  bool record = regular_at(fd, "rotation.json"), config = regular_at(fd, "config.json");
  closedir(d);
  if (record)
    snprintf(what, size, "an earlier rotq output");
  else if (config && safetensors)
    snprintf(what, size, "a checkpoint");
  else if (!entries)
    snprintf(what, size, "an empty directory");
  else
    return rotq_fail(err,
                     "output '%s' exists and is a directory that is neither a checkpoint (config.json and "
                     "*.safetensors) nor a rotq output (rotation.json); --force does not replace it",
                     output);
  return 0;
}

/* Takes the lock "<parent>/.<base>.rotq-lock" (flock, held until commit or abort); fails at once
 * if another run holds it. */
static int take_lock(output_dir *o, const char *parent, const char *base, const char *output, rotq_error *err) {
  if ((size_t)snprintf(o->lock_path, sizeof o->lock_path, "%s/.%s.rotq-lock", parent, base) >= sizeof o->lock_path)
    return rotq_fail(err, "output '%s': path too long", output);
  for (int attempt = 0; attempt < 100; attempt++) {
    int fd = open(o->lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0) return rotq_fail(err, "output '%s': lock '%s': %s", output, o->lock_path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int e = errno;
      close(fd);
      if (e == EWOULDBLOCK)
        return rotq_fail(err, "output '%s' is being written by another rotq run (it holds '%s')", output, o->lock_path);
      return rotq_fail(err, "output '%s': lock '%s': %s", output, o->lock_path, strerror(e));
    }
    /* the file may have been unlinked by its previous holder between our open and flock */
    struct stat a, b;
    if (fstat(fd, &a) == 0 && lstat(o->lock_path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
      o->lock_fd = fd;
      return 0;
    }
    close(fd);
  }
  return rotq_fail(err, "output '%s': cannot take the lock '%s'", output, o->lock_path);
}

static void release_lock(output_dir *o) {
  if (o->lock_fd < 0) return;
  unlink(o->lock_path);
  close(o->lock_fd);
  o->lock_fd = -1;
}

int output_dir_begin(const char *input_dir, const char *output, bool force, const logger *log, output_dir *o,
                     rotq_error *err) {
  memset(o, 0, sizeof *o);
  o->lock_fd = -1;
  char parent[PATH_MAX], base[PATH_MAX], in_real[PATH_MAX], parent_real[PATH_MAX], existing[PATH_MAX];
  size_t length = strlen(output);
  if (length == 0) return rotq_fail(err, "output '': name a new directory");
  if (length >= PATH_MAX - 64 || split_path(output, parent, base, sizeof parent) != 0)
    return rotq_fail(err, "output '%s': the path is %zu bytes long, longer than this system allows (%d)", output,
                     length, PATH_MAX - 64);
  if (strlen(base) > NAME_MAX - 32)
    return rotq_fail(err, "output '%s': the name '%s' is %zu bytes long, longer than this system allows (%d)", output,
                     base, strlen(base), NAME_MAX - 32);
  if (!strcmp(base, ".") || !strcmp(base, "..") || !strcmp(base, "/"))
    return rotq_fail(err, "output '%s': name a new directory", output);
  if (!realpath(input_dir, in_real)) return rotq_fail(err, "%s: %s", input_dir, strerror(errno));
  if (resolve_missing(parent, parent_real, existing, err, output) != 0) return -1;
  if ((size_t)snprintf(o->final_path, sizeof o->final_path, "%s/%s", parent_real, base) >= sizeof o->final_path)
    return rotq_fail(err, "output '%s': the path is too long", output);
  if (path_within(o->final_path, in_real))
    return rotq_fail(err, "output '%s' is inside the input directory '%s'", output, input_dir);
  if (path_within(in_real, o->final_path))
    return rotq_fail(err, "output '%s' contains the input directory '%s'", output, input_dir);
  struct stat st;
  bool exists = lstat(o->final_path, &st) == 0;
  if (exists && !force) return rotq_fail(err, "output '%s' already exists (use --force to replace it)", output);
  if (exists && replaceable(o->final_path, output, o->replaced, sizeof o->replaced, err) != 0) return -1;
  if (access(existing, W_OK) != 0)
    return rotq_fail(err, "output '%s': cannot write in '%s': %s", output, existing, strerror(errno));
  if (make_parents(parent_real, existing, o->created_parent) != 0) {
    int e = errno;
    remove_created_parents(parent_real, o->created_parent);
    return rotq_fail(err, "output '%s': cannot create parent directory '%s': %s", output, parent, strerror(e));
  }
  if (take_lock(o, parent_real, base, output, err) != 0) goto fail;
  remove_stale_partials(parent_real, base, log);
  /* under the lock: the output may have appeared (or changed, or been restored) since the checks */
  exists = lstat(o->final_path, &st) == 0;
  if (exists && !force) {
    rotq_fail(err, "output '%s' already exists (use --force to replace it)", output);
    goto fail;
  }
  if (exists && replaceable(o->final_path, output, o->replaced, sizeof o->replaced, err) != 0) goto fail;
  snprintf(o->temp_path, sizeof o->temp_path, "%s/.%s.rotq-partial-%ld", parent_real, base, (long)getpid());
  remove_tree(o->temp_path);
  if (mkdir(o->temp_path, 0755) != 0) {
    rotq_fail(err, "output '%s': cannot create '%s': %s", output, o->temp_path, strerror(errno));
    o->temp_path[0] = '\0';
    goto fail;
  }
  return 0;
fail:
  release_lock(o);
  remove_created_parents(parent_real, o->created_parent);
  o->created_parent[0] = '\0';
  return -1;
}

int output_dir_commit(output_dir *o, rotq_error *err) {
  if (fsync_path(o->temp_path, O_RDONLY | O_DIRECTORY) != 0)
    return rotq_fail(err, "%s: fsync: %s", o->temp_path, strerror(errno));
  struct stat st;
  if (lstat(o->final_path, &st) == 0) {
    char what[64];
    if (!o->replaced[0] || replaceable(o->final_path, o->final_path, what, sizeof what, err) != 0) {
      if (!o->replaced[0]) rotq_fail(err, "output '%s' appeared while this run was writing it", o->final_path);
      return -1;
    }
    /* --force: swap the new output and the old one atomically; the old one, now under the
     * temporary name, is removed (or by the next run, if this one is killed first). */
    if (renameat2(AT_FDCWD, o->temp_path, AT_FDCWD, o->final_path, RENAME_EXCHANGE) == 0) {
      remove_tree(o->temp_path);
    } else if (errno == EINVAL || errno == ENOSYS) { /* a filesystem without RENAME_EXCHANGE */
      char old[PATH_MAX + 64];
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
  char parent[PATH_MAX], base[PATH_MAX];
  if (split_path(o->final_path, parent, base, sizeof parent) == 0) fsync_path(parent, O_RDONLY | O_DIRECTORY);
  o->temp_path[0] = '\0';
  o->created_parent[0] = '\0';
  release_lock(o);
  return 0;
}

void output_dir_abort(output_dir *o) {
  if (o->temp_path[0]) remove_tree(o->temp_path);
  o->temp_path[0] = '\0';
  release_lock(o);
  if (o->created_parent[0]) {
    char parent[PATH_MAX], base[PATH_MAX];
    if (split_path(o->final_path, parent, base, sizeof parent) == 0) remove_created_parents(parent, o->created_parent);
  }
  o->created_parent[0] = '\0';
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
