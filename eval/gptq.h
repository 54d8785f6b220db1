/* GPTQ (Frantar et al., 2022) of one linear's weight: columns are quantized one at a time, and
 * each column's rounding error is spread over the columns not yet quantized, weighted by the
 * inverse Hessian of the layer's squared output error, H = Σ x·xᵀ over calibration inputs x. The
 * result minimises ‖X·Wᵀ − X·Qᵀ‖ far better than RTN. As in the reference code: columns whose
 * H diagonal is 0 (never active) are zeroed; H is damped by damp · mean(diag H); with act_order,
 * columns go in order of decreasing H diagonal; with groups, each group's scales come from the
 * group's weights at the moment its first column is reached; lazy batches of columns. */
#ifndef ROTQ_EVAL_GPTQ_H
#define ROTQ_EVAL_GPTQ_H

#include <stdbool.h>

#include "common/error.h"

typedef struct gptq_options {
  int bits;       /* 2..8 */
  int group;      /* input columns per scale; 0 = one scale per output channel (row) */
  bool act_order; /* quantize the columns of largest H diagonal first */
  double damp;    /* relative damping of H (the reference's percdamp, e.g. 0.01) */
} gptq_options;

/* Quantizes w [rows, cols] in place (to its dequantized values) using hessian [cols, cols]
 * (symmetric, overwritten). Fails when the damped H is not positive definite. */
int gptq_quantize(double *w, int rows, int cols, double *hessian, const gptq_options *options, rotq_error *err);

#endif
