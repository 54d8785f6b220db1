/* A scratch directory for the checkpoints a command rotates on the way (`rotq report`,
 * `rotq stats`): created beside the command's output as "<dir>/.rotq-<tag>-scratch-<pid>" (not
 * in /tmp: a rotated copy is as large as the model), removed with everything in it afterwards,
 * and also on SIGINT/SIGTERM (the process then exits with status 1). One left by a run killed
 * with SIGKILL is found and removed by the next run that creates one in the same directory. */
#ifndef ROTQ_CLI_WORK_DIR_H
#define ROTQ_CLI_WORK_DIR_H

#include <stddef.h>

#include "common/error.h"

/* Creates the scratch directory of command `tag` beside the file `near` (its directory; NULL or
 * a bare name: the current directory), its path into path[size]; installs the signal handlers. */
int work_dir_create(const char *tag, const char *near, char *path, size_t size, rotq_error *err);
/* Removes path and everything under it (best effort) and restores the signal handlers. */
void work_dir_remove(const char *path);

#endif
