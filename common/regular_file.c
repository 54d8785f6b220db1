#include "common/regular_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *file_kind(mode_t mode) {
  return S_ISREG(mode)    ? "a regular file"
         : S_ISFIFO(mode) ? "a FIFO"
         : S_ISCHR(mode)  ? "a character device"
         : S_ISBLK(mode)  ? "a block device"
         : S_ISSOCK(mode) ? "a socket"
         : S_ISLNK(mode)  ? "a symbolic link"
         : S_ISDIR(mode)  ? "a directory"
                          : "an unknown kind of file";
}

FILE *regular_file_open(const char *path, rotq_error *err) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    rotq_fail(err, "%s: cannot open: %s", path, strerror(e));
    errno = e;
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    int e = errno;
    if (fstat(fd, &st) == 0)
      rotq_fail(err, "%s: cannot open: not a regular file (%s)", path, file_kind(st.st_mode)), e = EINVAL;
    else
      rotq_fail(err, "%s: cannot stat: %s", path, strerror(e));
    close(fd);
    errno = e;
    return NULL;
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    int e = errno;
    rotq_fail(err, "%s: cannot open: %s", path, strerror(e));
    close(fd);
    errno = e;
  }
  return f;
}
