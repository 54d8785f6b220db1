/* Fast Walsh–Hadamard transform: x ← x·H_2^k in Sylvester order (H[i][j] = (-1)^popcount(i&j),
 * symmetric), unnormalized (the caller scales by 2^(-k/2), usually fused with other work), in
 * place, O(n log n). Plus the other kernel of Hadamard rotations: a small ±1 matrix applied to
 * rows of a block. Vectorized for AVX-512 and AVX2 with a portable variant (see simd.h); every
 * variant gives bitwise the same result. Thread-safe: no state. */
#ifndef ROTQ_LINALG_FWHT_H
#define ROTQ_LINALG_FWHT_H

#include <stddef.h>

#include "linalg/simd.h"

/* Contiguous vectors of 2^log_n elements. */
void fwht_f64(double *x, int log_n);
void fwht_f32(float *x, int log_n);

/* Every column of a 2^log_n × width matrix with row stride ld (butterflies between rows, the
 * columns being the vector lanes): the transform of the rows of a block, or of strided data. */
void fwht_columns_f64(double *x, int log_n, size_t width, size_t ld);
void fwht_columns_f32(float *x, int log_n, size_t width, size_t ld);

/* One instruction set's kernels. fwht and columns first multiply element i (row i) by scale[i]
 * when scale is not NULL (the random signs and normalization of a rotation, fused into the first
 * pass). sign_matrix computes y = Hᵀ·x for an m × m ±1 matrix H given transposed as reals
 * (signs_t[i·m + l] = H[l][i]): x is m rows of v elements, row l at x + l·stride, y is m contiguous
 * rows of v elements (y[i] = Σ_l H[l][i]·x[l], summed in order of l); x and y must not overlap.
 * scale_rows multiplies row i (width elements, row stride ld) by scale[i], for i < count. */
typedef struct fwht_kernels {
  void (*fwht_f64)(double *x, int log_n, const double *scale);
  void (*fwht_f32)(float *x, int log_n, const float *scale);
  void (*columns_f64)(double *x, int log_n, size_t width, size_t ld, const double *scale);
  void (*columns_f32)(float *x, int log_n, size_t width, size_t ld, const float *scale);
  void (*sign_matrix_f64)(const double *signs_t, int m, const double *x, size_t stride, double *y, size_t v);
  void (*sign_matrix_f32)(const float *signs_t, int m, const float *x, size_t stride, float *y, size_t v);
  void (*scale_rows_f64)(double *x, size_t count, size_t width, size_t ld, const double *scale);
  void (*scale_rows_f32)(float *x, size_t count, size_t width, size_t ld, const float *scale);
} fwht_kernels;

/* The kernels of isa (which the CPU must support: see simd_best); the public functions above use
 * fwht_kernels_for(simd_best()). */
const fwht_kernels *fwht_kernels_for(simd_isa isa);

#endif
