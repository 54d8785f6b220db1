#include "model/rope.h"

#include <math.h>
#include <string.h>

/* transformers' _compute_llama3_parameters: wavelengths shorter than
 * original_max_position_embeddings / high_freq_factor are kept, longer than
 * original_max_position_embeddings / low_freq_factor are divided by factor, and those between are
 * interpolated smoothly. */
static void llama3_scaling(const rope_scaling *r, double *inv_freq, int half) {
  double old_context = r->original_max_position_embeddings;
  double low_freq_wavelen = old_context / r->low_freq_factor;
  double high_freq_wavelen = old_context / r->high_freq_factor;
  for (int i = 0; i < half; i++) {
    double wavelen = 2 * M_PI / inv_freq[i];
    if (wavelen < high_freq_wavelen) continue;
    if (wavelen > low_freq_wavelen) {
      inv_freq[i] /= r->factor;
    } else {
      double smooth = (old_context / wavelen - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
      inv_freq[i] = (1 - smooth) * inv_freq[i] / r->factor + smooth * inv_freq[i];
    }
  }
}

bool rope_type_supported(const model_config *c) {
  const char *t = c->rope.type;
  return t[0] == '\0' || !strcmp(t, "default") || !strcmp(t, "linear") || !strcmp(t, "llama3");
}

int rope_inv_freq(const model_config *c, double *inv_freq, rotq_error *err) {
  return rope_inv_freq_dim(c, c->head_dim, inv_freq, err);
}

int rope_inv_freq_dim(const model_config *c, int dim, double *inv_freq, rotq_error *err) {
  int half = dim / 2;
  for (int i = 0; i < half; i++) inv_freq[i] = 1.0 / pow(c->rope_theta, 2.0 * i / dim);
  const rope_scaling *r = &c->rope;
  if (r->type[0] == '\0' || strcmp(r->type, "default") == 0) return 0;
  if (strcmp(r->type, "linear") == 0) {
    if (!(r->factor > 0)) return rotq_fail(err, "%s: rope_scaling.factor must be positive", c->path);
    for (int i = 0; i < half; i++) inv_freq[i] /= r->factor;
    return 0;
  }
  if (strcmp(r->type, "llama3") == 0) {
    if (!(r->factor > 0) || !(r->low_freq_factor > 0) || !(r->high_freq_factor > r->low_freq_factor) ||
        r->original_max_position_embeddings <= 0)
      return rotq_fail(err,
                       "%s: rope_scaling llama3 needs factor > 0, 0 < low_freq_factor < "
                       "high_freq_factor and original_max_position_embeddings",
                       c->path);
    llama3_scaling(r, inv_freq, half);
    return 0;
  }
  return rotq_fail(err, "%s: rope_scaling type '%s' is not supported (supported: default, linear, llama3)", c->path,
                   r->type);
}

void rope_tables(const double *inv_freq, int half, int first, int n, double *cos_table, double *sin_table) {
  for (int p = 0; p < n; p++)
    for (int i = 0; i < half; i++) {
      double angle = (double)(first + p) * inv_freq[i];
      cos_table[(size_t)p * half + i] = cos(angle);
      sin_table[(size_t)p * half + i] = sin(angle);
    }
}
