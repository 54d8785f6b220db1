/* The seeded generator: its bit stream is fixed (golden values from an independent
 * implementation of splitmix64 + xoshiro256**), and its distributions look right. */
#include <math.h>

#include "linalg/rng.h"
#include "support/test_support.h"

static void test_golden_stream(void **state) {
  (void)state;
  rng g;
  rng_seed(&g, 0);
  assert_true(rng_next(&g) == 0x99ec5f36cb75f2b4ULL);
  assert_true(rng_next(&g) == 0xbf6e1f784956452aULL);
  assert_true(rng_next(&g) == 0x1a5f849d4933e6e0ULL);
  rng_seed(&g, 42);
  assert_true(rng_next(&g) == 0x15780b2e0c2ec716ULL);
  assert_true(rng_next(&g) == 0x6104d9866d113a7eULL);
  assert_true(rng_next(&g) == 0xae17533239e499a1ULL);
}

static void test_seeds_differ_and_repeat(void **state) {
  (void)state;
  rng a, b, c;
  rng_seed(&a, 7);
  rng_seed(&b, 7);
  rng_seed(&c, 8);
  int same = 1, differ = 0;
  for (int i = 0; i < 100; i++) {
    double x = rng_gaussian(&a), y = rng_gaussian(&b), z = rng_gaussian(&c);
    same &= x == y;
    differ |= x != z;
  }
  assert_true(same);
  assert_true(differ);
}

static void test_distributions(void **state) {
  (void)state;
  rng g;
  rng_seed(&g, 1);
  const int count = 200000;
  double sum = 0, squares = 0, fourth = 0, uniform_sum = 0, signs = 0;
  for (int i = 0; i < count; i++) {
    double u = rng_uniform(&g);
    assert_true(u >= 0.0 && u < 1.0);
    uniform_sum += u;
    double z = rng_gaussian(&g);
    sum += z;
    squares += z * z;
    fourth += z * z * z * z;
    double s = rng_sign(&g);
    assert_true(s == 1.0 || s == -1.0);
    signs += s;
  }
  assert_true(fabs(uniform_sum / count - 0.5) < 0.005);
  assert_true(fabs(sum / count) < 0.01);
  assert_true(fabs(squares / count - 1.0) < 0.02);
  assert_true(fabs(fourth / count - 3.0) < 0.1); /* the Gaussian kurtosis */
  assert_true(fabs(signs / count) < 0.01);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden_stream),
      cmocka_unit_test(test_seeds_differ_and_repeat),
      cmocka_unit_test(test_distributions),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
