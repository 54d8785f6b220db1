/* The output directory of a run, written atomically: everything goes into a temporary sibling
 * "<parent>/.<name>.rotq-partial-<pid>", which is fsync'd and renamed into place only when
 * complete. An interrupted run removes it; one killed with SIGKILL leaves only that clearly
 * named directory, which the next run into the same output removes (and says so). */
#ifndef ROTQ_ROTATE_OUTPUT_DIR_H
#define ROTQ_ROTATE_OUTPUT_DIR_H

#include <stdbool.h>

#include "common/error.h"

typedef struct output_dir {
  char final_path[4096];
  char temp_path[4096];
} output_dir;

/* Checks the output location (not existing unless force; not the input, inside it, or holding
 * it; parent writable), removes stale partial directories of dead runs, creates the temporary
 * directory. */
int output_dir_begin(const char *input_dir, const char *output, bool force, output_dir *o, rotq_error *err);
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
