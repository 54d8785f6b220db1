/* Fault injection for the rotq binary of a ROTQ_FAULT_INJECT build (scripts/fault_sweep.sh).
 * The link wraps (-Wl,--wrap=...) every call rotq's own code makes to the functions below; this
 * shim counts them per kind and makes the n-th one of a kind fail, as the system would:
 *
 *   ROTQ_FAIL_KIND=malloc|write|fsync|rename   which kind of call fails
 *       malloc: malloc, calloc, realloc, strdup (cJSON's too: io/json_file.c) -> NULL, ENOMEM
 *       write:  write, pwrite, posix_fallocate                               -> ENOSPC
 *       fsync:  fsync, fdatasync                                             -> EIO
 *       rename: rename, renameat2                                            -> EIO
 *   ROTQ_FAIL_AT=n       the n-th call of that kind (1-based) fails; 0 or unset: none
 *   ROTQ_FAIL_REPORT=F   appends to F, at exit, "calls <kind> <count>" for every kind, and when
 *                        the fault fired "fired <kind> <n> <site>"
 *   ROTQ_FAIL_TRACE=F    appends "<kind> <n> <site>" to F for every call (the sweep's plan)
 *
 * A site is the offset in the rotq executable of the innermost return address that lies in it
 * (for a call from libcjson, the rotq code that called cJSON), so that addr2line names it.
 *
 * Calls are counted in one process, so the sweep runs rotq with --threads 1 (deterministic
 * order). Without ROTQ_FAIL_KIND the binary behaves like a normal one. */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

enum { KIND_MALLOC, KIND_WRITE, KIND_FSYNC, KIND_RENAME, KIND_COUNT };
static const char *const kind_names[KIND_COUNT] = {"malloc", "write", "fsync", "rename"};

static int fail_kind = -1;
static volatile int exiting; /* set once exit() begins: gcov's and libc's exit-time calls are not ours */
static long fail_at;
static long calls[KIND_COUNT];
static const char *report_path;
static char fired_line[256];

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);
ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t offset);
int __real_posix_fallocate(int fd, off_t offset, off_t len);
int __real_fsync(int fd);
int __real_fdatasync(int fd);
int __real_rename(const char *from, const char *to);
int __real_renameat2(int from_dir, const char *from, int to_dir, const char *to, unsigned flags);

static int trace_fd = -1;
static uintptr_t exe_base;

void *json_file_malloc(size_t size); /* io/json_file.c: cJSON's allocations come through it */

/* Is address inside json_file_malloc (whose call is cJSON's, not the site's)? */
static int in_json_hook(uintptr_t address) {
  uintptr_t start = (uintptr_t)json_file_malloc;
  return address >= start && address < start + 256;
}

/* The site of the current call: the innermost frame in the rotq executable outside the JSON
 * allocation hook (for cJSON's allocations: rotq's call into cJSON), as an offset. */
__attribute__((noinline)) static uintptr_t site_of(void *caller) {
  Dl_info info;
  if (!in_json_hook((uintptr_t)caller) && dladdr(caller, &info) && (uintptr_t)info.dli_fbase == exe_base)
    return (uintptr_t)caller - exe_base;
  void *frames[24];
  int n = backtrace(frames, 24);
  for (int i = 3; i < n; i++) /* 0: site_of, 1: inject, 2: __wrap_* */
    if (!in_json_hook((uintptr_t)frames[i]) && dladdr(frames[i], &info) && (uintptr_t)info.dli_fbase == exe_base)
      return (uintptr_t)frames[i] - exe_base;
  return 0;
}

/* Counts a call of kind; true when it is the one to fail. */
__attribute__((noinline)) static int inject(int kind, void *caller) {
  if (exiting) return 0;
  long n = __atomic_add_fetch(&calls[kind], 1, __ATOMIC_RELAXED);
  if (trace_fd >= 0) dprintf(trace_fd, "%s %ld 0x%lx\n", kind_names[kind], n, (unsigned long)site_of(caller));
  if (kind != fail_kind || n != fail_at) return 0;
  snprintf(fired_line, sizeof fired_line, "fired %s %ld 0x%lx\n", kind_names[kind], n, (unsigned long)site_of(caller));
  return 1;
}

#define CALLER __builtin_extract_return_addr(__builtin_return_address(0))

void *__wrap_malloc(size_t size) {
  if (inject(KIND_MALLOC, CALLER)) return errno = ENOMEM, NULL;
  return __real_malloc(size);
}
void *__wrap_calloc(size_t n, size_t size) {
  if (inject(KIND_MALLOC, CALLER)) return errno = ENOMEM, NULL;
  return __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t size) {
  if (inject(KIND_MALLOC, CALLER)) return errno = ENOMEM, NULL;
  return __real_realloc(p, size);
}
char *__wrap_strdup(const char *s) {
  if (inject(KIND_MALLOC, CALLER)) return errno = ENOMEM, NULL;
  return __real_strdup(s);
}
ssize_t __wrap_write(int fd, const void *buf, size_t n) {
  if (inject(KIND_WRITE, CALLER)) return errno = ENOSPC, -1;
  return __real_write(fd, buf, n);
}
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t offset) {
  if (inject(KIND_WRITE, CALLER)) return errno = ENOSPC, -1;
  return __real_pwrite(fd, buf, n, offset);
}
int __wrap_posix_fallocate(int fd, off_t offset, off_t len) {
  if (inject(KIND_WRITE, CALLER)) return ENOSPC;
  return __real_posix_fallocate(fd, offset, len);
}
int __wrap_fsync(int fd) {
  if (inject(KIND_FSYNC, CALLER)) return errno = EIO, -1;
  return __real_fsync(fd);
}
int __wrap_fdatasync(int fd) {
  if (inject(KIND_FSYNC, CALLER)) return errno = EIO, -1;
  return __real_fdatasync(fd);
}
int __wrap_rename(const char *from, const char *to) {
  if (inject(KIND_RENAME, CALLER)) return errno = EIO, -1;
  return __real_rename(from, to);
}
int __wrap_renameat2(int from_dir, const char *from, int to_dir, const char *to, unsigned flags) {
  if (inject(KIND_RENAME, CALLER)) return errno = EIO, -1;
  return __real_renameat2(from_dir, from, to_dir, to, flags);
}

static void stop_injecting(void) { exiting = 1; }

__attribute__((constructor)) static void fault_setup(void) {
  const char *kind = getenv("ROTQ_FAIL_KIND"), *at = getenv("ROTQ_FAIL_AT");
  report_path = getenv("ROTQ_FAIL_REPORT");
  for (int k = 0; kind && k < KIND_COUNT; k++)
    if (!strcmp(kind, kind_names[k])) fail_kind = k;
  fail_at = at ? strtol(at, NULL, 10) : 0;
  Dl_info info;
  if (dladdr((void *)fault_setup, &info)) exe_base = (uintptr_t)info.dli_fbase;
  const char *trace = getenv("ROTQ_FAIL_TRACE");
  if (trace) trace_fd = open(trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  atexit(stop_injecting);
}

__attribute__((destructor)) static void fault_report(void) {
  if (!report_path) return;
  int fd = open(report_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  for (int k = 0; k < KIND_COUNT; k++) dprintf(fd, "calls %s %ld\n", kind_names[k], calls[k]);
  if (fired_line[0]) dprintf(fd, "%s", fired_line);
  close(fd);
}
