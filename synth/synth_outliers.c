#include "synth/synth_outliers.h"

#include <math.h>
#include <string.h>

int synth_outlier_channel(int k, int count, int hidden) {
  return (int)(((2 * (long)k + 1) * hidden) / (2 * (long)count));
}

void synth_plant_outliers(const synth_spec *spec, const synth_tensor *t, int64_t first_row, int64_t rows,
                          double *values) {
  const int count = spec->outlier_channels, hidden = spec->hidden_size;
  if (count <= 0 || t->ndim != 2 || strcmp(t->name, "model.embed_tokens.weight") != 0) return; /* [vocab, hidden] */
  const double scale = spec->outlier_scale > 0 ? spec->outlier_scale : SYNTH_DEFAULT_OUTLIER_SCALE;
  const double unit = sqrt((double)hidden); /* the drawn values are N(0, 1/hidden) */
  const int64_t cols = t->shape[1];
  if (spec->feature_rank <= 0) /* synth_shape_features gave the feature rows unit rms already */
    for (int64_t i = 0; i < rows * cols; i++) values[i] *= unit;
  for (int k = 0; k < count && k < hidden; k++) {
    const int64_t c = synth_outlier_channel(k, count, hidden);
    const double sign = k % 2 ? -1 : 1;
    for (int64_t r = 0; r < rows; r++) {
      double *v = &values[r * cols + c];
      double normal = spec->feature_rank <= 0 ? *v : *v * unit; /* N(0, 1) */
      *v = sign * scale * (1 + 0.1 * normal);
    }
  }
  (void)first_row;
}
