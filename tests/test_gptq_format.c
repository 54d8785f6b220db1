/* eval/gptq.h's gptq_quantize_format (rotq quantize --method gptq) against an independent GPTQ
 * written here from the paper and the format's definition: the textbook column-by-column
 * algorithm (no lazy batches, its own Cholesky factorisations and triangular inverse, its own
 * round-to-bfloat16), the group's scale from the group's current weights when its first column is
 * reached (amax/7 or [min(x,0), max(x,0)]/15 with zero round(−lo/scale); W8A8 amax/127 of the row),
 * rounded to the stored dtype before the codes are computed, and each column's error that of the
 * decoded value (q − z)·scale rounded to the dtype.
 *
 * Tolerance, and why: the two compute the same quantities in different orders (rotq spreads the
 * errors of a batch of columns with one GEMM, the reference one column at a time; the inverse
 * Hessians come from LAPACK here and from the test's own loops there), so the updated weights
 * differ by a few ulps, and a weight that lands within those ulps of a rounding boundary may take
 * the neighbouring code; after such a flip both continue exactly, from slightly different
 * weights. So: the first group's scales (computed before any update) are equal bit for bit, at
 * least 99% of the codes and of the later scales are equal, no code differs by more than one, and
 * the output error tr((W−Q)·H·(W−Q)ᵀ) agrees within 1e-6 relative — and is well below RTN's.
 * Exact checks: with a diagonal Hessian (no error to spread) GPTQ is RTN, so its codes, scales
 * and zero points are eval/pack.h's ct_quantize_rows' bit for bit; the returned weights are
 * exactly (code − zero)·scale rounded to the dtype. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/gptq.h"
#include "eval/pack.h"
#include "linalg/rng.h"
#include "support/test_support.h"

enum { ROWS = 24, COLS = 64, SAMPLES = 256 };

/* v rounded to bfloat16 (8 significant bits, to nearest, ties to even); finite normal range only. */
static double ref_bf16(double v) {
  if (v == 0) return v;
  int e;
  double m = frexp(v, &e); /* |m| in [0.5, 1) */
  return ldexp(nearbyint(ldexp(m, 8)), e - 8);
}

static double ref_round(dtype t, double v) {
  if (t == DTYPE_BF16) return ref_bf16(v);
  if (t == DTYPE_F32) return (double)(float)v;
  return v;
}

/* h = Xᵀ·X of X [SAMPLES, COLS] with correlated columns (a random mix of a few directions). */
static void correlated_hessian(double *h, uint64_t seed) {
  rng g;
  rng_seed(&g, seed);
  double *x = malloc(sizeof(double) * SAMPLES * COLS);
  for (int s = 0; s < SAMPLES; s++) {
    double common[4];
    for (int k = 0; k < 4; k++) common[k] = rng_gaussian(&g);
    for (int c = 0; c < COLS; c++)
      x[s * COLS + c] = rng_gaussian(&g) * 0.3 + common[c % 4] + 0.5 * common[(c / 4) % 4] * (c % 3 == 0 ? 3 : 1);
  }
  for (int i = 0; i < COLS; i++)
    for (int j = 0; j < COLS; j++) {
      double sum = 0;
      for (int s = 0; s < SAMPLES; s++) sum += x[s * COLS + i] * x[s * COLS + j];
      h[i * COLS + j] = sum;
    }
  free(x);
}

static void random_weight(double *w, uint64_t seed) {
  rng g;
  rng_seed(&g, seed);
  for (int i = 0; i < ROWS * COLS; i++) w[i] = rng_gaussian(&g) * 0.02 + (i % 7 == 0 ? 0.01 : 0);
}

/* lower-triangular L with a = L·Lᵀ (a [n, n] symmetric positive definite) */
static void ref_cholesky(const double *a, int n, double *l) {
  memset(l, 0, sizeof(double) * n * n);
  for (int j = 0; j < n; j++) {
    double d = a[j * n + j];
    for (int k = 0; k < j; k++) d -= l[j * n + k] * l[j * n + k];
    l[j * n + j] = sqrt(d);
    for (int i = j + 1; i < n; i++) {
      double v = a[i * n + j];
      for (int k = 0; k < j; k++) v -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = v / l[j * n + j];
    }
  }
}

/* u upper triangular with inverse(h) = uᵀ·u: inverse(h) from L⁻¹, then its Cholesky factor. */
static void ref_inverse_upper(const double *h, int n, double *u) {
  double *l = malloc(sizeof(double) * n * n), *li = calloc((size_t)n * n, sizeof(double));
  double *inv = malloc(sizeof(double) * n * n);
  ref_cholesky(h, n, l);
  for (int c = 0; c < n; c++) /* column c of L⁻¹ by forward substitution */
    for (int i = c; i < n; i++) {
      double v = i == c ? 1 : 0;
      for (int k = c; k < i; k++) v -= l[i * n + k] * li[k * n + c];
      li[i * n + c] = v / l[i * n + i];
    }
  for (int i = 0; i < n; i++) /* h⁻¹ = L⁻ᵀ·L⁻¹ */
    for (int j = 0; j < n; j++) {
      double v = 0;
      for (int k = i > j ? i : j; k < n; k++) v += li[k * n + i] * li[k * n + j];
      inv[i * n + j] = v;
    }
  ref_cholesky(inv, n, l); /* inv = L·Lᵀ, so u = Lᵀ */
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) u[i * n + j] = j >= i ? l[j * n + i] : 0;
  free(l);
  free(li);
  free(inv);
}

/* The reference GPTQ: codes [ROWS, COLS] unsigned, scales/zeros [ROWS, groups]; w ← decoded. */
static void ref_gptq(double *w, const double *hessian, const ct_scheme *s, dtype t, double damp_ratio, int *codes,
                     double *scales, int *zeros) {
  const int group = s->group > 0 ? s->group : COLS, groups = COLS / group;
  const int offset = 1 << (s->bits - 1);
  double *h = malloc(sizeof(double) * COLS * COLS), *u = malloc(sizeof(double) * COLS * COLS);
  memcpy(h, hessian, sizeof(double) * COLS * COLS);
  double mean = 0;
  for (int i = 0; i < COLS; i++) mean += h[i * COLS + i] / COLS;
  for (int i = 0; i < COLS; i++) h[i * COLS + i] += damp_ratio * mean;
  ref_inverse_upper(h, COLS, u);
  for (int i = 0; i < COLS; i++) {
    const int g = i / group;
    if (i % group == 0)
      for (int r = 0; r < ROWS; r++) {
        double lo = 0, hi = 0;
        for (int c = i; c < i + group; c++) {
          lo = fmin(lo, w[r * COLS + c]);
          hi = fmax(hi, w[r * COLS + c]);
        }
        double scale, zero;
        if (s->symmetric) {
          scale = ref_round(t, fmax(hi, -lo) / (offset - 1));
          zero = offset;
        } else {
          scale = ref_round(t, (hi - lo) / ((1 << s->bits) - 1));
          zero = scale > 0 ? fmin(fmax(nearbyint(-lo / scale), 0), (1 << s->bits) - 1) : 0;
        }
        scales[r * groups + g] = scale;
        zeros[r * groups + g] = (int)zero;
      }
    for (int r = 0; r < ROWS; r++) {
      const double scale = scales[r * groups + g], zero = zeros[r * groups + g];
      double v = w[r * COLS + i], q;
      if (!(scale > 0))
        q = zero;
      else if (s->symmetric)
        q = fmin(fmax(nearbyint(v / scale), -offset), offset - 1) + offset;
      else
        q = fmin(fmax(nearbyint(v / scale) + zero, 0), (1 << s->bits) - 1);
      double decoded = ref_round(t, scale * (q - zero));
      double e = (v - decoded) / u[i * COLS + i];
      w[r * COLS + i] = decoded;
      codes[r * COLS + i] = (int)q;
      for (int j = i + 1; j < COLS; j++) w[r * COLS + j] -= e * u[i * COLS + j];
    }
  }
  free(h);
  free(u);
}

/* tr((W−Q)·H·(W−Q)ᵀ): the output error of Q on the calibration inputs. */
static double output_error(const double *w, const double *q, const double *h) {
  double total = 0;
  for (int r = 0; r < ROWS; r++)
    for (int i = 0; i < COLS; i++)
      for (int j = 0; j < COLS; j++)
        total += (w[r * COLS + i] - q[r * COLS + i]) * h[i * COLS + j] * (w[r * COLS + j] - q[r * COLS + j]);
  return total;
}

/* rotq's GPTQ; its returned weights checked to be the decoded codes exactly. */
static void rotq_gptq(const double *w0, const double *hessian, const ct_scheme *s, dtype t, double *w, uint8_t *codes,
                      double *scales, int *zeros) {
  const int groups = (int)ct_groups(s, COLS), width = COLS / groups;
  double *h = malloc(sizeof(double) * COLS * COLS);
  memcpy(h, hessian, sizeof(double) * COLS * COLS);
  memcpy(w, w0, sizeof(double) * ROWS * COLS);
  rotq_error err = {{0}};
  assert_int_equal(gptq_quantize_format(w, ROWS, COLS, h, s, t, 0.01, codes, scales, zeros, &err), 0);
  for (int i = 0; i < ROWS * COLS; i++) {
    int at = i / COLS * groups + i % COLS / width;
    assert_true(ref_round(t, scales[at]) == scales[at]);
    assert_true(w[i] == ref_round(t, scales[at] * (codes[i] - zeros[at])));
  }
  free(h);
}

static void compare_with_reference(const ct_scheme *s, dtype t) {
  const int groups = (int)ct_groups(s, COLS);
  double *w0 = malloc(sizeof(double) * ROWS * COLS), *h = malloc(sizeof(double) * COLS * COLS);
  double *w = malloc(sizeof(double) * ROWS * COLS), *ref_w = malloc(sizeof(double) * ROWS * COLS);
  double *rtn = malloc(sizeof(double) * ROWS * COLS);
  uint8_t *codes = malloc(ROWS * COLS);
  int *ref_codes = malloc(sizeof(int) * ROWS * COLS), *zeros = malloc(sizeof(int) * ROWS * groups),
      *ref_zeros = malloc(sizeof(int) * ROWS * groups);
  double *scales = malloc(sizeof(double) * ROWS * groups), *ref_scales = malloc(sizeof(double) * ROWS * groups);
  for (uint64_t seed = 1; seed <= 6; seed++) {
    random_weight(w0, seed);
    correlated_hessian(h, 100 + seed);
    rotq_gptq(w0, h, s, t, w, codes, scales, zeros);
    memcpy(ref_w, w0, sizeof(double) * ROWS * COLS);
    ref_gptq(ref_w, h, s, t, 0.01, ref_codes, ref_scales, ref_zeros);
    int same_codes = 0, same_scales = 0;
    for (int i = 0; i < ROWS * COLS; i++) {
      same_codes += codes[i] == ref_codes[i];
      assert_true(abs(codes[i] - ref_codes[i]) <= 1);
    }
    for (int i = 0; i < ROWS * groups; i++) {
      same_scales += scales[i] == ref_scales[i] && zeros[i] == ref_zeros[i];
      if (i % groups == 0) { /* the first group: from the weights before any update */
        assert_true(scales[i] == ref_scales[i]);
        assert_int_equal(zeros[i], ref_zeros[i]);
      }
    }
    assert_true(same_codes >= 0.99 * ROWS * COLS);
    assert_true(same_scales >= 0.99 * ROWS * groups);
    /* RTN of the same scheme, decoded: GPTQ must do far better on these inputs */
    uint8_t weight[ROWS * COLS * 4];
    double rtn_scales[ROWS * COLS];
    int32_t zero_words[ROWS * COLS];
    assert_int_equal(ct_quantize_rows(s, w0, ROWS, COLS, t, 0, weight, rtn_scales, zero_words, rtn), 0);
    for (int i = 0; i < ROWS * COLS; i++) rtn[i] = ref_round(t, rtn[i]);
    double e = output_error(w0, w, h), e_ref = output_error(w0, ref_w, h), e_rtn = output_error(w0, rtn, h);
    assert_true(fabs(e - e_ref) <= 1e-6 * e_ref);
    assert_true(e < 0.8 * e_rtn);
  }
  free(w0);
  free(h);
  free(w);
  free(ref_w);
  free(rtn);
  free(codes);
  free(ref_codes);
  free(zeros);
  free(ref_zeros);
  free(scales);
  free(ref_scales);
}

static void test_w4a16_symmetric_bf16(void **state) {
  (void)state;
  ct_scheme s;
  assert_int_equal(ct_scheme_parse("W4A16", 16, false, &s), 0);
  compare_with_reference(&s, DTYPE_BF16);
}

static void test_w4a16_asymmetric_bf16(void **state) {
  (void)state;
  ct_scheme s;
  assert_int_equal(ct_scheme_parse("W4A16", 32, true, &s), 0);
  compare_with_reference(&s, DTYPE_BF16);
}

static void test_w4a16_symmetric_f32(void **state) {
  (void)state;
  ct_scheme s;
  assert_int_equal(ct_scheme_parse("W4A16", 64, false, &s), 0);
  compare_with_reference(&s, DTYPE_F32);
}

static void test_w8a8_bf16(void **state) {
  (void)state;
  ct_scheme s;
  assert_int_equal(ct_scheme_parse("W8A8", 0, false, &s), 0);
  compare_with_reference(&s, DTYPE_BF16);
}

/* A diagonal Hessian spreads no error: GPTQ's codes, scales and zero points are RTN's, and so are
 * the packed bytes. */
static void diagonal_is_rtn(const ct_scheme *s, dtype t) {
  const int groups = (int)ct_groups(s, COLS);
  double w0[ROWS * COLS], w[ROWS * COLS], h[COLS * COLS] = {0}, scales[ROWS * COLS], rtn_scales[ROWS * COLS];
  double fake[ROWS * COLS];
  uint8_t codes[ROWS * COLS], weight[ROWS * COLS * 4], packed[ROWS * COLS * 4];
  int zeros[ROWS * COLS], u[COLS];
  int32_t zero_words[ROWS * COLS], packed_zeros[ROWS * COLS];
  random_weight(w0, 7);
  for (int i = 0; i < COLS; i++) h[i * COLS + i] = 1 + i % 5;
  rotq_gptq(w0, h, s, t, w, codes, scales, zeros);
  assert_int_equal(ct_quantize_rows(s, w0, ROWS, COLS, t, 0, weight, rtn_scales, zero_words, fake), 0);
  for (int r = 0; r < ROWS; r++) {
    for (int i = 0; i < COLS; i++) u[i] = codes[r * COLS + i];
    ct_pack_int_row(s, u, COLS, packed + ct_weight_bytes(s, r, COLS));
  }
  assert_memory_equal(packed, weight, ct_weight_bytes(s, ROWS, COLS));
  assert_memory_equal(scales, rtn_scales, sizeof(double) * ROWS * groups);
  for (int i = 0; i < ROWS * COLS; i++) assert_true(w[i] == ref_round(t, fake[i]));
  if (!s->symmetric) {
    assert_int_equal(ct_pack_zero_points(s, zeros, ROWS, groups, packed_zeros), 0);
    assert_memory_equal(packed_zeros, zero_words, sizeof(int32_t) * (ROWS * s->bits + 31) / 32 * groups);
  }
}

static void test_diagonal_hessian_is_rtn(void **state) {
  (void)state;
  ct_scheme s;
  assert_int_equal(ct_scheme_parse("W4A16", 16, false, &s), 0);
  diagonal_is_rtn(&s, DTYPE_BF16);
  assert_int_equal(ct_scheme_parse("W4A16", 32, true, &s), 0);
  diagonal_is_rtn(&s, DTYPE_BF16);
  diagonal_is_rtn(&s, DTYPE_F32);
  assert_int_equal(ct_scheme_parse("W8A8", 0, false, &s), 0);
  diagonal_is_rtn(&s, DTYPE_BF16);
}

static void test_refuses_float_schemes(void **state) {
  (void)state;
  ct_scheme s;
  assert_int_equal(ct_scheme_parse("FP8", 0, false, &s), 0);
  double w[ROWS * COLS] = {0}, h[COLS * COLS] = {0}, scales[ROWS];
  uint8_t codes[ROWS * COLS];
  int zeros[ROWS];
  rotq_error err = {{0}};
  assert_int_equal(gptq_quantize_format(w, ROWS, COLS, h, &s, DTYPE_BF16, 0.01, codes, scales, zeros, &err), -1);
  assert_non_null(strstr(err.message, "FP8"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_w4a16_symmetric_bf16),    cmocka_unit_test(test_w4a16_asymmetric_bf16),
      cmocka_unit_test(test_w4a16_symmetric_f32),     cmocka_unit_test(test_w8a8_bf16),
      cmocka_unit_test(test_diagonal_hessian_is_rtn), cmocka_unit_test(test_refuses_float_schemes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
