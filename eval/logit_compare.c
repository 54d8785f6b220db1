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
