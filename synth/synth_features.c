#include "synth/synth_features.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linalg/rng.h"
#include "synth/synth_outliers.h"

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static uint64_t hash_name(const char *name) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  return h;
}

/* The stream of row (or feature) `index` of tensor `name`: independent of the row blocking. */
static void seed_row_stream(rng *g, const synth_spec *spec, const char *name, int64_t index) {
  rng_seed(g, spec->seed ^ hash_name(name) ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(index + 1)) ^ 0xFEA7u);
}

/* Features per channel: each row of P has this many nonzeros (random features, random signs, equal
 * magnitudes, so every channel has the same rms), so that no two rows of a writer (or columns of a
 * reader) are proportional — RTN, which scales each row, would round proportional rows alike and
 * keep its error inside S. */
#define FEATURES_PER_CHANNEL 4

/* The sparse basis P of S: channel i's features feature[i·F + j] (-1 for an outlier channel) with
 * coefficients coefficient[i·F + j], F = FEATURES_PER_CHANNEL; the columns have unit norm in
 * expectation (nearly orthonormal: S's basis vectors overlap little). A function of the seed. */
typedef struct feature_basis {
  int *feature;
  double *coefficient;
  double *draws; /* a row's rank draws */
} feature_basis;

static int basis_make(const synth_spec *spec, int rank, feature_basis *b) {
  const int hidden = spec->hidden_size, f = FEATURES_PER_CHANNEL;
  int *order = malloc(sizeof(int) * (size_t)hidden);
  b->feature = malloc(sizeof(int) * (size_t)hidden * f);
  b->coefficient = malloc(sizeof(double) * (size_t)hidden * f);
  b->draws = malloc(sizeof(double) * (size_t)rank);
  if (!order || !b->feature || !b->coefficient || !b->draws) {
    free(order), free(b->feature), free(b->coefficient), free(b->draws);
    return -1;
  }
  for (int i = 0; i < hidden * f; i++) b->feature[i] = 0, b->coefficient[i] = 0;
  for (int k = 0; k < spec->outlier_channels && k < hidden; k++)
    for (int j = 0; j < f; j++) b->feature[synth_outlier_channel(k, spec->outlier_channels, hidden) * f + j] = -1;
  int n = 0;
  for (int i = 0; i < hidden; i++)
    if (b->feature[i * f] == 0) order[n++] = i;
  rng g;
  rng_seed(&g, spec->seed ^ 0x5EED0FEA7u);
  for (int i = n - 1; i > 0; i--) { /* Fisher–Yates: the features' channels are random */
    int j = (int)(rng_uniform(&g) * (i + 1)), t = order[i];
    order[i] = order[j], order[j] = t;
  }
  const double size = sqrt((double)rank / ((double)f * n));
  for (int p = 0; p < n; p++)
    for (int j = 0; j < f; j++) { /* the first slot deals the features out evenly, the others at random */
      b->feature[order[p] * f + j] = j == 0 ? p % rank : (int)(rng_uniform(&g) * rank);
      b->coefficient[order[p] * f + j] = size * rng_sign(&g);
    }
  free(order);
  return 0;
}

void synth_shape_features(const synth_spec *spec, const synth_tensor *t, int64_t first_row, int64_t rows,
                          double *values) {
  const int rank = spec->feature_rank, hidden = spec->hidden_size;
  if (rank <= 0 || t->ndim != 2) return;
  const bool embedding = strcmp(t->name, "model.embed_tokens.weight") == 0;
  const bool reader = strcmp(t->name, "lm_head.weight") == 0 || ends_with(t->name, "self_attn.q_proj.weight") ||
                      ends_with(t->name, "self_attn.k_proj.weight") || ends_with(t->name, "self_attn.v_proj.weight") ||
                      ends_with(t->name, "mlp.gate_proj.weight") || ends_with(t->name, "mlp.up_proj.weight");
  const bool writer = ends_with(t->name, "self_attn.o_proj.weight") || ends_with(t->name, "mlp.down_proj.weight");
  if (!embedding && !reader && !writer) return;
  feature_basis basis;
  if (basis_make(spec, rank, &basis) != 0) return; /* out of memory: the weights stay isotropic */
  const int64_t cols = t->shape[1];
  enum { F = FEATURES_PER_CHANNEL };
  rng g;
  for (int64_t r = 0; r < rows; r++) {
    double *row = values + r * cols;
    if (writer) { /* row i = Σ P[i, k]·b_k: feature k's output weights b_k, N(0, hidden / (rank·in)) */
      const int64_t i = first_row + r;
      for (int64_t j = 0; j < cols; j++) row[j] = 0;
      if (i >= hidden || basis.feature[i * F] < 0) continue;
      const double scale = sqrt((double)hidden / rank / (double)cols);
      for (int s = 0; s < F; s++) {
        seed_row_stream(&g, spec, t->name, -2 - (int64_t)basis.feature[i * F + s]);
        const double c = basis.coefficient[i * F + s] * scale;
        for (int64_t j = 0; j < cols; j++) row[j] += c * rng_gaussian(&g);
      }
      continue;
    }
    /* a reader's row g·Pᵀ, g ~ N(0, 1/hidden); an embedding row P·z, z ~ N(0, hidden/rank) */
    seed_row_stream(&g, spec, t->name, first_row + r);
    double *z = basis.draws;
    const double scale = embedding ? sqrt((double)hidden / rank) : 1 / sqrt((double)hidden);
    for (int k = 0; k < rank; k++) z[k] = scale * rng_gaussian(&g);
    for (int i = 0; i < hidden && i < cols; i++) {
      if (basis.feature[i * F] < 0) {
        if (!embedding) row[i] = 0;
        continue;
      }
      row[i] = 0;
      for (int j = 0; j < F; j++) row[i] += basis.coefficient[i * F + j] * z[basis.feature[i * F + j]];
    }
  }
  free(basis.feature);
  free(basis.coefficient);
  free(basis.draws);
}
