/* Hadamard constructions: H·Hᵀ = n·I exactly, for every construction and the orders models need. */
#include <stdlib.h>
#include <string.h>

#include "linalg/hadamard.h"
#include "linalg/williamson.h"
#include "support/test_support.h"

/* 1 if h (n × n) has ±1 entries and H·Hᵀ = n·I in integer arithmetic. */
static int is_hadamard(int n, const int8_t *h) {
  for (size_t i = 0; i < (size_t)n * n; i++)
    if (h[i] != 1 && h[i] != -1) return 0;
  for (int i = 0; i < n; i++)
    for (int j = i; j < n; j++) {
      int dot = 0;
      for (int k = 0; k < n; k++) dot += h[(size_t)i * n + k] * h[(size_t)j * n + k];
      if (dot != (i == j ? n : 0)) return 0;
    }
  return 1;
}

static void check_direct(hadamard_construction c, int order) {
  int8_t *h = malloc((size_t)order * order);
  assert_int_equal(hadamard_direct(c, order, h), 0);
  if (!is_hadamard(order, h)) fail_msg("%s of order %d is not Hadamard", hadamard_construction_name(c), order);
  free(h);
}

static void test_direct_constructions(void **state) {
  (void)state;
  for (int k = 0; k <= 8; k++) check_direct(HADAMARD_SYLVESTER, 1 << k);
  /* Paley I over prime fields and GF(27), GF(243); Paley II over GF(9), GF(25), GF(49), GF(121) */
  static const int paley_i[] = {4, 8, 12, 20, 24, 28, 32, 44, 48, 60, 68, 72, 84, 108, 140, 244, 684};
  static const int paley_ii[] = {12, 20, 28, 36, 52, 76, 100, 148, 244, 924};
  for (size_t i = 0; i < sizeof paley_i / sizeof *paley_i; i++) check_direct(HADAMARD_PALEY_I, paley_i[i]);
  for (size_t i = 0; i < sizeof paley_ii / sizeof *paley_ii; i++) check_direct(HADAMARD_PALEY_II, paley_ii[i]);
  static const int williamson[] = {4, 12, 20, 28, 36, 44, 52, 60, 92, 100, 116, 172};
  for (size_t i = 0; i < sizeof williamson / sizeof *williamson; i++) check_direct(HADAMARD_WILLIAMSON, williamson[i]);
  check_direct(HADAMARD_COOPER_WALLIS, 156); /* 3 × Williamson 13 */
  check_direct(HADAMARD_COOPER_WALLIS, 60);  /* 3 × Williamson 5 */
}

static void test_direct_rejects_wrong_orders(void **state) {
  (void)state;
  int8_t h[64 * 64];
  assert_int_equal(hadamard_direct(HADAMARD_SYLVESTER, 12, h), -1);
  assert_int_equal(hadamard_direct(HADAMARD_PALEY_I, 16, h), -1);  /* 15 is no prime power */
  assert_int_equal(hadamard_direct(HADAMARD_PALEY_I, 18, h), -1);  /* 17 ≡ 1 mod 4 */
  assert_int_equal(hadamard_direct(HADAMARD_PALEY_II, 40, h), -1); /* 19 ≡ 3 mod 4 */
  assert_int_equal(hadamard_direct(HADAMARD_WILLIAMSON, 24, h), -1);
  assert_int_equal(hadamard_direct(HADAMARD_COOPER_WALLIS, 36, h), -1); /* 9 = 3·3 */
  assert_int_equal(hadamard_direct(HADAMARD_PALEY_I, 0, h), -1);
}

static void test_williamson_sequences(void **state) {
  (void)state;
  static const int orders[] = {1, 3, 5, 13, 23, 29, 43};
  for (size_t o = 0; o < sizeof orders / sizeof *orders; o++) {
    int m = orders[o];
    int8_t rows[4 * 43];
    assert_int_equal(williamson_sequences(m, rows), 0);
    for (int t = 0; t < 4; t++)
      for (int i = 1; i < m; i++) assert_int_equal(rows[t * m + i], rows[t * m + m - i]); /* symmetric */
    for (int shift = 1; shift < m; shift++) {
      int sum = 0;
      for (int t = 0; t < 4; t++)
        for (int i = 0; i < m; i++) sum += rows[t * m + i] * rows[t * m + (i + shift) % m];
      assert_int_equal(sum, 0);
    }
  }
  int8_t rows[4 * 47];
  assert_int_equal(williamson_sequences(47, rows), -1); /* none exist for 47 */
  assert_int_equal(williamson_sequences(4, rows), -1);  /* even */
}

static void check_plan(int n, const char *expected) {
  hadamard_plan plan;
  char text[256];
  assert_int_equal(hadamard_plan_order(n, &plan), 0);
  hadamard_plan_describe(&plan, text, sizeof text);
  if (strcmp(text, expected) != 0) fail_msg("order %d: plan %s, expected %s", n, text, expected);
}

/* The decompositions of the hidden and intermediate sizes of real models. */
static void test_plans_of_model_sizes(void **state) {
  (void)state;
  check_plan(1, "H_1 (Sylvester)");
  check_plan(64, "H_64 (Sylvester)");
  check_plan(172, "H_172 (Williamson)");
  check_plan(896, "H_28 (Paley I) ⊗ H_32 (Sylvester)");
  check_plan(1536, "H_12 (Paley I) ⊗ H_128 (Sylvester)");
  check_plan(2816, "H_44 (Paley I) ⊗ H_64 (Sylvester)");
  check_plan(3584, "H_28 (Paley I) ⊗ H_128 (Sylvester)");
  check_plan(4864, "H_76 (Paley II) ⊗ H_64 (Sylvester)");
  check_plan(5120, "H_20 (Paley I) ⊗ H_256 (Sylvester)");
  check_plan(10944, "H_12 (Paley I) ⊗ H_12 (Paley I) ⊗ H_76 (Paley II)"); /* cheaper than H_684 ⊗ H_16 */
  check_plan(11008, "H_172 (Williamson) ⊗ H_64 (Sylvester)");
  check_plan(12288, "H_12 (Paley I) ⊗ H_1024 (Sylvester)");
  check_plan(14336, "H_28 (Paley I) ⊗ H_512 (Sylvester)");
  check_plan(17408, "H_68 (Paley I) ⊗ H_256 (Sylvester)");
  check_plan(18944, "H_148 (Paley II) ⊗ H_128 (Sylvester)");
  check_plan(25600, "H_20 (Paley I) ⊗ H_20 (Paley I) ⊗ H_64 (Sylvester)");
  check_plan(27648, "H_12 (Paley I) ⊗ H_12 (Paley I) ⊗ H_12 (Paley I) ⊗ H_16 (Sylvester)");
  check_plan(28672, "H_28 (Paley I) ⊗ H_1024 (Sylvester)");
  check_plan(29568, "H_12 (Paley I) ⊗ H_28 (Paley I) ⊗ H_44 (Paley I) ⊗ H_2 (Sylvester)");
  check_plan(156, "H_156 (Cooper–Wallis)");
  check_plan(624, "H_12 (Paley I) ⊗ H_52 (Paley II)");
  hadamard_plan plan;
  assert_int_equal(hadamard_plan_order(13696, &plan), -1); /* 107·128: 428·2^j is out of reach */
  assert_int_equal(hadamard_plan_order(428, &plan), -1);
  assert_int_equal(hadamard_plan_order(6, &plan), -1);
  assert_int_equal(hadamard_plan_order(7, &plan), -1);
  assert_int_equal(hadamard_plan_order(0, &plan), -1);
}

static void check_built(int n) {
  hadamard_plan plan;
  if (hadamard_plan_order(n, &plan) < 0) fail_msg("order %d: no plan", n);
  int8_t *h = malloc((size_t)n * n);
  assert_int_equal(hadamard_build(&plan, h), 0);
  if (!is_hadamard(n, h)) fail_msg("planned matrix of order %d is not Hadamard", n);
  free(h);
}

static void test_built_orders(void **state) {
  (void)state;
  static const int orders[] = {1,  2,  4,   12,  20,  24,  28,  36,  40,  44,  48,  52,  60,  72, 76,
                               92, 96, 108, 116, 140, 144, 148, 156, 160, 172, 200, 240, 344, 684};
  for (size_t i = 0; i < sizeof orders / sizeof *orders; i++) check_built(orders[i]);
}

/* Sylvester's matrix is the one the FWHT computes: H[i][j] = (-1)^popcount(i & j). */
static void test_sylvester_order(void **state) {
  (void)state;
  int8_t h[16 * 16];
  assert_int_equal(hadamard_direct(HADAMARD_SYLVESTER, 16, h), 0);
  assert_int_equal(h[0], 1);
  assert_int_equal(h[1 * 16 + 1], -1);
  assert_int_equal(h[3 * 16 + 5], -1); /* 3 & 5 = 1 */
  assert_int_equal(h[3 * 16 + 15], 1); /* 3 & 15 = 3 */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_direct_constructions), cmocka_unit_test(test_direct_rejects_wrong_orders),
      cmocka_unit_test(test_williamson_sequences), cmocka_unit_test(test_plans_of_model_sizes),
      cmocka_unit_test(test_built_orders),         cmocka_unit_test(test_sylvester_order),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
