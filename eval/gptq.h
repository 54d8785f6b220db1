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
#include <stdint.h>

#include "common/error.h"
#include "eval/pack.h"

typedef struct gptq_options {
  int bits;       /* 2..8 */
  int group;      /* input columns per scale; 0 = one scale per output channel (row) */
  bool act_order; /* quantize the columns of largest H diagonal first */
  double damp;    /* relative damping of H (the reference's percdamp, e.g. 0.01) */
} gptq_options;

/* Quantizes w [rows, cols] in place (to its dequantized values) using hessian [cols, cols]
 * (symmetric, overwritten). Fails when the damped H is not positive definite. */
int gptq_quantize(double *w, int rows, int cols, double *hessian, const gptq_options *options, rotq_error *err);

/* GPTQ into what a compressed-tensors int scheme stores (W4A16 symmetric or asymmetric, W8A8;
 * eval/pack.h), the same algorithm with the format's quantizer: each group's scale (and zero point)
 * is eval/pack.h's RTN parameters of the group's current weights when its first column is reached
 * (W8A8: of the whole row before any column), the scale rounded to dtype t first (as it is
 * stored); the codes are computed with that stored scale (ct_int_code), and each column's error is
 * that of the value a decoder computes, (q − z)·scale rounded to t (ct_int_value). Out: codes
 * [rows, cols] (unsigned: signed code + 2^(b−1), or the asymmetric code), scale [rows, groups]
 * (rounded to t), zero [rows, groups] (unsigned; 2^(b−1) when symmetric), and w ← the decoded
 * values. No act_order. hessian as gptq_quantize (overwritten). */
int gptq_quantize_format(double *w, int rows, int cols, double *hessian, const ct_scheme *s, dtype t, double damp,
                         uint8_t *codes, double *scale, int *zero, rotq_error *err);

#endif
