/* The output directory of a run, written atomically: everything goes into a temporary sibling
 * "<parent>/.<name>.rotq-partial-<pid>", which is fsync'd and renamed into place only when
 * complete. An interrupted run removes it; one killed with SIGKILL leaves only that clearly
 * named directory, which the next run into the same output removes (and says so). */
#ifndef ROTQ_ROTATE_OUTPUT_DIR_H
#define ROTQ_ROTATE_OUTPUT_DIR_H

#include <stdbool.h>

#include "common/error.h"
#include "common/log.h"

typedef struct output_dir {
  char final_path[4096];
  char temp_path[4096];
  char lock_path[4200];      /* "<parent>/.<name>.rotq-lock", flock'd from begin to commit/abort */
  int lock_fd;               /* -1 when not held */
  char created_parent[4096]; /* the first parent directory this run created ("" if none) */
  char replaced[64];         /* with force, what the existing output is ("" if none existed) */
} output_dir;

/* Checks the output location (not existing unless force, and with force only a checkpoint or
 * an earlier rotq output; not the input, inside it, or holding it; parent writable), takes the
 * output's lock (another run writing the same output is an error), removes stale partial
 * directories of dead runs (each named to log at ROTQ_LOG_NOTICE; log may be NULL), creates the
 * temporary directory. Parents it creates are removed again when it fails or the run is aborted. */
int output_dir_begin(const char *input_dir, const char *output, bool force, const logger *log, output_dir *o,
                     rotq_error *err);
/* fsyncs the temporary directory, renames it to the final path (replacing an old output when
 * forced), fsyncs the parent. */
int output_dir_commit(output_dir *o, rotq_error *err);
/* Removes the temporary directory (after an error or interrupt). */
void output_dir_abort(output_dir *o);

/* Recursively removes path (no symlinks followed). 0 on success. */
int remove_tree(const char *path);
/* Copies a regular file, fsyncs the copy. */
int copy_file(const char *src, const char *dst, rotq_error *err);
/* Writes text to path (created, must not exist), fsyncs it. */
int write_text_file(const char *path, const char *text, rotq_error *err);

#endif
