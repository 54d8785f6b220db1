/* The transform kernels on every instruction set this CPU has: equal to the Sylvester matrix
 * product (exactly, on integer inputs), and bitwise equal to each other on random inputs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linalg/fwht.h"
#include "linalg/rng.h"
#include "support/test_support.h"

static double *random_vector(size_t n, uint64_t seed) {
  rng g;
  rng_seed(&g, seed);
  double *x = malloc(sizeof *x * (n ? n : 1));
  for (size_t i = 0; i < n; i++) x[i] = rng_gaussian(&g);
  return x;
}

/* y = x·H_2^k with H[i][j] = (-1)^popcount(i&j), times scale first if given. */
static void naive_fwht(const double *x, const double *scale, double *y, int log_n) {
  size_t n = (size_t)1 << log_n;
  for (size_t j = 0; j < n; j++) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += (__builtin_parityll(i & j) ? -1 : 1) * x[i] * (scale ? scale[i] : 1);
    y[j] = sum;
  }
}

static void test_fwht_matches_sylvester(void **state) {
  (void)state;
  for (int isa = SIMD_GENERIC; isa <= (int)simd_best(); isa++) {
    const fwht_kernels *k = fwht_kernels_for((simd_isa)isa);
    for (int log_n = 0; log_n <= 12; log_n++) {
      size_t n = (size_t)1 << log_n;
      double *x = malloc(sizeof *x * n), *y = malloc(sizeof *y * n), *scale = malloc(sizeof *scale * n);
      float *xf = malloc(sizeof *xf * n);
      for (size_t i = 0; i < n; i++) {
        x[i] = (double)((i * 7919) % 23) - 11; /* small integers: every sum is exact */
        scale[i] = i % 3 ? 1.0 : -2.0;
        xf[i] = (float)x[i];
      }
      naive_fwht(x, scale, y, log_n);
      k->fwht_f64(x, log_n, scale);
      assert_memory_equal(x, y, sizeof *x * n);
      float *scale_f = malloc(sizeof *scale_f * n);
      for (size_t i = 0; i < n; i++) scale_f[i] = (float)scale[i];
      k->fwht_f32(xf, log_n, scale_f);
      for (size_t i = 0; i < n; i++) assert_true(xf[i] == (float)y[i]);
      free(x), free(y), free(scale), free(xf), free(scale_f);
    }
  }
}

/* columns: the transform of each column, with a row stride, scaled rows, any width. */
static void test_columns(void **state) {
  (void)state;
  for (int isa = SIMD_GENERIC; isa <= (int)simd_best(); isa++) {
    const fwht_kernels *k = fwht_kernels_for((simd_isa)isa);
    static const size_t widths[] = {1, 3, 8, 17, 64, 1000};
    for (size_t wi = 0; wi < sizeof widths / sizeof *widths; wi++)
      for (int log_n = 0; log_n <= 9; log_n += 3) {
        size_t n = (size_t)1 << log_n, width = widths[wi], ld = width + 5;
        double *a = random_vector(n * ld, 3), *scale = random_vector(n, 4), *expected = malloc(sizeof *a * n * ld);
        memcpy(expected, a, sizeof *a * n * ld);
        double *column = malloc(sizeof *column * n), *out = malloc(sizeof *out * n);
        for (size_t t = 0; t < width; t++) {
          for (size_t i = 0; i < n; i++) column[i] = a[i * ld + t];
          k->fwht_f64(column, log_n, scale);
          for (size_t i = 0; i < n; i++) expected[i * ld + t] = column[i];
        }
        k->columns_f64(a, log_n, width, ld, scale);
        assert_memory_equal(a, expected, sizeof *a * n * ld); /* the padding too */
        free(a), free(scale), free(expected), free(column), free(out);
      }
  }
}

/* Every instruction set gives the same bits as the portable one (f32 and f64). */
static void test_variants_agree(void **state) {
  (void)state;
  const fwht_kernels *generic = fwht_kernels_for(SIMD_GENERIC);
  for (int isa = SIMD_AVX2; isa <= (int)simd_best(); isa++) {
    const fwht_kernels *k = fwht_kernels_for((simd_isa)isa);
    for (int log_n = 0; log_n <= 13; log_n++) {
      size_t n = (size_t)1 << log_n;
      double *a = random_vector(n, 10 + log_n), *b = malloc(sizeof *a * n), *scale = random_vector(n, 99);
      float *af = malloc(sizeof *af * n), *bf = malloc(sizeof *bf * n), *scale_f = malloc(sizeof *scale_f * n);
      for (size_t i = 0; i < n; i++) af[i] = (float)a[i], scale_f[i] = (float)scale[i];
      memcpy(b, a, sizeof *a * n);
      memcpy(bf, af, sizeof *af * n);
      generic->fwht_f64(a, log_n, scale);
      k->fwht_f64(b, log_n, scale);
      assert_memory_equal(a, b, sizeof *a * n);
      generic->fwht_f32(af, log_n, scale_f);
      k->fwht_f32(bf, log_n, scale_f);
      assert_memory_equal(af, bf, sizeof *af * n);
      free(a), free(b), free(scale), free(af), free(bf), free(scale_f);
    }
  }
}

/* y = Hᵀ·x for a ±1 matrix, rows of x at a stride, against the plain sum in order (bitwise), on
 * every instruction set. */
static void test_sign_matrix(void **state) {
  (void)state;
  static const int orders[] = {1, 3, 12, 28, 172};
  static const size_t lengths[] = {1, 7, 16, 33, 64, 100};
  for (int isa = SIMD_GENERIC; isa <= (int)simd_best(); isa++) {
    const fwht_kernels *k = fwht_kernels_for((simd_isa)isa);
    for (size_t o = 0; o < sizeof orders / sizeof *orders; o++)
      for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
        int m = orders[o];
        size_t v = lengths[li], stride = v + 3;
        double *signs = malloc(sizeof *signs * (size_t)m * m), *x = random_vector((size_t)m * stride, 5);
        double *y = malloc(sizeof *y * (size_t)m * v), *expected = malloc(sizeof *y * (size_t)m * v);
        float *sf = malloc(sizeof *sf * (size_t)m * m), *xf = malloc(sizeof *xf * (size_t)m * stride),
              *yf = malloc(sizeof *yf * (size_t)m * v);
        for (int i = 0; i < m * m; i++) sf[i] = (float)(signs[i] = (i * 37 + i / m) % 5 < 2 ? -1.0 : 1.0);
        for (size_t i = 0; i < (size_t)m * stride; i++) xf[i] = (float)x[i];
        for (int i = 0; i < m; i++)
          for (size_t t = 0; t < v; t++) {
            double sum = 0;
            for (int l = 0; l < m; l++) sum += signs[i * m + l] * x[(size_t)l * stride + t];
            expected[(size_t)i * v + t] = sum;
          }
        k->sign_matrix_f64(signs, m, x, stride, y, v);
        assert_memory_equal(y, expected, sizeof *y * (size_t)m * v);
        k->sign_matrix_f32(sf, m, xf, stride, yf, v);
        for (size_t i = 0; i < (size_t)m * v; i++) assert_true(fabs(yf[i] - expected[i]) < 1e-4 * sqrt(m));
        free(signs), free(x), free(y), free(expected), free(sf), free(xf), free(yf);
      }
  }
}

static void test_public_entry_points(void **state) {
  (void)state;
  double x[8] = {1, 0, 0, 0, 0, 0, 0, 0}, c[2 * 4] = {1, 2, 0, 0, 0, 0, 0, 0};
  float xf[4] = {1, 2, 3, 4};
  fwht_f64(x, 3); /* e_0·H = the first row: all ones */
  for (int i = 0; i < 8; i++) assert_true(x[i] == 1.0);
  fwht_f32(xf, 2);
  assert_true(xf[0] == 10 && xf[1] == -2 && xf[2] == -4 && xf[3] == 0);
  fwht_columns_f64(c, 2, 2, 2); /* 4 × 2 with first row (1, 2): every row becomes (1, 2) */
  for (int i = 0; i < 4; i++) assert_true(c[2 * i] == 1 && c[2 * i + 1] == 2);
  float cf[2] = {3, 5};
  fwht_columns_f32(cf, 1, 1, 1);
  assert_true(cf[0] == 8 && cf[1] == -2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fwht_matches_sylvester), cmocka_unit_test(test_columns),
      cmocka_unit_test(test_variants_agree),         cmocka_unit_test(test_sign_matrix),
      cmocka_unit_test(test_public_entry_points),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
