#include "model/synth_outliers.h"

#include <string.h>

int synth_outlier_channel(int k, int count, int hidden) {
  return (int)(((2 * (long)k + 1) * hidden) / (2 * (long)count));
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

void synth_plant_outliers(const synth_spec *spec, const synth_tensor *t, int64_t first_row, int64_t rows,
                          double *values) {
  const int count = spec->outlier_channels, hidden = spec->hidden_size;
  if (count <= 0 || t->ndim != 2) return;
  const double scale = spec->outlier_scale > 0 ? spec->outlier_scale : 100;
  const bool embedding = strcmp(t->name, "model.embed_tokens.weight") == 0; /* [vocab, hidden] */
  const bool down = ends_with(t->name, "down_proj.weight");                 /* [hidden, in] */
  const int64_t cols = t->shape[1];
  for (int k = 0; k < count && k < hidden; k++) {
    int64_t c = synth_outlier_channel(k, count, hidden);
    if (embedding) /* column c of every row */
      for (int64_t r = 0; r < rows; r++) values[r * cols + c] *= scale;
    else if (down && c >= first_row && c < first_row + rows) /* row c */
      for (int64_t j = 0; j < cols; j++) values[(c - first_row) * cols + j] *= scale;
  }
}
