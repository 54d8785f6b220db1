#include "eval/calibration.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eval/token_file.h"

int calibration_load(const char *path, size_t n, int ctx, calibration_data *out, rotq_error *err) {
  memset(out, 0, sizeof *out);
  size_t segment_count = 0;
  if (token_file_read(path, &out->tokens, &out->count, err) != 0 ||
      token_segments(out->tokens, out->count, &out->segments, &segment_count, err) != 0) {
    calibration_free(out);
    return rotq_fail_context(err, "calibration");
  }
  out->first = n < segment_count ? segment_count - n : 0;
  out->set = (calibration_set){out->tokens, out->segments + out->first, segment_count - out->first, ctx};
  return 0;
}

void calibration_free(calibration_data *c) {
  free(c->tokens);
  free(c->segments);
  memset(c, 0, sizeof *c);
}

/* Whether a and b name the same file. */
static int same_file(const char *a, const char *b) {
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int evaluation_segments(const char *tokens_path, const char *calibration_path, const calibration_data *c, size_t wanted,
                        size_t *limit, rotq_error *err) {
  *limit = wanted;
  if (!c || !same_file(tokens_path, calibration_path)) return 0;
  if (wanted == 0) {
    if (c->first == 0)
      return rotq_fail(err,
                       "%s: every segment is used for calibration; none is left to evaluate "
                       "(use fewer calibration segments or another --calib file)",
                       tokens_path);
    *limit = c->first;
    return 0;
  }
  if (wanted > c->first)
    return rotq_fail(err,
                     "%s: the first %zu segments overlap the %zu calibration segments at its end "
                     "(it has %zu); evaluate fewer or calibrate on fewer",
                     tokens_path, wanted, c->set.segment_count, c->first + c->set.segment_count);
  return 0;
}
