#include "eval/kl.h"

#include <math.h>

/* log Σ exp(row) over vocab, shifted by the max so that nothing overflows. */
static double log_sum_exp(const double *row, int vocab) {
  double max = row[0];
  for (int j = 1; j < vocab; j++) max = row[j] > max ? row[j] : max;
  double sum = 0;
  for (int j = 0; j < vocab; j++) sum += exp(row[j] - max);
  return max + log(sum);
}

double token_kl(const double *reference, const double *logits, int vocab) {
  const double log_z_p = log_sum_exp(reference, vocab), log_z_q = log_sum_exp(logits, vocab);
  double kl = 0;
  for (int j = 0; j < vocab; j++) {
    double log_p = reference[j] - log_z_p, log_q = logits[j] - log_z_q;
    kl += exp(log_p) * (log_p - log_q);
  }
  return kl > 0 ? kl : 0; /* rounding can make an exact match a hair negative */
}
