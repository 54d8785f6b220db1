/* GF(q) for the prime powers Paley's constructions use: the quadratic character gives a
 * Jacobsthal matrix Q (Q[a][b] = χ(a - b)) with Q·Qᵀ = q·I - J and Q·1 = 0, and χ(-1) = ±1 as
 * q ≡ ±1 (mod 4). This exercises subtraction, the primitive polynomial and the log table. */
#include <stdlib.h>

#include "linalg/galois_field.h"
#include "support/test_support.h"

static void test_prime_power(void **state) {
  (void)state;
  int p, k;
  assert_true(prime_power(2, &p, &k) && p == 2 && k == 1);
  assert_true(prime_power(243, &p, &k) && p == 3 && k == 5);
  assert_true(prime_power(343, &p, &k) && p == 7 && k == 3);
  assert_true(prime_power(683, &p, &k) && p == 683 && k == 1);
  assert_true(prime_power(1024, &p, &k) && p == 2 && k == 10);
  assert_false(prime_power(1, &p, &k));
  assert_false(prime_power(75, &p, &k));
  assert_false(prime_power(427, &p, &k));
  galois_field f;
  assert_int_equal(galois_field_init(&f, 12), -1);
}

static void check_jacobsthal(int q) {
  galois_field f;
  assert_int_equal(galois_field_init(&f, q), 0);
  int *chi = malloc(sizeof *chi * (size_t)q * q);
  for (int a = 0; a < q; a++)
    for (int b = 0; b < q; b++) chi[a * q + b] = galois_field_quadratic_character(&f, galois_field_sub(&f, a, b));
  for (int a = 0; a < q; a++) {
    int row = 0;
    for (int b = 0; b < q; b++) row += chi[a * q + b];
    assert_int_equal(row, 0);
    for (int c = 0; c < q; c++) {
      int dot = 0;
      for (int b = 0; b < q; b++) dot += chi[a * q + b] * chi[c * q + b];
      if (dot != (a == c ? q - 1 : -1)) fail_msg("GF(%d): Jacobsthal rows %d, %d: %d", q, a, c, dot);
    }
  }
  int minus_one = galois_field_sub(&f, 0, 1);
  assert_int_equal(galois_field_quadratic_character(&f, minus_one), q % 4 == 1 ? 1 : -1);
  assert_int_equal(galois_field_quadratic_character(&f, 0), 0);
  assert_int_equal(galois_field_sub(&f, 5 % q, 5 % q), 0);
  free(chi);
  galois_field_free(&f);
}

static void test_jacobsthal_matrices(void **state) {
  (void)state;
  static const int orders[] = {3, 5, 7, 9, 11, 13, 25, 27, 49, 81, 121, 125, 169, 243, 343};
  for (size_t i = 0; i < sizeof orders / sizeof *orders; i++) check_jacobsthal(orders[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prime_power),
      cmocka_unit_test(test_jacobsthal_matrices),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
