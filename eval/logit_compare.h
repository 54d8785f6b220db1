/* Agreement of two models' logits on the same tokens: how `rotq compare` and rotation
 * verification judge that a transformed checkpoint computes the same function. */
#ifndef ROTQ_EVAL_LOGIT_COMPARE_H
#define ROTQ_EVAL_LOGIT_COMPARE_H

#include "io/checkpoint.h"

typedef struct logit_diff {
  double max_abs_diff;  /* max |a − b|; infinite where either is NaN */
  double max_abs_logit; /* max |a| */
  double relative;      /* max_abs_diff / max_abs_logit */
  int argmax_agree;     /* rows whose argmax is the same */
  int rows;
} logit_diff;

/* Compares a and b, both [rows, vocab]. */
void logit_diff_compute(const double *a, const double *b, int rows, int vocab, logit_diff *out);

/* The tolerance on max|Δlogit| / max|logit| for a checkpoint whose weights are stored as t:
 * 1e-9 (f64), 1e-5 (f32), 5e-2 (16-bit weights are re-rounded after a rotation). */
double logit_tolerance(dtype t);
/* That of the dtype of most of the checkpoint's parameters. */
double checkpoint_logit_tolerance(const checkpoint *ck);

#endif
