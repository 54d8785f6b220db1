#include "model/quantize.h"

#include <math.h>

bool quant_bits_valid(int bits) { return (bits >= 2 && bits <= 8) || bits == QUANT_OFF; }

/* Largest symmetric code: 2^(bits−1) − 1 (the smallest is −that − 1). */
static double symmetric_qmax(int bits) { return (double)((1 << (bits - 1)) - 1); }

static double clamp(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

double quant_symmetric_codes(const double *x, size_t n, int bits, double clip, int *codes) {
  const double qmax = symmetric_qmax(bits);
  double max_abs = 0;
  for (size_t i = 0; i < n; i++) max_abs = fmax(max_abs, fabs(x[i]));
  double scale = clip * max_abs / qmax;
  for (size_t i = 0; i < n; i++) codes[i] = scale > 0 ? (int)clamp(nearbyint(x[i] / scale), -qmax - 1, qmax) : 0;
  return scale;
}

#define REAL double
#define NAME(x) x##_f64
#include "model/quantize_template.h"
#undef REAL
#undef NAME

#define REAL float
#define NAME(x) x##_f32
#include "model/quantize_template.h"
