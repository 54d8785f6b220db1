/* first_non_finite: NaN and ±inf found by bit pattern in every dtype, at any position. */
#include <math.h>
#include <stdlib.h>

#include "io/finite.h"
#include "support/test_support.h"

static void finds_the_first_non_finite(void **state) {
  (void)state;
  const dtype types[] = {DTYPE_F64, DTYPE_F32, DTYPE_F16, DTYPE_BF16};
  const double bad[] = {NAN, INFINITY, -INFINITY};
  const size_t n = 300;
  double *values = malloc(n * sizeof *values);
  unsigned char *raw = malloc(n * 8);
  for (int t = 0; t < 4; t++) {
    for (size_t i = 0; i < n; i++) values[i] = (double)i * 0.37 - 50; /* finite, incl. 0 and large */
    values[7] = 65000.0;
    dtype_from_f64(types[t], values, raw, n);
    assert_int_equal(first_non_finite(types[t], raw, n), n);
    for (int b = 0; b < 3; b++)
      for (size_t at = 0; at < n; at += 37) {
        double keep = values[at];
        values[at] = bad[b];
        dtype_from_f64(types[t], values, raw, n);
        assert_int_equal(first_non_finite(types[t], raw, n), at);
        values[at] = keep;
      }
  }
  free(values);
  free(raw);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(finds_the_first_non_finite)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
