/* The fake quantizers of quantize.h for one element type; included by quantize.c once per type
 * after defining
 *   REAL      double or float
 *   NAME(x)   x with the type's suffix (x##_f64 or x##_f32)
 * Arithmetic is in double whatever REAL is. */

void NAME(fake_quant_symmetric)(REAL *x, size_t n, int bits, double clip) {
  if (bits == QUANT_OFF) return;
  const double qmax = symmetric_qmax(bits);
  double max_abs = 0;
  for (size_t i = 0; i < n; i++) max_abs = fmax(max_abs, fabs((double)x[i]));
  double scale = clip * max_abs / qmax;
  if (!(scale > 0)) return;
  for (size_t i = 0; i < n; i++) x[i] = (REAL)(scale * clamp(nearbyint(x[i] / scale), -qmax - 1, qmax));
}

void NAME(fake_quant_asymmetric)(REAL *x, size_t n, int bits, double clip) {
  if (bits == QUANT_OFF) return;
  const double qmax = (double)((1 << bits) - 1);
  double lo = 0, hi = 0; /* the range always holds 0, so that 0 is exact */
  for (size_t i = 0; i < n; i++) {
    lo = fmin(lo, (double)x[i]);
    hi = fmax(hi, (double)x[i]);
  }
  double scale = clip * (hi - lo) / qmax;
  if (!(scale > 0)) return;
  double zero = nearbyint(-clip * lo / scale);
  for (size_t i = 0; i < n; i++) x[i] = (REAL)(scale * (clamp(nearbyint(x[i] / scale) + zero, 0, qmax) - zero));
}

void NAME(quant_weight_rtn)(REAL *w, int rows, int cols, int bits, int group) {
  if (bits == QUANT_OFF) return;
  const int width = group > 0 ? group : cols;
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c += width) {
      size_t count = (size_t)(cols - c < width ? cols - c : width);
      NAME(fake_quant_symmetric)(w + (size_t)r * cols + c, count, bits, 1);
    }
}
