/* `rotq report --format`: the table of rotq_report_format (include/rotq.h) as Markdown
 * (PREFIX.md, and stdout) and JSON (PREFIX.json). */
#ifndef ROTQ_CLI_REPORT_FORMAT_H
#define ROTQ_CLI_REPORT_FORMAT_H

#include <stdbool.h>

#include "rotq.h"

/* What the table's header says about the run. */
typedef struct report_format_run {
  const char *model_dir, *tokens_path;
  int ctx;
  double a_clip;
  bool f32;
} report_format_run;

/* Writes PREFIX.md and PREFIX.json and prints the table; -1 with err on an I/O error. */
int report_format_write(const char *prefix, const report_format_run *run, const rotq_format_report_result *x,
                        rotq_error *err);

#endif
