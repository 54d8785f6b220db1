#include "eval/token_file.h"

#include "common/regular_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int token_file_read(const char *path, int32_t **tokens, size_t *count, rotq_error *err) {
  *tokens = NULL;
  *count = 0;
  FILE *f = regular_file_open(path, err);
  if (!f) return -1;
  long size = -1;
  if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
  if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return rotq_fail(err, "%s: cannot determine the size: %s", path, strerror(errno));
  }
  if (size == 0 || size % 2 != 0) {
    fclose(f);
    return rotq_fail(err, "%s: %ld bytes is not a non-empty sequence of uint16 token ids", path, size);
  }
  size_t n = (size_t)size / 2;
  unsigned char *bytes = malloc((size_t)size);
  int32_t *ids = malloc(n * sizeof *ids);
  if (!bytes || !ids) {
    free(bytes);
    free(ids);
    fclose(f);
    return rotq_fail(err, "%s: out of memory for %zu tokens", path, n);
  }
  size_t got = fread(bytes, 1, (size_t)size, f);
  fclose(f);
  if (got != (size_t)size) {
    free(bytes);
    free(ids);
    return rotq_fail(err, "%s: short read (%zu of %ld bytes)", path, got, size);
  }
  for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(bytes[2 * i] | bytes[2 * i + 1] << 8);
  free(bytes);
  *tokens = ids;
  *count = n;
  return 0;
}

int token_segments(const int32_t *tokens, size_t count, token_segment **segments, size_t *segment_count,
                   rotq_error *err) {
  size_t n = 0;
  for (size_t i = 0; i < count; i++) n += i == 0 || tokens[i] == TOKEN_BOS;
  token_segment *out = malloc((n ? n : 1) * sizeof *out);
  if (!out) return rotq_fail(err, "out of memory for %zu segments", n);
  size_t k = 0;
  for (size_t i = 0; i < count; i++) {
    if (i == 0 || tokens[i] == TOKEN_BOS) out[k++] = (token_segment){i, 0};
    out[k - 1].length++;
  }
  *segments = out;
  *segment_count = n;
  return 0;
}
