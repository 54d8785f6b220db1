/* dtype: names and sizes, exact widening, and round-to-nearest-even narrowing checked against
 * known bit patterns and, exhaustively, against every f16/bf16 value and midpoint. */
#include "support/test_support.h"

#include <math.h>
#include <string.h>

#include "io/dtype.h"
#include "io/dtype_simd.h"

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

/* Values for the bulk conversions: ties and near-ties of bf16 and f16 at several scales, zeros,
 * subnormals, the largest finite values and beyond, infinities and NaNs, and plain random values,
 * mixed so that groups of 32 hold both the common and the rare cases. */
static size_t bulk_values(double *x, size_t cap) {
  uint64_t state = 0x9e3779b97f4a7c15ull;
  size_t n = 0;
  const double specials[] = {0.0,
                             -0.0,
                             0x1p-149,
                             0x1p-133,
                             0x1p-126,
                             -0x1p-127,
                             0x1.fep127,
                             0x1.ffp127,
                             1e39,
                             -1e39,
                             INFINITY,
                             -INFINITY,
                             NAN,
                             65504.0,
                             65520.0,
                             0x1p-24,
                             0x1p-25,
                             1 + 0x1p-8,
                             1 + 0x1p-8 + 0x1p-40,
                             1 + 3 * 0x1p-8,
                             1 + 0x1p-11,
                             1 + 3 * 0x1p-11};
  while (n < cap) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    double r = (double)(state >> 11) * 0x1p-53 - 0.5; /* (-0.5, 0.5) */
    if (n % 7 == 3) {
      x[n++] = specials[(state >> 7) % (sizeof specials / sizeof specials[0])];
    } else if (n % 5 == 1) { /* a bf16 tie (or one just beside it) at a random scale */
      double base = ldexp(1 + (double)((state >> 20) & 127) / 128, (int)((state >> 30) % 60) - 30);
      x[n++] = (base + ldexp(1, ilogb(base) - 8)) * (1 + ((state >> 40) % 3 == 0 ? 0x1p-45 : 0)) * (r < 0 ? -1 : 1);
    } else {
      x[n++] = r * ldexp(1, (int)((state >> 44) % 40) - 20);
    }
  }
  return n;
}

/* The bulk conversions (vectorized, 8, 16 or 32 at a time) give exactly what converting one
 * element at a time gives, for every dtype, with and without a fused scale, at odd lengths. */
static void bulk_matches_elementwise(void);

/* Every loop the CPU has (AVX512-BF16, AVX-512, generic), each against the element-wise conversion
 * (one element: always the generic tail). */
static void test_bulk_matches_elementwise(void **state) {
  (void)state;
  for (int level = DTYPE_SIMD_ALL; level >= DTYPE_SIMD_NONE; level--) {
    dtype_simd_cap((dtype_simd)level);
    bulk_matches_elementwise();
  }
  dtype_simd_cap(DTYPE_SIMD_ALL);
}

static void bulk_matches_elementwise(void) {
  enum { N = 4099 };
  static double x[N], scale[N], wide[N], plain[N], one_wide;
  static float xf[N], narrow_f[N], one_f;
  static unsigned char bulk[8 * N], single[8];
  bulk_values(x, N);
  for (size_t i = 0; i < N; i++) scale[i] = 1 + 0.2 * ((double)(i % 97) / 97 - 0.5), xf[i] = (float)x[i];
  for (int t = DTYPE_F64; t <= DTYPE_BF16; t++) {
    size_t size = dtype_size((dtype)t);
    dtype_from_f64((dtype)t, x, bulk, N); /* narrowing from double */
    for (size_t i = 0; i < N; i++) {
      dtype_from_f64((dtype)t, &x[i], single, 1);
      if (memcmp(bulk + i * size, single, size) != 0) fail_msg("dtype %d from f64: element %zu (%a)", t, i, x[i]);
    }
    dtype_from_f32((dtype)t, xf, bulk, N); /* narrowing from float */
    for (size_t i = 0; i < N; i++) {
      dtype_from_f32((dtype)t, &xf[i], single, 1);
      if (memcmp(bulk + i * size, single, size) != 0) fail_msg("dtype %d from f32: element %zu (%a)", t, i, x[i]);
    }
    dtype_to_f64((dtype)t, bulk, plain, N);              /* widening */
    dtype_to_f64_scaled((dtype)t, bulk, scale, wide, N); /* widening, with the scale fused */
    dtype_to_f32_scaled((dtype)t, bulk, scale, narrow_f, N);
    for (size_t i = 0; i < N; i++) {
      dtype_to_f64((dtype)t, bulk + i * size, &one_wide, 1);
      dtype_to_f32((dtype)t, bulk + i * size, &one_f, 1);
      if (memcmp(&plain[i], &one_wide, 8) != 0 && !(isnan(plain[i]) && isnan(one_wide)))
        fail_msg("dtype %d to f64: element %zu", t, i);
      double want = one_wide * scale[i];
      float want_f = (float)(one_f * scale[i]);
      if (memcmp(&wide[i], &want, 8) != 0 && !(isnan(wide[i]) && isnan(want)))
        fail_msg("dtype %d to f64 scaled: element %zu", t, i);
      if (memcmp(&narrow_f[i], &want_f, 4) != 0 && !(isnan(narrow_f[i]) && isnan(want_f)))
        fail_msg("dtype %d to f32 scaled: element %zu", t, i);
    }
    dtype_to_f32((dtype)t, bulk, narrow_f, N); /* widening to float */
    for (size_t i = 0; i < N; i++) {
      dtype_to_f32((dtype)t, bulk + i * size, &one_f, 1);
      if (memcmp(&narrow_f[i], &one_f, 4) != 0 && !(isnan(narrow_f[i]) && isnan(one_f)))
        fail_msg("dtype %d to f32: element %zu", t, i);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names_and_sizes),
      cmocka_unit_test(test_f16_known_values),
      cmocka_unit_test(test_f16_rounding),
      cmocka_unit_test(test_bf16_known_values_and_rounding),
      cmocka_unit_test(test_f32_from_f64),
      cmocka_unit_test(test_f16_exhaustive),
      cmocka_unit_test(test_bf16_exhaustive),
      cmocka_unit_test(test_unaligned_buffers),
      cmocka_unit_test(test_bulk_matches_elementwise),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
