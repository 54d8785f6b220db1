/* dtype: names and sizes, exact widening, and round-to-nearest-even narrowing checked against
 * known bit patterns and, exhaustively, against every f16/bf16 value and midpoint. */
#include "support/test_support.h"

#include <math.h>
#include <string.h>

#include "io/dtype.h"

static uint16_t f16_from_f64(double x) {
  uint16_t h;
  dtype_from_f64(DTYPE_F16, &x, &h, 1);
  return h;
}

static uint16_t f16_from_f32(float x) {
  uint16_t h;
  dtype_from_f32(DTYPE_F16, &x, &h, 1);
  return h;
}

static uint16_t bf16_from_f64(double x) {
  uint16_t b;
  dtype_from_f64(DTYPE_BF16, &x, &b, 1);
  return b;
}

static uint16_t bf16_from_f32(float x) {
  uint16_t b;
  dtype_from_f32(DTYPE_BF16, &x, &b, 1);
  return b;
}

static double f64_of(dtype t, uint16_t bits) {
  double d;
  dtype_to_f64(t, &bits, &d, 1);
  return d;
}

static float f32_of(dtype t, uint16_t bits) {
  float f;
  dtype_to_f32(t, &bits, &f, 1);
  return f;
}

static void test_names_and_sizes(void **state) {
  (void)state;
  const char *names[] = {"F64", "F32", "F16", "BF16"};
  const size_t sizes[] = {8, 4, 2, 2};
  for (int i = 0; i < 4; i++) {
    dtype t;
    assert_int_equal(dtype_parse(names[i], &t), 0);
    assert_string_equal(dtype_name(t), names[i]);
    assert_int_equal(dtype_size(t), sizes[i]);
  }
  dtype t;
  assert_int_equal(dtype_parse("I16", &t), -1); /* I8, I32, I64: compressed-tensors checkpoints */
  assert_int_equal(dtype_parse("I4", &t), -1);  /* a decoded type, never in a header */
  assert_int_equal(dtype_parse("f32", &t), -1);
  assert_int_equal(dtype_parse("", &t), -1);
}

/* Known f16 values: both directions, through double and float. */
static void test_f16_known_values(void **state) {
  (void)state;
  const struct {
    uint16_t bits;
    double value;
  } known[] = {
      {0x3c00, 1.0},        {0xc100, -2.5},     {0x7bff, 65504.0}, {0x0001, 0x1p-24},  {0x03ff, 1023 * 0x1p-24},
      {0x0400, 0x1p-14},    {0x8000, -0.0},     {0x0000, 0.0},     {0x7c00, INFINITY}, {0xfc00, -INFINITY},
      {0x3555, 0x1.554p-2}, {0x8001, -0x1p-24},
  };
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    assert_true(f64_of(DTYPE_F16, known[i].bits) == known[i].value);
    assert_true(f32_of(DTYPE_F16, known[i].bits) == (float)known[i].value);
    assert_int_equal(f16_from_f64(known[i].value), known[i].bits);
    assert_int_equal(f16_from_f32((float)known[i].value), known[i].bits);
  }
  assert_true(signbit(f64_of(DTYPE_F16, 0x8000)));
  assert_true(isnan(f64_of(DTYPE_F16, 0x7e00)));
  assert_true(isnan(f32_of(DTYPE_F16, 0xfd01)));
}

static void test_f16_rounding(void **state) {
  (void)state;
  /* ties to even at 1.0 (ulp 2^-10) */
  assert_int_equal(f16_from_f64(1 + 0x1p-11), 0x3c00);
  assert_int_equal(f16_from_f64(1 + 3 * 0x1p-11), 0x3c02);
  assert_int_equal(f16_from_f64(1 + 0x1p-11 + 0x1p-30), 0x3c01);
  assert_int_equal(f16_from_f32(1 + 0x1p-11f), 0x3c00);
  assert_int_equal(f16_from_f32(1 + 3 * 0x1p-11f), 0x3c02);
  /* one rounding from double: through float, 1 + 2^-11 + 2^-40 would become a tie and go down */
  assert_int_equal(f16_from_f64(1 + 0x1p-11 + 0x1p-40), 0x3c01);
  /* overflow: 65520 is the midpoint between 65504 (odd) and 2^16, so it goes to inf */
  assert_int_equal(f16_from_f64(65519.0), 0x7bff);
  assert_int_equal(f16_from_f64(65520.0), 0x7c00);
  assert_int_equal(f16_from_f64(-1e6), 0xfc00);
  assert_int_equal(f16_from_f32(3e38f), 0x7c00);
  assert_int_equal(f16_from_f64(1e300), 0x7c00);
  /* subnormals: half the smallest is a tie to 0; 1.5 of it is a tie to 2 */
  assert_int_equal(f16_from_f64(0x1p-25), 0x0000);
  assert_int_equal(f16_from_f64(0x1p-25 + 0x1p-40), 0x0001);
  assert_int_equal(f16_from_f64(3 * 0x1p-25), 0x0002);
  assert_int_equal(f16_from_f64(-0x1p-26), 0x8000);
  assert_int_equal(f16_from_f64(1e-300), 0x0000);
  assert_int_equal(f16_from_f64(4.9e-324), 0x0000); /* double subnormal */
  /* the largest subnormal rounds up into the smallest normal */
  assert_int_equal(f16_from_f64(0x1p-14 - 0x1p-26), 0x0400);
  /* NaN stays NaN */
  assert_true(isnan(f64_of(DTYPE_F16, f16_from_f64(NAN))));
  assert_true(isnan(f64_of(DTYPE_F16, f16_from_f32(-NAN))));
}

static uint16_t bf16_through_f32(double x) { return bf16_from_f32((float)x); }

/* Cases whose inputs are exact floats, so both conversions must give the same bits. */
static void check_bf16_rounding(uint16_t (*bf16)(double)) {
  assert_int_equal(bf16(1.0), 0x3f80);
  assert_int_equal(bf16(-2.5), 0xc020);
  assert_int_equal(bf16(1 + 0x1p-8), 0x3f80);     /* tie, down to even */
  assert_int_equal(bf16(1 + 3 * 0x1p-8), 0x3f82); /* tie, up to even */
  assert_int_equal(bf16(1 + 0x1p-8 + 0x1p-20), 0x3f81);
  assert_int_equal(bf16(0x1p-133), 0x0001);
  assert_int_equal(bf16(0x1p-134), 0x0000);     /* tie to 0 */
  assert_int_equal(bf16(3 * 0x1p-134), 0x0002); /* tie to 2 */
  assert_int_equal(bf16(0x1.ffp127), 0x7f80);   /* midpoint above the largest: inf */
  assert_int_equal(bf16(-0x1.fefp127), 0xff7f);
  assert_int_equal(bf16(INFINITY), 0x7f80);
  assert_true(isnan(f64_of(DTYPE_BF16, bf16(NAN))));
}

static void test_bf16_known_values_and_rounding(void **state) {
  (void)state;
  assert_true(f64_of(DTYPE_BF16, 0x3f80) == 1.0);
  assert_true(f64_of(DTYPE_BF16, 0xc020) == -2.5);
  assert_true(f64_of(DTYPE_BF16, 0x0001) == 0x1p-133);
  assert_true(f64_of(DTYPE_BF16, 0x7f7f) == 0x1.fep127);
  assert_true(f32_of(DTYPE_BF16, 0xff80) == -INFINITY);
  assert_true(isnan(f32_of(DTYPE_BF16, 0x7fc0)));
  check_bf16_rounding(bf16_from_f64);
  check_bf16_rounding(bf16_through_f32);
  assert_int_equal(bf16_from_f64(1e39), 0x7f80);
  assert_int_equal(bf16_from_f64(1 + 0x1p-8 + 0x1p-40), 0x3f81); /* one rounding from double */
}

static void test_f32_from_f64(void **state) {
  (void)state;
  const double in[] = {1 + 0x1p-24, 1 + 3 * 0x1p-24, 1e39, 0x1p-149, 0x1p-150, 3 * 0x1p-150, -2.5};
  const float expected[] = {1.0f, 1 + 0x1p-22f, INFINITY, 0x1p-149f, 0.0f, 0x1p-148f, -2.5f};
  uint32_t out_bits[7];
  dtype_from_f64(DTYPE_F32, in, out_bits, 7);
  for (int i = 0; i < 7; i++) {
    float f;
    memcpy(&f, &out_bits[i], 4);
    assert_true(f == expected[i]);
  }
  double nan = NAN;
  float f;
  dtype_from_f64(DTYPE_F32, &nan, &f, 1);
  assert_true(isnan(f));
}

/* Every 16-bit pattern: widening then narrowing gives it back (NaNs stay NaN), and every midpoint
 * between neighbouring values rounds to the even one (just above it: to the upper one). */
static void exhaustive(dtype t, uint16_t (*from_f64)(double), uint16_t (*from_f32)(float)) {
  for (uint32_t bits = 0; bits < 0x10000; bits++) {
    double d = f64_of(t, (uint16_t)bits);
    if (isnan(d)) {
      assert_true(isnan(f64_of(t, from_f64(d))));
      continue;
    }
    assert_true(f32_of(t, (uint16_t)bits) == (float)d);
    assert_int_equal(from_f64(d), bits);
    assert_int_equal(from_f32((float)d), bits);
    uint16_t next = (uint16_t)(bits + 1);
    if ((bits & 0x7fff) >= (t == DTYPE_F16 ? 0x7c00u : 0x7f80u) - 1) continue; /* next is inf/NaN */
    double midpoint = (d + f64_of(t, next)) / 2;
    uint16_t even = bits & 1 ? next : (uint16_t)bits;
    assert_int_equal(from_f64(midpoint), even);
    assert_int_equal(from_f32((float)midpoint), even); /* the midpoint is a float too */
    assert_int_equal(from_f64(nextafter(midpoint, 2 * midpoint)), next);
  }
}

static void test_f16_exhaustive(void **state) {
  (void)state;
  exhaustive(DTYPE_F16, f16_from_f64, f16_from_f32);
}

static void test_bf16_exhaustive(void **state) {
  (void)state;
  exhaustive(DTYPE_BF16, bf16_from_f64, bf16_from_f32);
}

/* Buffers inside a safetensors mapping can be unaligned; conversions must not care. */
static void test_unaligned_buffers(void **state) {
  (void)state;
  unsigned char raw[1 + 4 * 8];
  const double values[4] = {1.0, -2.5, 65504.0, 0x1p-24};
  for (int t = DTYPE_F64; t <= DTYPE_BF16; t++) {
    dtype_from_f64((dtype)t, values, raw + 1, 4);
    double back[4];
    dtype_to_f64((dtype)t, raw + 1, back, 4);
    float back32[4];
    dtype_to_f32((dtype)t, raw + 1, back32, 4);
    for (int i = 0; i < 4; i++) {
      double expected = t == DTYPE_BF16 && i == 2 ? 65536.0 : values[i]; /* 65504 rounds in bf16 */
      assert_true(back[i] == expected);
      assert_true(back32[i] == (float)expected);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names_and_sizes), cmocka_unit_test(test_f16_known_values),
      cmocka_unit_test(test_f16_rounding),    cmocka_unit_test(test_bf16_known_values_and_rounding),
      cmocka_unit_test(test_f32_from_f64),    cmocka_unit_test(test_f16_exhaustive),
      cmocka_unit_test(test_bf16_exhaustive), cmocka_unit_test(test_unaligned_buffers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
