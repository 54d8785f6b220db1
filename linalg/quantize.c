#include "linalg/quantize.h"

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

#include <string.h>

static const char *const format_names[] = {"int", "fp8", "mxfp4", "nvfp4"};

int quant_format_parse(const char *name, quant_format *f) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, format_names[i]) == 0) return *f = (quant_format)i, 0;
  return -1;
}

const char *quant_format_name(quant_format f) { return (unsigned)f < 4 ? format_names[f] : "?"; }

/* v rounded to nearest-even onto a binary float grid of `mantissa` fraction bits whose smallest
 * normal exponent is emin (below it, subnormals of step 2^(emin − mantissa)), saturating at max. */
static double float_grid_round(double v, int mantissa, int emin, double max) {
  if (v == 0 || isnan(v)) return v;
  double a = fabs(v);
  int e;
  frexp(a, &e); /* a = f·2^e, f in [0.5, 1): the leading bit is 2^(e−1) */
  int exponent = e - 1 < emin ? emin : e - 1;
  double step = ldexp(1.0, exponent - mantissa);
  double r = nearbyint(a / step) * step;
  return copysign(r > max ? max : r, v);
}

double fp8_e4m3_round(double v) { return float_grid_round(v, 3, -6, 448); }
double fp4_e2m1_round(double v) { return float_grid_round(v, 1, 0, 6); }

#define REAL double
#define NAME(x) x##_f64
#include "linalg/quantize_template.h"
#undef REAL
#undef NAME

#define REAL float
#define NAME(x) x##_f32
#include "linalg/quantize_template.h"
