/* Tensor element types of safetensors checkpoints and exact conversions to/from float/double.
 * Narrowing conversions round to nearest, ties to even (NaN stays NaN, overflow goes to inf). */
#ifndef ROTQ_IO_DTYPE_H
#define ROTQ_IO_DTYPE_H

#include <stddef.h>

typedef enum dtype { DTYPE_F64, DTYPE_F32, DTYPE_F16, DTYPE_BF16 } dtype;

size_t dtype_size(dtype t);                  /* bytes per element */
const char *dtype_name(dtype t);             /* safetensors name: "F64", "F32", "F16", "BF16" */
int dtype_parse(const char *name, dtype *t); /* 0 if name is one of the above, else -1 */

/* n elements of type t at src → double/float at dst (exact for every source type). */
void dtype_to_f64(dtype t, const void *src, double *dst, size_t n);
void dtype_to_f32(dtype t, const void *src, float *dst, size_t n); /* F64 → F32 rounds (RNE) */
/* dtype_to_f64, then each element multiplied by scale[i] (one rounding: the conversion is exact);
 * for rows of up to a few thousand elements, which stay in the L1 cache in between. */
void dtype_to_f64_scaled(dtype t, const void *src, const double *scale, double *dst, size_t n);
/* n doubles/floats → type t at dst, one rounding (RNE). */
void dtype_from_f64(dtype t, const double *src, void *dst, size_t n);
void dtype_from_f32(dtype t, const float *src, void *dst, size_t n);

#endif
