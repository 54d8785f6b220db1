/* The fake quantizers (linalg/quantize.h), GPTQ (eval/gptq.h), the KL divergence (eval/kl.h)
 * and the outlier statistics' measures, on vectors and matrices with known answers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linalg/rng.h"
#include "eval/activation_stats.h"
#include "eval/gptq.h"
#include "eval/kl.h"
#include "linalg/quantize.h"
#include "support/test_support.h"

/* 4-bit symmetric RTN of a known vector: scale max/7, ties to even, codes in [-8, 7]. */
static void test_rtn_known_codes(void **state) {
  const double x[] = {0.875, -1.75, 0.4375, 0.125, 0.375}; /* exact in binary: scale 0.25 */
  int codes[5];
  double scale = quant_symmetric_codes(x, 5, 4, 1, codes);
  assert_true(scale == 0.25);
  const int expected[] = {4, -7, 2, 0, 2}; /* 3.5 → 4, 1.75 → 2, 0.5 → 0 (ties to even), 1.5 → 2 */
  for (int i = 0; i < 5; i++) assert_int_equal(codes[i], expected[i]);

  /* clipped: scale 0.5/7; 1 and -1 saturate at the asymmetric ends 7 and -8 */
  const double y[] = {1, -1, 0.25};
  scale = quant_symmetric_codes(y, 3, 4, 0.5, codes);
  assert_true(fabs(scale - 0.5 / 7) < 1e-15);
  assert_int_equal(codes[0], 7);
  assert_int_equal(codes[1], -8);
  assert_int_equal(codes[2], 4); /* 3.5 → 4 */

  /* the fake quantizer gives code · scale, in both types */
  double d[] = {0.875, -1.75, 0.4375, 0.125, 0.375};
  float f[] = {0.875f, -1.75f, 0.4375f, 0.125f, 0.375f};
  fake_quant_symmetric_f64(d, 5, 4, 1);
  fake_quant_symmetric_f32(f, 5, 4, 1);
  const double values[] = {1, -1.75, 0.5, 0, 0.5};
  for (int i = 0; i < 5; i++) assert_true(d[i] == values[i] && f[i] == (float)values[i]);
}

/* 8 bits: 2^7 − 1 = 127 levels each side. */
static void test_rtn_8_bits(void **state) {
  double x[256];
  for (int i = 0; i < 256; i++) x[i] = (i - 128) / 128.0;
  int codes[256];
  double scale = quant_symmetric_codes(x, 256, 8, 1, codes);
  assert_true(fabs(scale - 1.0 / 127) < 1e-15);
  assert_int_equal(codes[0], -127);
  assert_int_equal(codes[255], 126); /* 127/128 · 127 = 125.99 */
}

/* Asymmetric (KV): the range holds 0; zero point rounds; codes in [0, 2^b − 1]. */
static void test_asymmetric(void **state) {
  double x[] = {-1, 0.5, 2};
  fake_quant_asymmetric_f64(x, 3, 2, 1); /* scale 1, zero 1: codes 0, 1 (0.5 → 0, ties to even), 3 */
  assert_true(x[0] == -1 && x[1] == 0 && x[2] == 2);
  double y[] = {0.5, 1, 2, 3};           /* lo = 0: zero stays exact */
  fake_quant_asymmetric_f64(y, 4, 2, 1); /* scale 1, zero 0 */
  assert_true(y[0] == 0 && y[1] == 1 && y[2] == 2 && y[3] == 3);
  double z[] = {0, 0, 0};
  fake_quant_asymmetric_f64(z, 3, 4, 0.95);
  assert_true(z[0] == 0 && z[1] == 0 && z[2] == 0);
}

/* Bits 16 leave values untouched. */
static void test_off_is_exact(void **state) {
  double x[] = {0.123456789, -9.87654321, 1e-300};
  double y[3];
  memcpy(y, x, sizeof x);
  fake_quant_symmetric_f64(y, 3, QUANT_OFF, 0.9);
  fake_quant_asymmetric_f64(y, 3, QUANT_OFF, 0.95);
  quant_weight_rtn_f64(y, 1, 3, QUANT_OFF, 0);
  assert_memory_equal(x, y, sizeof x);
  assert_true(quant_bits_valid(2) && quant_bits_valid(8) && quant_bits_valid(16));
  assert_false(quant_bits_valid(1) || quant_bits_valid(9) || quant_bits_valid(0));
}

/* Per output channel, or per group of input columns (the last group shorter). */
static void test_weight_groups(void **state) {
  double w[] = {1,  0.5, 4,   -2,   3,  /* row 0 */
                -2, 1,   0.5, 0.25, 8}; /* row 1 */
  double g[10];
  memcpy(g, w, sizeof w);
  quant_weight_rtn_f64(g, 2, 5, 2, 2); /* 2 bits: codes −2..1, scale = group max */
  const double expected[] = {1, 0, 4, 0, 3, -2, 0, 0.5, 0, 8};
  for (int i = 0; i < 10; i++) assert_true(g[i] == expected[i]);
  memcpy(g, w, sizeof w);
  quant_weight_rtn_f64(g, 2, 5, 2, 0);                     /* one scale a row: 4 and 8 */
  const double per_row[] = {0, 0, 4, 0, 4, 0, 0, 0, 0, 8}; /* −2/4 = −0.5 → 0 (ties to even) */
  for (int i = 0; i < 10; i++) assert_true(g[i] == per_row[i]);
}

/* ‖X·(W − Q)ᵀ‖² over the calibration inputs X [n, cols]. */
static double output_error(const double *x, int n, const double *w, const double *q, int rows, int cols) {
  double total = 0;
  for (int t = 0; t < n; t++)
    for (int r = 0; r < rows; r++) {
      double e = 0;
      for (int c = 0; c < cols; c++) e += x[(size_t)t * cols + c] * (w[(size_t)r * cols + c] - q[(size_t)r * cols + c]);
      total += e * e;
    }
  return total;
}

/* Correlated inputs with uneven channel scales (as a layer's inputs are), a random weight. */
static void calibration_problem(int n, int rows, int cols, double *x, double *w, double *h) {
  rng g;
  rng_seed(&g, 7);
  double *mix = malloc(sizeof(double) * cols * cols);
  for (int i = 0; i < cols * cols; i++) mix[i] = rng_gaussian(&g) / sqrt(cols);
  for (int t = 0; t < n; t++) {
    double z[256];
    for (int c = 0; c < cols; c++) z[c] = rng_gaussian(&g) * (c % 7 == 0 ? 5 : 1);
    for (int c = 0; c < cols; c++) {
      double v = z[c];
      for (int k = 0; k < cols; k++) v += 0.5 * mix[(size_t)c * cols + k] * z[k];
      x[(size_t)t * cols + c] = v;
    }
  }
  for (int i = 0; i < rows * cols; i++) w[i] = rng_gaussian(&g) / sqrt(cols);
  for (int i = 0; i < cols; i++)
    for (int j = 0; j < cols; j++) {
      double s = 0;
      for (int t = 0; t < n; t++) s += x[(size_t)t * cols + i] * x[(size_t)t * cols + j];
      h[(size_t)i * cols + j] = s;
    }
  free(mix);
}

/* GPTQ beats RTN on the output error over its calibration data, in every mode; without groups
 * its values stay on RTN's grid (the row's scale, codes in [-8, 7]). */
static void test_gptq_beats_rtn(void **state) {
  enum { N = 512, ROWS = 48, COLS = 96 };
  double *x = malloc(sizeof(double) * N * COLS), *w = malloc(sizeof(double) * ROWS * COLS);
  double *h = malloc(sizeof(double) * COLS * COLS), *hc = malloc(sizeof(double) * COLS * COLS);
  double *rtn = malloc(sizeof(double) * ROWS * COLS), *q = malloc(sizeof(double) * ROWS * COLS);
  calibration_problem(N, ROWS, COLS, x, w, h);
  const gptq_options modes[] = {{4, 0, false, 0.01}, {4, 0, true, 0.01},  {4, 32, false, 0.01},
                                {4, 32, true, 0.01}, {3, 0, false, 0.01}, {8, 0, false, 0.01}};
  for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
    memcpy(rtn, w, sizeof(double) * ROWS * COLS);
    quant_weight_rtn_f64(rtn, ROWS, COLS, modes[m].bits, modes[m].group);
    memcpy(q, w, sizeof(double) * ROWS * COLS);
    memcpy(hc, h, sizeof(double) * COLS * COLS);
    rotq_error err;
    assert_int_equal(gptq_quantize(q, ROWS, COLS, hc, &modes[m], &err), 0);
    double e_rtn = output_error(x, N, w, rtn, ROWS, COLS), e_gptq = output_error(x, N, w, q, ROWS, COLS);
    if (!(e_gptq < 0.75 * e_rtn)) fail_msg("mode %zu: GPTQ error %g is not well below RTN's %g", m, e_gptq, e_rtn);
    if (modes[m].group == 0) {
      const double qmax = (1 << (modes[m].bits - 1)) - 1;
      for (int r = 0; r < ROWS; r++) {
        double max_abs = 0;
        for (int c = 0; c < COLS; c++) max_abs = fmax(max_abs, fabs(w[r * COLS + c]));
        for (int c = 0; c < COLS; c++) {
          double code = q[r * COLS + c] / (max_abs / qmax);
          assert_true(fabs(code - nearbyint(code)) < 1e-9 && code >= -qmax - 1 - 1e-9 && code <= qmax + 1e-9);
        }
      }
    }
  }
  free(x), free(w), free(h), free(hc), free(rtn), free(q);
}

/* A column never active (H diagonal 0) is zeroed; a non-positive-definite H is an error. */
static void test_gptq_dead_columns_and_errors(void **state) {
  double w[] = {1, 2, 3, 4};
  double h[] = {2, 0, 0, 0}; /* column 1 dead */
  rotq_error err;
  const gptq_options o = {4, 0, false, 0.01};
  assert_int_equal(gptq_quantize(w, 2, 2, h, &o, &err), 0);
  assert_true(w[1] == 0 && w[3] == 0);
  double w2[] = {1, 2};
  double bad[] = {1, 2, 2, 1}; /* indefinite; damping 0 cannot rescue it */
  const gptq_options undamped = {4, 0, false, 0};
  assert_int_equal(gptq_quantize(w2, 1, 2, bad, &undamped, &err), -1);
  assert_non_null(strstr(err.message, "positive definite"));
}

/* KL(p ‖ q) of known distributions; 0 for equal logits, also shifted. */
static void test_token_kl(void **state) {
  const double p[] = {0, 0}, q[] = {0, log(3)};
  assert_true(fabs(token_kl(p, q, 2) - 0.5 * log(4.0 / 3)) < 1e-15);
  const double a[] = {1, 2, 3}, b[] = {11, 12, 13};
  assert_true(token_kl(a, b, 3) < 1e-15);
  assert_true(token_kl(a, q, 2) > 0);
}

static void test_outlier_measures(void **state) {
  const double alternating[] = {1, -1, 1, -1};
  assert_true(fabs(kurtosis(alternating, 4) - 1) < 1e-15);
  double spike[64] = {0};
  spike[5] = 1; /* one dominant channel: kurtosis ≈ width */
  assert_true(kurtosis(spike, 64) > 60);
  const double v[] = {3, 1, 10, 2};
  assert_true(fabs(max_median_ratio(v, 4) - 4) < 1e-15);
  assert_int_equal(linear_input_from_name("down_proj"), 3);
  assert_int_equal(linear_input_from_name("nope"), -1);
}

/* The value of an E4M3 bit pattern (OCP FP8: bias 7, no infinity, S.1111.111 NaN). */
static double e4m3_value(unsigned bits) {
  int sign = bits >> 7, exponent = (bits >> 3) & 15, mantissa = bits & 7;
  double v = exponent ? ldexp(1 + mantissa / 8.0, exponent - 7) : ldexp(mantissa / 8.0, -6);
  return sign ? -v : v;
}

/* Every finite E4M3 and E2M1 value rounds to itself; midpoints go to the even neighbour; beyond
 * the largest value saturates. */
static void test_float_grids(void **state) {
  (void)state;
  for (unsigned b = 0; b < 256; b++) {
    if ((b & 0x7f) == 0x7f) continue; /* NaN */
    double v = e4m3_value(b);
    assert_true(fp8_e4m3_round(v) == v);
  }
  assert_true(fp8_e4m3_round(448) == 448 && fp8_e4m3_round(500) == 448 && fp8_e4m3_round(-1e9) == -448);
  assert_true(fp8_e4m3_round(1.0625) == 1.0);                     /* tie between 1 and 1.125: even */
  assert_true(fp8_e4m3_round(1.1875) == 1.25);                    /* tie between 1.125 and 1.25: even */
  assert_true(fp8_e4m3_round(ldexp(1, -10)) == 0);                /* half the smallest subnormal */
  assert_true(fp8_e4m3_round(3 * ldexp(1, -10)) == ldexp(1, -8)); /* 1.5 subnormal steps → 2 */
  const double grid[] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  for (int i = 0; i < 8; i++) assert_true(fp4_e2m1_round(grid[i]) == grid[i] && fp4_e2m1_round(-grid[i]) == -grid[i]);
  const double from[] = {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 7, 100}, to[] = {0, 1, 1, 2, 2, 4, 4, 6, 6};
  for (int i = 0; i < 9; i++) assert_true(fp4_e2m1_round(from[i]) == to[i]);
}

static void test_mx_and_nv_blocks(void **state) {
  (void)state;
  /* MXFP4: block amax 31 → E8M0 scale 2^(4 − 2) = 4; 31/4 saturates at 6 → 24; 5/4 → 1.25 → 1 → 4 */
  double x[64];
  for (int i = 0; i < 64; i++) x[i] = i < 32 ? (i == 0 ? 31 : i == 1 ? 5 : 0) : 0.001 * (i - 32);
  fake_quant_format_f64(x, 64, QUANT_MXFP4, 0);
  assert_true(x[0] == 24 && x[1] == 4 && x[2] == 0);
  /* the second block has its own scale: amax 0.031 → 2^(−6 − 2); 0.001·k on the E2M1 grid of it */
  for (int i = 32; i < 64; i++) {
    double scale = ldexp(1, -8), want = scale * fp4_e2m1_round(0.001 * (i - 32) / scale);
    assert_true(fabs(x[i] - want) < 1e-15);
  }
  /* NVFP4: a block of equal values is exact (scale amax/6 is representable relative to the
   * per-tensor scale amax/(6·448): the E4M3 code is 448) */
  float y[32];
  for (int i = 0; i < 32; i++) y[i] = i < 16 ? 3.7f : -0.02f * (float)(i - 15);
  fake_quant_format_f32(y, 32, QUANT_NVFP4, 0);
  for (int i = 0; i < 16; i++) assert_true(fabsf(y[i] - 3.7f) < 1e-6f);
  /* FP8 per row: the largest magnitude is exact, the rest on the E4M3 grid of amax/448 */
  double z[3] = {-10, 1, 0.1};
  fake_quant_format_f64(z, 3, QUANT_FP8, 0);
  assert_true(z[0] == -10 && fabs(z[1] - 1) < 0.04 && fabs(z[2] - 0.1) < 0.004);
  quant_format f;
  assert_int_equal(quant_format_parse("nvfp4", &f), 0);
  assert_int_equal(f, QUANT_NVFP4);
  assert_int_equal(quant_format_parse("fp4", &f), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rtn_known_codes),
      cmocka_unit_test(test_rtn_8_bits),
      cmocka_unit_test(test_asymmetric),
      cmocka_unit_test(test_off_is_exact),
      cmocka_unit_test(test_weight_groups),
      cmocka_unit_test(test_gptq_beats_rtn),
      cmocka_unit_test(test_gptq_dead_columns_and_errors),
      cmocka_unit_test(test_token_kl),
      cmocka_unit_test(test_outlier_measures),
      cmocka_unit_test(test_float_grids),
      cmocka_unit_test(test_mx_and_nv_blocks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
