/* Opening a file rotq reads as input: without blocking (a FIFO or device named like an input must
 * not hang the run) and only if it is a regular file. */
#ifndef ROTQ_COMMON_REGULAR_FILE_H
#define ROTQ_COMMON_REGULAR_FILE_H

#include <stdio.h>
#include <sys/types.h>

#include "common/error.h"

/* Opens path read-only ("rb"); NULL with "<path>: cannot open: <why>" or "<path>: not a regular
 * file (a FIFO)" in err. errno is that of the failure (EINVAL for a non-regular file). */
FILE *regular_file_open(const char *path, rotq_error *err);
/* What kind of file a stat mode is, for messages: "a regular file", "a FIFO", "a symbolic link", ... */
const char *file_kind(mode_t mode);

#endif
