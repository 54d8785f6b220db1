#include "linalg/hadamard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linalg/galois_field.h"
#include "linalg/williamson.h"

const char *hadamard_construction_name(hadamard_construction construction) {
  switch (construction) {
  case HADAMARD_SYLVESTER: return "Sylvester";
  case HADAMARD_PALEY_I: return "Paley I";
  case HADAMARD_PALEY_II: return "Paley II";
  case HADAMARD_WILLIAMSON: return "Williamson";
  case HADAMARD_COOPER_WALLIS: return "Cooper–Wallis";
  }
  return "?";
}

static int power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }

static void sylvester(int order, int8_t *h) {
  for (int i = 0; i < order; i++)
    for (int j = 0; j < order; j++) h[(size_t)i * order + j] = __builtin_parity(i & j) ? -1 : 1;
}

/* H = [[1, 1ᵀ], [-1, Q + I]] with Q[i][j] = χ(i - j), the Jacobsthal matrix of GF(q),
 * q = order - 1 ≡ 3 (mod 4); Q is skew (χ(-1) = -1) and Q·Qᵀ = q·I - J. */
static int paley_i(int order, int8_t *h) {
  int q = order - 1;
  galois_field f;
  if (q % 4 != 3 || galois_field_init(&f, q) < 0) return -1;
  for (int j = 0; j < order; j++) h[j] = 1;
  for (int i = 1; i < order; i++) {
    int8_t *row = h + (size_t)i * order;
    row[0] = -1;
    for (int j = 1; j < order; j++)
      row[j] = i == j ? 1 : (int8_t)galois_field_quadratic_character(&f, galois_field_sub(&f, i - 1, j - 1));
  }
  galois_field_free(&f);
  return 0;
}

/* With the symmetric conference matrix C = [[0, 1ᵀ], [1, Q]] of order q + 1 (q ≡ 1 mod 4):
 * H = C ⊗ [[1, 1], [1, -1]] + I ⊗ [[1, -1], [-1, -1]]. */
static int paley_ii(int order, int8_t *h) {
  int q = order / 2 - 1;
  galois_field f;
  if (order % 2 || q % 4 != 1 || galois_field_init(&f, q) < 0) return -1;
  for (int i = 0; i <= q; i++)
    for (int j = 0; j <= q; j++) {
      int c = i == j             ? 0
              : i == 0 || j == 0 ? 1
                                 : galois_field_quadratic_character(&f, galois_field_sub(&f, i - 1, j - 1));
      int8_t block[4] = {1, -1, -1, -1};
      if (c) {
        block[0] = block[1] = block[2] = (int8_t)c;
        block[3] = (int8_t)-c;
      }
      for (int r = 0; r < 2; r++)
        for (int s = 0; s < 2; s++) h[(size_t)(2 * i + r) * order + 2 * j + s] = block[2 * r + s];
    }
  galois_field_free(&f);
  return 0;
}

/* The Goethals–Seidel array of four circulants A, B, C, D of order m (first rows at
 * rows + t·m) with A·Aᵀ + B·Bᵀ + C·Cᵀ + D·Dᵀ = 4m·I, R the back-diagonal identity:
 *    A     BR    CR    DR
 *   -BR    A     DᵀR  -CᵀR
 *   -CR   -DᵀR   A     BᵀR
 *   -DR    CᵀR  -BᵀR   A                                                                    */
static void goethals_seidel(int m, const int8_t *rows, int8_t *h) {
  /* block (r, c): sign, which circulant (0..3 = A..D), form (0: X, 1: XR, 2: XᵀR) */
  static const signed char sign[4][4] = {{1, 1, 1, 1}, {-1, 1, 1, -1}, {-1, -1, 1, 1}, {-1, 1, -1, 1}};
  static const char which[4][4] = {{0, 1, 2, 3}, {1, 0, 3, 2}, {2, 3, 0, 1}, {3, 2, 1, 0}};
  static const char form[4][4] = {{0, 1, 1, 1}, {1, 0, 2, 2}, {1, 2, 0, 2}, {1, 2, 2, 0}};
  int order = 4 * m;
  for (int r = 0; r < 4; r++)
    for (int c = 0; c < 4; c++) {
      const int8_t *x = rows + which[r][c] * m;
      for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
          int k = form[r][c] == 0 ? j - i : form[r][c] == 1 ? m - 1 - j - i : i + j + 1;
          k = ((k % m) + m) % m;
          h[(size_t)(r * m + i) * order + c * m + j] = (int8_t)(sign[r][c] * x[k]);
        }
    }
}

static int williamson(int order, int8_t *h) {
  int m = order / 4;
  if (order % 4 || m % 2 == 0) return -1;
  int8_t *rows = malloc(4 * (size_t)m);
  int status = rows ? williamson_sequences(m, rows) : -1;
  if (status == 0) goethals_seidel(m, rows, h);
  free(rows);
  return status;
}

/* T-matrices of order 3 (I, P, P² with P the cyclic shift) combined with Williamson matrices
 * A, B, C, D of order w (3 ∤ w) into X_i = Σ_j T_j ⊗ (±W), the signs and blocks below making
 * Σ X_i·X_iᵀ = 3I ⊗ 4w·I; by the Chinese remainder theorem each X_i is a circulant of order 3w,
 * whose first row at k is the (k mod 3, k mod w) entry. */
static int cooper_wallis(int order, int8_t *h) {
  static const signed char sign[4][3] = {{1, 1, 1}, {-1, 1, 1}, {-1, -1, 1}, {-1, 1, -1}};
  static const char which[4][3] = {{0, 1, 2}, {1, 0, 3}, {2, 3, 0}, {3, 2, 1}};
  int m = order / 4, w = m / 3;
  if (order % 4 || m % 2 == 0 || m % 3 || w % 3 == 0) return -1;
  int8_t *base = malloc(4 * (size_t)w), *rows = malloc(4 * (size_t)m);
  int status = base && rows ? williamson_sequences(w, base) : -1;
  if (status == 0) {
    for (int i = 0; i < 4; i++)
      for (int k = 0; k < m; k++) {
        int j = k % 3;
        rows[i * m + k] = (int8_t)(sign[i][j] * base[which[i][j] * w + k % w]);
      }
    goethals_seidel(m, rows, h);
  }
  free(base);
  free(rows);
  return status;
}

int hadamard_direct(hadamard_construction construction, int order, int8_t *h) {
  if (order < 1) return -1;
  switch (construction) {
  case HADAMARD_SYLVESTER:
    if (!power_of_two(order)) return -1;
    sylvester(order, h);
    return 0;
  case HADAMARD_PALEY_I: return paley_i(order, h);
  case HADAMARD_PALEY_II: return paley_ii(order, h);
  case HADAMARD_WILLIAMSON: return williamson(order, h);
  case HADAMARD_COOPER_WALLIS: return cooper_wallis(order, h);
  }
  return -1;
}

/* Whether a direct construction of this order exists, without building it (Williamson and
 * Cooper–Wallis run, or reuse, the sequence search). */
static int constructible(hadamard_construction construction, int order) {
  int p, k, m = order / 4;
  switch (construction) {
  case HADAMARD_PALEY_I: return (order - 1) % 4 == 3 && prime_power(order - 1, &p, &k);
  case HADAMARD_PALEY_II: return order % 8 == 4 && (order / 2 - 1) % 4 == 1 && prime_power(order / 2 - 1, &p, &k);
  case HADAMARD_WILLIAMSON: {
    if (order % 4 || m % 2 == 0 || m > WILLIAMSON_MAX_ORDER) return 0;
    int8_t *rows = malloc(4 * (size_t)m);
    int found = rows && williamson_sequences(m, rows) == 0;
    free(rows);
    return found;
  }
  case HADAMARD_COOPER_WALLIS:
    return order % 12 == 0 && m % 2 == 1 && (m / 3) % 3 != 0 && constructible(HADAMARD_WILLIAMSON, order / 3);
  case HADAMARD_SYLVESTER: return power_of_two(order);
  }
  return 0;
}

/* The smallest a in [2, max_a] with a direct construction of order 2^a·d (d odd > 1), setting
 * *construction; 0 if none. Paley II, Williamson and Cooper–Wallis give orders 4d only. */
static int direct_order(int d, int max_a, hadamard_construction *construction) {
  static const hadamard_construction tried[] = {HADAMARD_PALEY_I, HADAMARD_PALEY_II, HADAMARD_WILLIAMSON,
                                                HADAMARD_COOPER_WALLIS};
  for (int a = 2; a <= max_a && d <= (1 << 29) >> a; a++)
    for (size_t t = 0; t < sizeof tried / sizeof *tried; t++)
      if (constructible(tried[t], d << a)) {
        *construction = tried[t];
        return a;
      }
  return 0;
}

/* Cheapest split of the odd u into factors d ≥ smallest (nondecreasing, so each split is seen
 * once) using at most v powers of two; returns its cost (sum of the direct orders) or -1. */
static long best_split(int u, int v, int smallest, hadamard_plan *plan) {
  plan->count = 0;
  if (u == 1) return 0;
  long best = -1;
  for (int d = smallest; d <= u; d += 2) {
    if (u % d) continue;
    hadamard_construction construction;
    int a = direct_order(d, v, &construction);
    if (!a) continue;
    hadamard_plan rest;
    long cost = best_split(u / d, v - a, d, &rest);
    if (cost < 0 || rest.count + 1 > HADAMARD_MAX_FACTORS) continue;
    cost += (long)d << a;
    if (best < 0 || cost < best) {
      best = cost;
      plan->count = rest.count + 1;
      plan->order[0] = d << a;
      plan->construction[0] = construction;
      memcpy(plan->order + 1, rest.order, sizeof *rest.order * (size_t)rest.count);
      memcpy(plan->construction + 1, rest.construction, sizeof *rest.construction * (size_t)rest.count);
    }
  }
  return best;
}

int hadamard_plan_order(int n, hadamard_plan *plan) {
  memset(plan, 0, sizeof *plan);
  if (n < 1) return -1;
  int v = __builtin_ctz((unsigned)n), u = n >> v;
  if (best_split(u, v, 3, plan) < 0) return -1;
  int used = 0;
  for (int i = 0; i < plan->count; i++) used += __builtin_ctz((unsigned)plan->order[i]);
  plan->log2_sylvester = v - used;
  return 0;
}

int hadamard_build(const hadamard_plan *plan, int8_t *h) {
  int n = 1 << plan->log2_sylvester;
  for (int i = 0; i < plan->count; i++) n *= plan->order[i];
  int8_t *factor = malloc((size_t)n * (size_t)n), *product = malloc((size_t)n * (size_t)n);
  int status = factor && product ? 0 : -1;
  int size = 1;
  if (status == 0) product[0] = 1;
  for (int f = 0; f <= plan->count && status == 0; f++) {
    int order = f < plan->count ? plan->order[f] : 1 << plan->log2_sylvester;
    hadamard_construction c = f < plan->count ? plan->construction[f] : HADAMARD_SYLVESTER;
    if (hadamard_direct(c, order, factor) < 0) {
      status = -1;
      break;
    }
    /* h = product ⊗ factor, then product = h */
    int next = size * order;
    for (int i1 = 0; i1 < size; i1++)
      for (int j1 = 0; j1 < size; j1++)
        for (int i2 = 0; i2 < order; i2++)
          for (int j2 = 0; j2 < order; j2++)
            h[(size_t)(i1 * order + i2) * next + j1 * order + j2] =
                (int8_t)(product[(size_t)i1 * size + j1] * factor[(size_t)i2 * order + j2]);
    size = next;
    memcpy(product, h, (size_t)size * (size_t)size);
  }
  free(factor);
  free(product);
  return status;
}

void hadamard_plan_describe(const hadamard_plan *plan, char *text, size_t size) {
  size_t used = 0;
  text[0] = 0;
  for (int i = 0; i < plan->count && used < size; i++)
    used += (size_t)snprintf(text + used, size - used, "%sH_%d (%s)", i ? " ⊗ " : "", plan->order[i],
                             hadamard_construction_name(plan->construction[i]));
  if (used < size && (plan->log2_sylvester > 0 || plan->count == 0))
    snprintf(text + used, size - used, "%sH_%d (Sylvester)", plan->count ? " ⊗ " : "", 1 << plan->log2_sylvester);
}
