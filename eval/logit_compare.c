#include "eval/logit_compare.h"

#include <math.h>

static int argmax(const double *row, int n) {
  int best = 0;
  for (int j = 1; j < n; j++)
    if (row[j] > row[best]) best = j;
  return best;
}

void logit_diff_compute(const double *a, const double *b, int rows, int vocab, logit_diff *out) {
  *out = (logit_diff){.rows = rows};
  for (int r = 0; r < rows; r++) {
    const double *ra = a + (long)r * vocab, *rb = b + (long)r * vocab;
    for (int j = 0; j < vocab; j++) {
      double d = fabs(ra[j] - rb[j]);
      out->max_abs_diff = fmax(out->max_abs_diff, isnan(d) ? INFINITY : d); /* NaN never agrees */
      out->max_abs_logit = fmax(out->max_abs_logit, fabs(ra[j]));
    }
    out->argmax_agree += argmax(ra, vocab) == argmax(rb, vocab);
  }
  out->relative = out->max_abs_logit > 0 ? out->max_abs_diff / out->max_abs_logit : out->max_abs_diff;
}

double logit_tolerance(dtype t) {
  switch (t) {
  case DTYPE_F64: return 1e-9;
  case DTYPE_F32: return 1e-5;
  default: return 5e-2; /* 16-bit weights are re-rounded after rotation: a drift, not a bug */
  }
}

/* The dtype of most of the checkpoint's parameters. */
static dtype main_dtype(const checkpoint *ck) {
  size_t count[DTYPE_COUNT] = {0};
  for (size_t i = 0; i < ck->tensor_count; i++) count[ck->tensors[i]->dtype] += st_numel(ck->tensors[i]);
  int best = 0;
  for (int t = 1; t < DTYPE_COUNT; t++)
    if (count[t] > count[best]) best = t;
  return (dtype)best;
}

double checkpoint_logit_tolerance(const checkpoint *ck) { return logit_tolerance(main_dtype(ck)); }
