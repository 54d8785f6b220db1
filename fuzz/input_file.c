/* Fuzz inputs as files (see input_file.h). */
#include "fuzz/input_file.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Writes all of data at offset 0 of fd; aborts on failure. */
static void write_all(int fd, const uint8_t *data, size_t size, const char *what) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
    if (n <= 0) {
      perror(what);
      abort();
    }
    done += (size_t)n;
  }
}

const char *fuzz_input_as_file(const uint8_t *data, size_t size) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("rotq-fuzz-input", MFD_CLOEXEC);
    if (fd < 0) {
      perror("memfd_create");
      abort();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0) {
    perror("ftruncate");
    abort();
  }
  write_all(fd, data, size, "fuzz input");
  return path;
}

void fuzz_write_file(const char *path, const void *data, size_t size) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    perror(path);
    abort();
  }
  write_all(fd, data, size, path);
  close(fd);
}
