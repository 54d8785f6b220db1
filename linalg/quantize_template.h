/* The fake quantizers of quantize.h for one element type; included by quantize.c once per type
 * after defining
 *   REAL      double or float
 *   NAME(x)   x with the type's suffix (x##_f64 or x##_f32)
 * Arithmetic is in double whatever REAL is. */

/* max |x[0..n)| */
static double NAME(amax)(const REAL *x, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
  return m;
}

void NAME(fake_quant_symmetric)(REAL *x, size_t n, int bits, double clip) {
  if (bits == QUANT_OFF) return;
  const double qmax = symmetric_qmax(bits);
  double scale = clip * NAME(amax)(x, n) / qmax;
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

/* x[0..n) ← scale·round(x/scale) on the element grid of f (E4M3 for fp8, E2M1 for fp4). */
static void NAME(scaled_round)(REAL *x, size_t n, double scale, quant_format f) {
  if (!(scale > 0) || !isfinite(scale)) return;
  for (size_t i = 0; i < n; i++) {
    double q = (double)x[i] / scale;
    x[i] = (REAL)(scale * (f == QUANT_FP8 ? fp8_e4m3_round(q) : fp4_e2m1_round(q)));
  }
}

void NAME(fake_quant_format)(REAL *x, size_t n, quant_format f, double global_amax) {
  if (f == QUANT_FP8) {
    NAME(scaled_round)(x, n, NAME(amax)(x, n) / 448, f);
    return;
  }
  const size_t block = f == QUANT_MXFP4 ? 32 : 16;
  const double global = (global_amax > 0 ? global_amax : NAME(amax)(x, n)) / (6.0 * 448.0);
  for (size_t b = 0; b < n; b += block) {
    size_t count = n - b < block ? n - b : block;
    double m = NAME(amax)(x + b, count), scale;
    if (!(m > 0)) continue;
    if (f == QUANT_MXFP4) {
      int e;
      frexp(m, &e); /* ⌊log2 m⌋ = e − 1 */
      int shared = e - 1 - 2;
      shared = shared < -127 ? -127 : shared > 127 ? 127 : shared; /* E8M0's range */
      scale = ldexp(1.0, shared);
    } else {
      if (!(global > 0)) continue;
      scale = fp8_e4m3_round(m / 6.0 / global) * global;
      if (!(scale > 0)) { /* the block scale underflows E4M3: the block dequantizes to zeros */
        for (size_t i = 0; i < count; i++) x[b + i] = 0;
        continue;
      }
    }
    NAME(scaled_round)(x + b, count, scale, f);
  }
}

void NAME(quant_weight_rtn_format)(REAL *w, int rows, int cols, quant_format f) {
  const double global = f == QUANT_NVFP4 ? NAME(amax)(w, (size_t)rows * cols) : 0;
  for (int r = 0; r < rows; r++) NAME(fake_quant_format)(w + (size_t)r * cols, (size_t)cols, f, global);
}
