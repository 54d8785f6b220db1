/* A scratch directory for the checkpoints a command rotates on the way (`rotq report`,
 * `rotq stats`): created under $TMPDIR (or /tmp), removed with everything in it afterwards. */
#ifndef ROTQ_CLI_WORK_DIR_H
#define ROTQ_CLI_WORK_DIR_H

#include <stddef.h>

#include "common/error.h"

/* Creates a fresh directory, its path into path[size]. */
int work_dir_create(const char *tag, char *path, size_t size, rotq_error *err);
/* Removes path and everything under it (best effort). */
void work_dir_remove(const char *path);

#endif
