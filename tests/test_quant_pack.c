/* eval/pack.h: rotq quantize's real quantization into compressed-tensors tensors. With float64
 * scales its dequantized weights are linalg/quantize.h's fake-quantized ones bit for bit (the same
 * RTN); the packed layouts are decoded here by hand (nibble i of a row in bits 4·(i mod 8) of
 * word i/8, stored as code + 8; zero points packed along the rows) and must give those codes; E4M3
 * encoding round-trips every finite byte; shapes that do not fit the scheme are refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/pack.h"
#include "io/dtype.h"
#include "linalg/quantize.h"
#include "linalg/rng.h"
#include "support/test_support.h"

enum { ROWS = 40, COLS = 64 }; /* 40 rows: a block of 32 and a partial one of 8 */

static void random_weight(double *w, size_t n, uint64_t seed) {
  rng g;
  rng_seed(&g, seed);
  for (size_t i = 0; i < n; i++) w[i] = rng_gaussian(&g) * 0.05;
  w[3] = 0; /* a zero, and a group of exact ties: scale 7·2^-4 / 7, x/scale = k + 0.5 */
  for (int i = 0; i < 16; i++) w[COLS + i] = (i == 0 ? 7 : (i % 8 - 3.5)) * 0x1p-4;
  for (int i = 0; i < 16; i++) w[2 * COLS + i] = 0; /* an all-zero group keeps its zeros */
}

/* Runs ct_quantize_rows on rows [0, ROWS) in blocks of CT_ROW_BLOCK, as the command does. */
static void quantize_all(const ct_scheme *s, const double *w, dtype t, void *weight, double *scale, int32_t *zero,
                         double *fake) {
  const int64_t groups = ct_groups(s, COLS);
  for (int64_t r0 = 0; r0 < ROWS; r0 += CT_ROW_BLOCK) {
    int64_t n = ROWS - r0 < CT_ROW_BLOCK ? ROWS - r0 : CT_ROW_BLOCK;
    assert_int_equal(ct_quantize_rows(s, w + r0 * COLS, n, COLS, t, 0, (char *)weight + ct_weight_bytes(s, r0, COLS),
                                      scale + r0 * groups, zero + r0 * s->bits / 32 * groups, fake + r0 * COLS),
                     0);
  }
}

/* The b-bit unsigned value i of a densely packed little-endian word row. */
static int unpacked(const int32_t *words, int bits, int64_t i) {
  uint64_t bit = (uint64_t)i * (uint64_t)bits, word = (uint32_t)words[bit / 32];
  if (bit % 32 + (uint64_t)bits > 32) word |= (uint64_t)(uint32_t)words[bit / 32 + 1] << 32;
  return (int)((word >> (bit % 32)) & ((1u << bits) - 1));
}

/* OCP E4M3 byte → value (0x7F/0xFF are NaN). */
static double e4m3_value(int b) {
  int e = (b >> 3) & 15, m = b & 7;
  double v = e ? ldexp(1 + m / 8.0, e - 7) : ldexp(m / 8.0, -6);
  return b & 0x80 ? -v : v;
}

static void check_symmetric(int group) {
  ct_scheme s;
  assert_int_equal(ct_scheme_parse("w4a16", group, false, &s), 0);
  double w[ROWS * COLS], fake[ROWS * COLS], scale[ROWS * COLS], expected[ROWS * COLS];
  int32_t packed[ROWS * COLS / 8], zero[ROWS * COLS];
  random_weight(w, ROWS * COLS, 1);
  quantize_all(&s, w, DTYPE_F64, packed, scale, zero, fake);
  memcpy(expected, w, sizeof w);
  quant_weight_rtn_f64(expected, ROWS, COLS, 4, group);
  const int64_t groups = COLS / group;
  for (int r = 0; r < ROWS; r++)
    for (int c = 0; c < COLS; c++) {
      size_t i = (size_t)r * COLS + c;
      assert_true(fake[i] == expected[i]); /* linalg/quantize.h's RTN, bit for bit (±0 aside) */
      int q = unpacked(packed + r * COLS / 8, 4, c) - 8;
      assert_true(q >= -8 && q <= 7);
      assert_true(q * scale[r * groups + c / group] == fake[i]);
      assert_true(unpacked(packed + r * COLS / 8, 4, c) == ((packed[r * COLS / 8 + c / 8] >> (4 * (c % 8))) & 15));
    }
  if (group == 16) assert_true(scale[2 * groups] == 0 && fake[2 * COLS] == 0); /* the zero group */
}

static void test_w4a16_symmetric(void **state) {
  check_symmetric(16);
  check_symmetric(64);
}

static void test_w4a16_asymmetric(void **state) {
  ct_scheme s;
  const int group = 16;
  assert_int_equal(ct_scheme_parse("W4A16", group, true, &s), 0);
  const int64_t groups = COLS / group;
  double w[ROWS * COLS], fake[ROWS * COLS], scale[ROWS * groups], expected[ROWS * COLS];
  int32_t packed[ROWS * COLS / 8], zero[(ROWS + 7) / 8 * groups];
  random_weight(w, ROWS * COLS, 2);
  quantize_all(&s, w, DTYPE_F64, packed, scale, zero, fake);
  memcpy(expected, w, sizeof w);
  for (int r = 0; r < ROWS; r++)
    for (int g = 0; g < groups; g++) fake_quant_asymmetric_f64(expected + r * COLS + g * group, group, 4, 1);
  for (int r = 0; r < ROWS; r++)
    for (int c = 0; c < COLS; c++) {
      size_t i = (size_t)r * COLS + c;
      assert_true(fake[i] == expected[i]);
      int q = unpacked(packed + r * COLS / 8, 4, c);
      /* zero points: column g of [⌈rows/8⌉, groups], packed along the rows */
      int32_t zero_column[(ROWS + 7) / 8];
      for (int k = 0; k < (ROWS + 7) / 8; k++) zero_column[k] = zero[k * groups + c / group];
      int z = unpacked(zero_column, 4, r);
      assert_true((q - z) * scale[r * groups + c / group] == fake[i]);
    }
}

static void test_w8a8_and_fp8(void **state) {
  ct_scheme s8, f8;
  assert_int_equal(ct_scheme_parse("W8A8", 0, false, &s8), 0);
  assert_int_equal(ct_scheme_parse("fp8", 0, false, &f8), 0);
  double w[ROWS * COLS], fake[ROWS * COLS], scale[ROWS], expected[ROWS * COLS];
  int8_t codes[ROWS * COLS];
  uint8_t bytes[ROWS * COLS];
  int32_t zero[ROWS * COLS];
  random_weight(w, ROWS * COLS, 3);
  quantize_all(&s8, w, DTYPE_F64, codes, scale, zero, fake);
  memcpy(expected, w, sizeof w);
  quant_weight_rtn_f64(expected, ROWS, COLS, 8, 0);
  for (int i = 0; i < ROWS * COLS; i++) {
    assert_true(fake[i] == expected[i]);
    assert_true(codes[i] * scale[i / COLS] == fake[i]);
  }
  quantize_all(&f8, w, DTYPE_F64, bytes, scale, zero, fake);
  memcpy(expected, w, sizeof w);
  quant_weight_rtn_format_f64(expected, ROWS, COLS, QUANT_FP8);
  for (int i = 0; i < ROWS * COLS; i++) {
    assert_true(fake[i] == expected[i]);
    assert_true(e4m3_value(bytes[i]) * scale[i / COLS] == fake[i]);
  }
}

/* v rounded to bfloat16. */
static double bf16_value(double v) {
  uint16_t bits;
  double r;
  dtype_from_f64(DTYPE_BF16, &v, &bits, 1);
  dtype_to_f64(DTYPE_BF16, &bits, &r, 1);
  return r;
}

/* The integer codes are round-half-even(x / scale) (+ zero point), clamped, bit for bit, computed
 * here by scalar division and nearbyint: with bf16 scales that are not powers of two, at exact
 * ties x = (k + ½)·scale and on 600 000 random values (W4A16 symmetric and asymmetric, W8A8). */
static void check_codes(const char *name, bool asymmetric, const double *w) {
  ct_scheme s;
  const int group = 16, bits = strcmp(name, "W8A8") ? 4 : 8;
  assert_int_equal(ct_scheme_parse(name, bits == 4 ? group : 0, asymmetric, &s), 0);
  const int64_t groups = ct_groups(&s, COLS), width = COLS / groups;
  double fake[ROWS * COLS], scale[ROWS * COLS];
  int32_t packed[ROWS * COLS], zero[ROWS * COLS];
  quantize_all(&s, w, DTYPE_BF16, packed, scale, zero, fake);
  const double lo = asymmetric ? 0 : -(1 << (bits - 1)), hi = asymmetric ? 15 : (1 << (bits - 1)) - 1;
  for (int r = 0; r < ROWS; r++)
    for (int c = 0; c < COLS; c++) {
      const int64_t g = r * groups + c / width;
      int code, z = 0;
      if (bits == 8) {
        code = ((const int8_t *)packed)[r * COLS + c];
      } else {
        code = unpacked(packed + r * COLS / 8, 4, c) - (asymmetric ? 0 : 8);
        if (asymmetric) {
          int32_t column[(ROWS + 7) / 8];
          for (int k = 0; k < (ROWS + 7) / 8; k++) column[k] = zero[k * groups + c / width];
          z = unpacked(column, 4, r);
        }
      }
      double q = scale[g] > 0 ? nearbyint(w[r * COLS + c] / scale[g]) + z : z;
      double expected = q < lo ? lo : q > hi ? hi : q;
      if (code != (int)expected)
        fail_msg("%s%s: row %d col %d: x %a scale %a: code %d, x / scale rounds to %g", name,
                 asymmetric ? " asymmetric" : "", r, c, w[r * COLS + c], scale[g], code, expected);
    }
}

/* ct_quantize_rows_bf16 (float division, straight from bfloat16) writes ct_quantize_rows' bytes. */
static void check_bf16_path(const char *name, int group, bool asymmetric, const double *w) {
  static uint16_t raw[ROWS * COLS];
  static unsigned char want[ROWS * COLS], got[ROWS * COLS];
  static double want_scale[ROWS * COLS], got_scale[ROWS * COLS];
  static int32_t want_zero[ROWS * COLS], got_zero[ROWS * COLS];
  ct_scheme s;
  assert_int_equal(ct_scheme_parse(name, group, asymmetric, &s), 0);
  static double exact[ROWS * COLS]; /* the values as the rows hold them: bfloat16 */
  dtype_from_f64(DTYPE_BF16, w, raw, ROWS * COLS);
  dtype_to_f64(DTYPE_BF16, raw, exact, ROWS * COLS);
  memset(want_zero, 0, sizeof want_zero), memset(got_zero, 0, sizeof got_zero);
  assert_int_equal(ct_quantize_rows(&s, exact, ROWS, COLS, DTYPE_BF16, 0, want, want_scale, want_zero, NULL), 0);
  assert_int_equal(ct_quantize_rows_bf16(&s, raw, ROWS, COLS, got, got_scale, got_zero), 0);
  const int64_t groups = ct_groups(&s, COLS);
  for (size_t i = 0; i < ct_weight_bytes(&s, ROWS, COLS); i++)
    if (want[i] != got[i]) fail_msg("%s group %d: byte %zu differs: %d vs %d", name, group, i, want[i], got[i]);
  if (memcmp(want_scale, got_scale, sizeof(double) * (size_t)(ROWS * groups)) != 0)
    fail_msg("%s group %d: scales differ", name, group);
  if (memcmp(want_zero, got_zero, sizeof want_zero) != 0) fail_msg("%s group %d: zero points differ", name, group);
}

static void test_codes_are_the_quotients_rounding(void **state) {
  static double w[ROWS * COLS];
  rng g;
  rng_seed(&g, 11);
  for (int round = 0; round < 240; round++) {
    for (int i = 0; i < ROWS * COLS; i++) /* bf16 values over several binades */
      w[i] = bf16_value(rng_gaussian(&g) * ldexp(1, (int)(rng_next(&g) % 9) - 6));
    if (round % 2 == 0) /* exact ties in every group: scale 0.30078125 (bf16 of 0.3), x/scale = k + 1/2 */
      for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLS; c++) {
          const double sc = 0.30078125 * ldexp(1, r % 5 - 2);
          const int k = c % 16;
          w[r * COLS + c] = k == 0 ? 7 * sc : (k % 14 - 7 + 0.5) * sc; /* amax 7·sc: W4A16's scale is sc */
        }
    check_codes("W4A16", false, w);
    check_codes("W4A16", true, w);
    check_codes("W8A8", false, w);
    check_bf16_path("W4A16", 16, false, w);
    check_bf16_path("W4A16", 16, true, w);
    check_bf16_path("W8A8", 0, false, w);
    if (round % 2 == 0) { /* exact ties of bfloat16 values: scale 0.375·2^e (two bits), x/scale = k + 1/2 */
      for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLS; c++) {
          const double sc = 0.375 * ldexp(1, r % 7 - 3);
          const int k = c % 16;
          w[r * COLS + c] = k == 0 ? 7 * sc : (k % 14 - 7 + 0.5) * sc; /* W4A16's scale is sc: amax 7·sc */
        }
      for (int i = 0; i < ROWS * COLS; i++) assert_true(bf16_value(w[i]) == w[i]);
      check_bf16_path("W4A16", 16, false, w);
      check_bf16_path("W4A16", 16, true, w);
      check_bf16_path("W8A8", 0, false, w);
    }
    if (round % 3 == 1) { /* values over 50 binades, tiny ones beside large ones in a group */
      for (int i = 0; i < ROWS * COLS; i++)
        w[i] = bf16_value(rng_gaussian(&g) * ldexp(1, (int)(rng_next(&g) % 50) - 40));
      check_bf16_path("W4A16", 16, false, w);
      check_bf16_path("W4A16", 16, true, w);
      check_bf16_path("W8A8", 0, false, w);
    }
  }
}

/* A stored bf16 scale: the codes use the rounded scale, and dequantize to code · scale exactly. */
static void test_scale_rounded_to_its_dtype(void **state) {
  ct_scheme s;
  assert_int_equal(ct_scheme_parse("W4A16", 16, false, &s), 0);
  double w[ROWS * COLS], fake[ROWS * COLS], scale[ROWS * 4];
  int32_t packed[ROWS * COLS / 8], zero[ROWS * COLS];
  random_weight(w, ROWS * COLS, 4);
  quantize_all(&s, w, DTYPE_BF16, packed, scale, zero, fake);
  for (int i = 0; i < ROWS * 4; i++) {
    unsigned char bf[2];
    double back;
    dtype_from_f64(DTYPE_BF16, &scale[i], bf, 1);
    dtype_to_f64(DTYPE_BF16, bf, &back, 1);
    assert_true(back == scale[i]);
  }
  for (int r = 0; r < ROWS; r++)
    for (int c = 0; c < COLS; c++)
      assert_true((unpacked(packed + r * COLS / 8, 4, c) - 8) * scale[r * 4 + c / 16] == fake[r * COLS + c]);
}

static void test_e4m3_encoding(void **state) {
  for (int b = 0; b < 256; b++) {
    if ((b & 0x7f) == 0x7f) continue;
    double v = e4m3_value(b);
    assert_true(fp8_e4m3_round(v) == v);
    assert_int_equal(ct_e4m3_encode(v), b);
  }
  assert_int_equal(ct_e4m3_encode(448), 0x7e);
  /* FP8 codes of values around every E4M3 grid point (ties, midpoints ± 1 ulp, subnormals,
   * saturation), through the packer's own rounding: the reference fp8_e4m3_round's, exactly. */
  ct_scheme f8;
  assert_int_equal(ct_scheme_parse("FP8", 0, false, &f8), 0);
  enum { N = 2048 };
  static double w[N], fake[N];
  uint8_t bytes[N];
  double scale;
  int32_t zero[1];
  int k = 0;
  w[k++] = 448; /* the row's amax: scale 1 */
  for (int b = 0; b < 126 && k + 8 <= N; b++) {
    double v = e4m3_value(b), next = e4m3_value(b + 1), mid = (v + next) / 2;
    double probes[] = {v, mid, nextafter(mid, 0), nextafter(mid, 1000), -mid, -v, v * 1.0000001};
    for (int p = 0; p < 7; p++) w[k++] = probes[p] > 448 ? 448 : probes[p];
  }
  assert_int_equal(ct_quantize_rows(&f8, w, 1, k, DTYPE_F64, 0, bytes, &scale, zero, fake), 0);
  assert_true(scale == 1);
  for (int i = 0; i < k; i++) assert_true(fake[i] == fp8_e4m3_round(w[i]));
}

/* NVFP4A16 codes through the packer's own E2M1 rounding: fp4_e2m1_round's at and around every
 * grid point and midpoint, and every nibble decodes to the value it stands for. */
static void test_nvfp4_rounding(void **state) {
  static const double grid[] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, 7, 12};
  ct_scheme nv;
  assert_int_equal(ct_scheme_parse("NVFP4A16", 0, false, &nv), 0);
  enum { N = 16 * 64 };
  static double w[N], fake[N], scale[N / 16];
  uint8_t packed[N / 2];
  int32_t zero[1];
  int k = 0;
  for (int g = 0; g + 1 < 10; g++) {
    double mid = (grid[g] + grid[g + 1]) / 2;
    double probes[] = {grid[g], mid, nextafter(mid, 0), nextafter(mid, 100), -mid, -grid[g], grid[g] * 1.01};
    for (int p = 0; p < 7; p++) w[k++] = probes[p];
  }
  while (k % 16) w[k++] = 0;
  for (int b = 0; b < k; b += 16) w[b + 15] = 6; /* every block's amax: block scale 1 with global 448 */
  const double amax = 448 * 6.0 / 448;           /* global scale 448 */
  assert_int_equal(ct_quantize_rows(&nv, w, 1, k, DTYPE_BF16, amax, packed, scale, zero, fake), 0);
  static const double magnitude[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  for (int i = 0; i < k; i++) {
    assert_true(scale[i / 16] == 448);
    int nibble = (packed[i / 2] >> (4 * (i % 2))) & 15;
    double q = (nibble & 8 ? -1 : 1) * magnitude[nibble & 7];
    assert_true(q == fp4_e2m1_round(w[i]));
    assert_true(fake[i] == q);
  }
  assert_true(ct_nvfp4_global_scale(6) == 448);
  assert_true(ct_nvfp4_global_scale(0) == 1);
}

static void test_schemes_and_shapes(void **state) {
  ct_scheme s;
  assert_int_equal(ct_scheme_parse("W3A16", 128, false, &s), -1);
  assert_int_equal(ct_scheme_parse("W8A8", 128, false, &s), -1); /* no groups */
  assert_int_equal(ct_scheme_parse("FP8", 0, true, &s), -1);     /* no zero points */
  assert_int_equal(ct_scheme_parse("W4A16", 0, false, &s), -1);
  assert_int_equal(ct_scheme_parse("W4A16", 128, true, &s), 0);
  assert_string_equal(ct_scheme_format(&s), "pack-quantized");
  ct_part_spec parts[CT_MAX_PARTS];
  assert_int_equal(ct_parts(&s, 256, 688, DTYPE_BF16, parts), -1); /* 688 = 5.375 · 128 */
  assert_int_equal(ct_parts(&s, 4096, 14336, DTYPE_BF16, parts), 4);
  assert_string_equal(parts[0].suffix, "weight_packed");
  assert_true(parts[0].shape[0] == 4096 && parts[0].shape[1] == 14336 / 8);
  assert_true(parts[1].shape[0] == 4096 && parts[1].shape[1] == 112 && parts[1].stored_dtype == NULL);
  assert_string_equal(parts[2].stored_dtype, "I64");
  assert_true(parts[3].shape[0] == 4096 / 8 && parts[3].shape[1] == 112);
  assert_int_equal(ct_scheme_parse("FP8", 0, false, &s), 0);
  assert_int_equal(ct_parts(&s, 10, 30, DTYPE_F16, parts), 2);
  assert_string_equal(parts[0].stored_dtype, "F8_E4M3");
  assert_true(parts[1].shape[0] == 10 && parts[1].shape[1] == 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_w4a16_symmetric),    cmocka_unit_test(test_w4a16_asymmetric),
      cmocka_unit_test(test_w8a8_and_fp8),       cmocka_unit_test(test_scale_rounded_to_its_dtype),
      cmocka_unit_test(test_e4m3_encoding),      cmocka_unit_test(test_nvfp4_rounding),
      cmocka_unit_test(test_schemes_and_shapes), cmocka_unit_test(test_codes_are_the_quotients_rounding),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
