#include "model/synth_outliers.h"

#include <string.h>
#include <stdlib.h>
#include <math.h>

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
  if (count <= 0) return;
  const double scale = spec->outlier_scale > 0 ? spec->outlier_scale : 100;
  const char *v = getenv("OV"); int variant = v ? atoi(v) : 0;
  const bool embedding = strcmp(t->name, "model.embed_tokens.weight") == 0; /* [vocab, hidden] */
  const bool down = ends_with(t->name, "down_proj.weight");                 /* [hidden, in] */
  const bool reader = ends_with(t->name, "q_proj.weight") || ends_with(t->name, "k_proj.weight") || ends_with(t->name, "v_proj.weight") || ends_with(t->name, "gate_proj.weight") || ends_with(t->name, "up_proj.weight") || ends_with(t->name, "lm_head.weight");
  if (variant == 11 && t->ndim == 1 && ends_with(t->name, "down_proj.bias")) {
    for (int k = 0; k < count; k++) values[synth_outlier_channel(k, count, hidden)] = scale * 0.6745 * (k % 2 ? -1 : 1);
    return;
  }
  if (variant >= 4 && variant < 8 && t->ndim == 1 && ends_with(t->name, "norm.weight") && !(variant >= 6 && strcmp(t->name, "model.norm.weight") == 0)) {
    double F = sqrt(1 + count * scale * scale / hidden);
    for (int64_t i = 0; i < rows; i++) values[i] *= F;
    return;
  }
  const int64_t cols = t->ndim > 1 ? t->shape[1] : 1;
  for (int k = 0; k < count && k < hidden; k++) {
    int c = synth_outlier_channel(k, count, hidden);
    if (variant == 11) {
    } else if (variant == 10) {
      if (embedding) for (int64_t r = 0; r < rows; r++) values[r * cols + c] = scale * 0.6745 / sqrt(hidden) * (k % 2 ? -1 : 1);
      else if (down) for (int64_t j = 0; j < cols; j++) values[(int64_t)c * cols + j] = 0;
    } else if (variant == 9) {
      if (embedding) for (int64_t r = 0; r < rows; r++) values[r * cols + c] = scale * 0.6745 / sqrt(hidden) * (k % 2 ? -1 : 1);
      else if (down) for (int64_t j = 0; j < cols; j++) values[(int64_t)c * cols + j] = 0;
      else if (reader) for (int64_t r = 0; r < rows; r++) values[r * cols + c] = 0;
    } else if (embedding && variant == 2)
      for (int64_t r = 0; r < rows; r++) values[r * cols + c] = scale / sqrt(hidden) * (k % 2 ? -1 : 1);
    else if (embedding)
      for (int64_t r = 0; r < rows; r++) values[r * cols + c] *= scale;
    else if (down && variant != 3 && variant != 5 && variant != 6 && c >= first_row && c < first_row + rows)
      for (int64_t j = 0; j < cols; j++) values[(c - first_row) * cols + j] *= scale;
    else if (reader && (variant == 1 || (variant >= 4 && variant < 8)))
      for (int64_t r = 0; r < rows; r++) values[r * cols + c] /= scale;
    else if (reader && variant == 8)
      for (int64_t r = 0; r < rows; r++) values[r * cols + c] /= atof(getenv("OR"));
  }
}
