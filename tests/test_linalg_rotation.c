/* Rotations: orthogonality in every mode and size models need, fast application against dense
 * products (f64 and f32, strided, segments, row groups), reproducibility, block-diagonal,
 * fallback, Kronecker, dense input, JSON. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "linalg/orthogonal.h"
#include "linalg/rng.h"
#include "linalg/rotation.h"
#include "support/test_support.h"

static rotation *make(int n, rotation_mode mode, uint64_t seed, int block_size) {
  rotq_error err;
  rotation *r = rotation_create(n, mode, seed, block_size, &err);
  if (!r) fail_msg("rotation_create(%d): %s", n, err.message);
  return r;
}

static double *dense_of(const rotation *r) {
  size_t n = (size_t)rotation_dim(r);
  double *d = malloc(sizeof *d * n * n);
  rotation_dense(r, d);
  return d;
}

static double *random_matrix(size_t count, uint64_t seed) {
  rng g;
  rng_seed(&g, seed);
  double *x = malloc(sizeof *x * count);
  for (size_t i = 0; i < count; i++) x[i] = rng_gaussian(&g);
  return x;
}

static double max_abs_difference(const double *a, const double *b, size_t count) {
  double worst = 0;
  for (size_t i = 0; i < count; i++) {
    double e = fabs(a[i] - b[i]);
    if (!(e <= worst)) worst = e;
  }
  return worst;
}

/* max |RᵀR − I| over the entries it checks. n ≤ 1024: all of them (R made dense). n ≤ 4864: R
 * built in chunks of rows (x·R applied to rows of the identity), the Gram entries of 50 columns
 * (first, last, random) against all columns. Larger n: the Gram matrix of 200 rows (first, last,
 * random), and norms preserved (‖x·R‖ = ‖x‖) for 4 random vectors, which involve every entry. */
static double orthogonality_check(const rotation *r) {
  size_t n = (size_t)rotation_dim(r);
  if (n <= 1024) {
    double *d = dense_of(r), e = orthogonality_error((int)n, d);
    free(d);
    return e;
  }
  size_t subset[200], count = n <= 4864 ? 50 : 200, chunk = n <= 4864 ? 256 : count;
  rng g;
  rng_seed(&g, n);
  subset[0] = 0;
  subset[1] = n - 1;
  for (size_t s = 2; s < count; s++) subset[s] = (size_t)(rng_uniform(&g) * (double)n);
  double *rows = malloc(sizeof *rows * chunk * n), *picked = malloc(sizeof *picked * chunk * count);
  double *gram = calloc(count * n, sizeof *gram), worst = 0;
  if (n <= 4864) {
    for (size_t c0 = 0; c0 < n; c0 += chunk) {
      size_t len = n - c0 < chunk ? n - c0 : chunk;
      memset(rows, 0, sizeof *rows * len * n);
      for (size_t i = 0; i < len; i++) rows[i * n + c0 + i] = 1.0;
      rotation_apply_rows_f64(r, rows, len, n, n); /* rows c0 .. c0+len of R */
      for (size_t i = 0; i < len; i++)
        for (size_t s = 0; s < count; s++) picked[i * count + s] = rows[i * n + subset[s]];
      /* gram[s][j] += Σ_i R[i][S_s]·R[i][j] */
      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)count, (int)n, (int)len, 1.0, picked, (int)count, rows,
                  (int)n, 1.0, gram, (int)n);
    }
    for (size_t s = 0; s < count; s++)
      for (size_t j = 0; j < n; j++) {
        double e = fabs(gram[s * n + j] - (j == subset[s]));
        if (!(e <= worst)) worst = e;
      }
  } else {
    memset(rows, 0, sizeof *rows * count * n);
    for (size_t s = 0; s < count; s++) rows[s * n + subset[s]] = 1.0;
    rotation_apply_rows_f64(r, rows, count, n, n); /* rows S of R */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)count, (int)count, (int)n, 1.0, rows, (int)n, rows,
                (int)n, 0.0, gram, (int)count);
    for (size_t s = 0; s < count; s++)
      for (size_t t = 0; t < count; t++) {
        double e = fabs(gram[s * count + t] - (subset[s] == subset[t]));
        if (!(e <= worst)) worst = e;
      }
    double *probe = random_matrix(4 * n, n);
    for (int p = 0; p < 4; p++) {
      double before = cblas_ddot((int)n, probe + p * n, 1, probe + p * n, 1);
      rotation_apply_rows_f64(r, probe + p * n, 1, n, n);
      double e = fabs(cblas_ddot((int)n, probe + p * n, 1, probe + p * n, 1) / before - 1);
      if (!(e <= worst)) worst = e;
    }
    free(probe);
  }
  free(rows), free(picked), free(gram);
  return worst;
}

static void test_orthogonal_in_every_mode(void **state) {
  (void)state;
  static const int sizes[] = {8, 64, 172, 896, 2816, 3584, 4864, 11008, 14336, 18944};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    for (int mode = ROTATION_BASE_HADAMARD; mode <= ROTATION_ORTHOGONAL; mode++) {
      if (mode == ROTATION_ORTHOGONAL && sizes[i] > 2816) continue; /* dense QR: O(n³) */
      rotation *r = make(sizes[i], (rotation_mode)mode, 42, 0);
      assert_false(rotation_is_fallback(r));
      double e = orthogonality_check(r);
      if (!(e < 1e-12)) fail_msg("%s of order %d: max |RᵀR - I| = %g", rotation_describe(r), sizes[i], e);
      rotation_free(r);
    }
  }
}

/* expected = W·blockdiag(R, …) per row (rows_mode) or blockdiag(Rᵀ, …)·W, by dense products. */
static void dense_reference(const double *rd, int n, const double *w, double *out, size_t rows, size_t cols, size_t ld,
                            int rows_mode) {
  memcpy(out, w, sizeof *out * rows * ld);
  if (rows_mode)
    for (size_t c0 = 0; c0 < cols; c0 += (size_t)n)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, n, n, 1.0, w + c0, (int)ld, rd, n, 0.0,
                  out + c0, (int)ld);
  else
    for (size_t g = 0; g < rows; g += (size_t)n)
      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, (int)cols, n, 1.0, rd, n, w + g * ld, (int)ld, 0.0,
                  out + g * ld, (int)ld);
}

/* apply_rows and apply_cols against the dense products, f64 (1e-12) and f32 (1e-5), with a row
 * stride larger than the row, several segments and several row groups; the padding is untouched. */
static void check_apply(const rotation *r) {
  int n = rotation_dim(r);
  double *rd = dense_of(r);
  for (int rows_mode = 0; rows_mode <= 1; rows_mode++) {
    size_t rows = rows_mode ? 5 : 3 * (size_t)n, cols = rows_mode ? 3 * (size_t)n : 37, ld = cols + 3;
    double *w = random_matrix(rows * ld, (uint64_t)n * 7 + rows_mode), *expected = malloc(sizeof *w * rows * ld),
           *got = malloc(sizeof *w * rows * ld);
    float *got32 = malloc(sizeof *got32 * rows * ld);
    dense_reference(rd, n, w, expected, rows, cols, ld, rows_mode);
    memcpy(got, w, sizeof *w * rows * ld);
    for (size_t i = 0; i < rows * ld; i++) got32[i] = (float)w[i];
    if (rows_mode) {
      rotation_apply_rows_f64(r, got, rows, cols, ld);
      rotation_apply_rows_f32(r, got32, rows, cols, ld);
    } else {
      rotation_apply_cols_f64(r, got, rows, cols, ld);
      rotation_apply_cols_f32(r, got32, rows, cols, ld);
    }
    double e = max_abs_difference(got, expected, rows * ld), e32 = 0;
    for (size_t i = 0; i < rows * ld; i++) {
      double d = fabs(got32[i] - expected[i]);
      if (!(d <= e32)) e32 = d;
    }
    if (!(e < 1e-12) || !(e32 < 1e-5))
      fail_msg("%s, %s: f64 error %g, f32 error %g", rotation_describe(r), rows_mode ? "rows" : "cols", e, e32);
    for (size_t i = 0; i < rows; i++)
      for (size_t j = cols; j < ld; j++)
        assert_true(got[i * ld + j] == w[i * ld + j] && got32[i * ld + j] == (float)w[i * ld + j]);
    free(w), free(expected), free(got), free(got32);
  }
  free(rd);
}

static void test_apply_matches_dense(void **state) {
  (void)state;
  static const int sizes[] = {1, 2, 8, 12, 64, 156, 172, 896};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
    for (int mode = ROTATION_BASE_HADAMARD; mode <= ROTATION_ORTHOGONAL; mode++) {
      rotation *r = make(sizes[i], (rotation_mode)mode, 7, 0);
      check_apply(r);
      rotation_free(r);
    }
  rotation *r = make(2816, ROTATION_HADAMARD, 7, 0);
  check_apply(r);
  rotation_free(r);
}

/* The two sides do the same arithmetic for Hadamard rotations: W·R row by row equals (Rᵀ·Wᵀ)ᵀ. */
static void test_rows_and_cols_agree_bitwise(void **state) {
  (void)state;
  static const size_t sizes[] = {688, 1792, 2048}; /* 172·4, 28·64, 2^11 */
  for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
    size_t n = sizes[si], rows = 9;
    rotation *r = make((int)n, ROTATION_HADAMARD, 3, 0);
    double *w = random_matrix(rows * n, 5), *t = malloc(sizeof *t * rows * n);
    for (size_t i = 0; i < rows; i++)
      for (size_t j = 0; j < n; j++) t[j * rows + i] = w[i * n + j];
    rotation_apply_rows_f64(r, w, rows, n, n);
    rotation_apply_cols_f64(r, t, n, rows, rows);
    for (size_t i = 0; i < rows; i++)
      for (size_t j = 0; j < n; j++) assert_memory_equal(&w[i * n + j], &t[j * rows + i], sizeof(double));
    free(w), free(t);
    rotation_free(r);
  }
}

static void test_seeds(void **state) {
  (void)state;
  for (int mode = ROTATION_BASE_HADAMARD; mode <= ROTATION_ORTHOGONAL; mode++) {
    rotation *a = make(172, (rotation_mode)mode, 11, 0), *b = make(172, (rotation_mode)mode, 11, 0),
             *c = make(172, (rotation_mode)mode, 12, 0);
    double *da = dense_of(a), *db = dense_of(b), *dc = dense_of(c);
    assert_memory_equal(da, db, sizeof *da * 172 * 172);
    int differ = memcmp(da, dc, sizeof *da * 172 * 172) != 0;
    assert_int_equal(differ, mode != ROTATION_BASE_HADAMARD); /* base_hadamard ignores the seed */
    free(da), free(db), free(dc);
    rotation_free(a), rotation_free(b), rotation_free(c);
  }
}

/* The Haar matrix does not depend on how many threads OpenBLAS uses. */
static void test_orthogonal_independent_of_blas_threads(void **state) {
  (void)state;
  int before = openblas_get_num_threads();
  openblas_set_num_threads(1);
  rotation *a = make(600, ROTATION_ORTHOGONAL, 99, 0);
  openblas_set_num_threads(2);
  rotation *b = make(600, ROTATION_ORTHOGONAL, 99, 0);
  openblas_set_num_threads(before);
  double *da = dense_of(a), *db = dense_of(b);
  assert_memory_equal(da, db, sizeof *da * 600 * 600);
  free(da), free(db);
  rotation_free(a), rotation_free(b);
}

static void test_block_size(void **state) {
  (void)state;
  rotation *r = make(256, ROTATION_HADAMARD, 5, 64), *block = make(64, ROTATION_HADAMARD, 5, 0);
  assert_int_equal(rotation_dim(r), 256);
  assert_non_null(strstr(rotation_describe(r), "block-diagonal, 4 blocks"));
  double *d = dense_of(r), *b = dense_of(block);
  for (int i = 0; i < 256; i++)
    for (int j = 0; j < 256; j++) {
      double want = i / 64 == j / 64 ? b[(i % 64) * 64 + j % 64] : 0.0;
      assert_true(d[i * 256 + j] == want);
    }
  free(d), free(b);
  check_apply(r);
  rotation_free(r), rotation_free(block);
  rotq_error err;
  assert_null(rotation_create(256, ROTATION_HADAMARD, 5, 48, &err));
  assert_non_null(strstr(err.message, "block_size 48"));
  assert_null(rotation_create(256, ROTATION_HADAMARD, 5, 512, &err));
  assert_null(rotation_create(96, ROTATION_HADAMARD, 5, 64, &err));
  r = make(96, ROTATION_HADAMARD, 5, 96); /* block_size n is the full rotation */
  assert_null(strstr(rotation_describe(r), "block"));
  rotation_free(r);
}

static void test_fallback(void **state) {
  (void)state;
  static const int sizes[] = {428, 428 * 8, 7, 6, 13696};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
    for (int mode = ROTATION_BASE_HADAMARD; mode <= ROTATION_HADAMARD; mode++) {
      rotation *r = make(sizes[i], (rotation_mode)mode, 1, 0);
      assert_true(rotation_is_fallback(r));
      assert_non_null(strstr(rotation_describe(r), "fallback"));
      double e = orthogonality_check(r);
      if (!(e < 1e-12)) fail_msg("%s: max |RᵀR - I| = %g", rotation_describe(r), e);
      if (sizes[i] <= 428) check_apply(r);
      cJSON *j = rotation_to_json(r);
      assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "fallback")));
      cJSON_Delete(j);
      rotation_free(r);
    }
  rotation *r = make(428, ROTATION_ORTHOGONAL, 1, 0); /* a dense Haar matrix is never a fallback */
  assert_false(rotation_is_fallback(r));
  rotation_free(r);
}

/* x·(A ⊗ B) against the dense Kronecker product. */
static void test_kronecker(void **state) {
  (void)state;
  rotq_error err;
  rotation *a = make(12, ROTATION_HADAMARD, 1, 0), *b = make(20, ROTATION_ORTHOGONAL, 2, 0);
  double *da = dense_of(a), *db = dense_of(b);
  rotation *k = rotation_kronecker(a, b, &err);
  assert_non_null(k);
  assert_int_equal(rotation_dim(k), 240);
  double *dk = dense_of(k);
  double worst = 0;
  for (int i = 0; i < 240; i++)
    for (int j = 0; j < 240; j++) {
      double e = fabs(dk[i * 240 + j] - da[(i / 20) * 12 + j / 20] * db[(i % 20) * 20 + j % 20]);
      if (e > worst) worst = e;
    }
  assert_true(worst < 1e-14);
  check_apply(k);
  cJSON *j = rotation_to_json(k);
  assert_string_equal(cJSON_GetObjectItem(j, "mode")->valuestring, "kronecker");
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "parts")), 2);
  cJSON_Delete(j);
  free(da), free(db), free(dk);
  rotation_free(k);
  /* nested, with a fallback inside */
  k = rotation_kronecker(make(6, ROTATION_HADAMARD, 3, 0), make(8, ROTATION_BASE_HADAMARD, 0, 0), &err);
  assert_true(rotation_is_fallback(k));
  k = rotation_kronecker(k, make(2, ROTATION_HADAMARD, 4, 0), &err);
  assert_non_null(k);
  check_apply(k);
  rotation_free(k);
}

static void test_from_dense(void **state) {
  (void)state;
  rotq_error err;
  rotation *src = make(36, ROTATION_ORTHOGONAL, 8, 0);
  double *d = dense_of(src);
  rotation *r = rotation_from_dense(36, d, 1e-12, &err);
  assert_non_null(r);
  double *again = dense_of(r);
  assert_true(max_abs_difference(d, again, 36 * 36) < 1e-15);
  check_apply(r);
  cJSON *j = rotation_to_json(r);
  assert_string_equal(cJSON_GetObjectItem(j, "mode")->valuestring, "dense");
  cJSON_Delete(j);
  rotation_free(r);
  d[5] += 1e-6;
  assert_null(rotation_from_dense(36, d, 1e-9, &err));
  assert_non_null(strstr(err.message, "not orthogonal"));
  free(d), free(again);
  rotation_free(src);
}

static void test_json_and_names(void **state) {
  (void)state;
  rotation_mode mode;
  assert_int_equal(rotation_mode_parse("hadamard", &mode), 0);
  assert_int_equal(mode, ROTATION_HADAMARD);
  assert_int_equal(rotation_mode_parse("base_hadamard", &mode), 0);
  assert_int_equal(mode, ROTATION_BASE_HADAMARD);
  assert_int_equal(rotation_mode_parse("orthogonal", &mode), 0);
  assert_int_equal(mode, ROTATION_ORTHOGONAL);
  assert_int_equal(rotation_mode_parse("random", &mode), -1);
  assert_int_equal(rotation_mode_parse(NULL, &mode), -1);

  rotation *r = make(11008, ROTATION_HADAMARD, UINT64_MAX, 0);
  assert_string_equal(rotation_describe(r), "random Hadamard H_172 (Williamson) ⊗ H_64 (Sylvester)");
  cJSON *j = rotation_to_json(r);
  char *text = cJSON_PrintUnformatted(j);
  assert_non_null(strstr(text, "\"seed\":\"18446744073709551615\"")); /* a decimal string: exact */
  assert_non_null(strstr(text, "\"factors\":[172,64]"));
  assert_string_equal(cJSON_GetObjectItem(j, "mode")->valuestring, "hadamard");
  assert_int_equal(cJSON_GetObjectItem(j, "dim")->valueint, 11008);
  assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "fallback")));
  assert_int_equal(cJSON_GetObjectItem(j, "block_size")->valueint, 0);
  assert_string_equal(cJSON_GetObjectItem(j, "construction")->valuestring, rotation_describe(r));
  free(text);
  cJSON_Delete(j);
  rotation_free(r);

  r = make(4096, ROTATION_BASE_HADAMARD, 0, 128);
  j = rotation_to_json(r);
  assert_int_equal(cJSON_GetObjectItem(j, "block_size")->valueint, 128);
  assert_string_equal(cJSON_GetObjectItem(j, "mode")->valuestring, "base_hadamard");
  cJSON_Delete(j);
  rotation_free(r);

  rotq_error err;
  assert_null(rotation_create(0, ROTATION_HADAMARD, 0, 0, &err));
  assert_non_null(strstr(err.message, "order 0"));
}

/* base_hadamard of order 2^k is the normalized Sylvester matrix (what vLLM's kernel computes). */
static void test_base_hadamard_is_sylvester(void **state) {
  (void)state;
  rotation *r = make(128, ROTATION_BASE_HADAMARD, 9, 0);
  double *d = dense_of(r);
  for (int i = 0; i < 128; i++)
    for (int j = 0; j < 128; j++) assert_true(d[i * 128 + j] == (__builtin_parity(i & j) ? -1.0 : 1.0) / sqrt(128.0));
  free(d);
  rotation_free(r);
}

typedef struct job {
  const rotation *r;
  double *w;
  size_t rows, cols, ld;
} job;

static void *apply_job(void *arg) {
  job *j = arg;
  rotation_apply_cols_f64(j->r, j->w, j->rows, j->cols, j->ld);
  return NULL;
}

/* Two threads on disjoint column ranges give what one call gives. */
static void test_concurrent_calls(void **state) {
  (void)state;
  rotation *r = make(896, ROTATION_HADAMARD, 2, 0);
  size_t rows = 896, cols = 200;
  double *w = random_matrix(rows * cols, 1), *alone = malloc(sizeof *w * rows * cols);
  memcpy(alone, w, sizeof *w * rows * cols);
  rotation_apply_cols_f64(r, alone, rows, cols, cols);
  job jobs[2] = {{r, w, rows, 77, cols}, {r, w + 77, rows, cols - 77, cols}};
  pthread_t thread;
  assert_int_equal(pthread_create(&thread, NULL, apply_job, &jobs[1]), 0);
  apply_job(&jobs[0]);
  pthread_join(thread, NULL);
  assert_memory_equal(w, alone, sizeof *w * rows * cols);
  free(w), free(alone);
  rotation_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_orthogonal_in_every_mode),
      cmocka_unit_test(test_apply_matches_dense),
      cmocka_unit_test(test_rows_and_cols_agree_bitwise),
      cmocka_unit_test(test_seeds),
      cmocka_unit_test(test_orthogonal_independent_of_blas_threads),
      cmocka_unit_test(test_block_size),
      cmocka_unit_test(test_fallback),
      cmocka_unit_test(test_kronecker),
      cmocka_unit_test(test_from_dense),
      cmocka_unit_test(test_json_and_names),
      cmocka_unit_test(test_base_hadamard_is_sylvester),
      cmocka_unit_test(test_concurrent_calls),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
