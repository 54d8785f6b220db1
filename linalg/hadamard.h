/* Exact Hadamard matrices (±1 entries, H·Hᵀ = n·I), built by algorithms:
 *   Sylvester      order 2^k, H[i][j] = (-1)^popcount(i & j) (the order the FWHT computes)
 *   Paley I        order q + 1, q ≡ 3 (mod 4) a prime power
 *   Paley II       order 2(q + 1), q ≡ 1 (mod 4) a prime power
 *   Williamson     order 4m, Williamson sequences of order m (searched) in the Goethals–Seidel array
 *   Cooper–Wallis  order 12m, 3 ∤ m: T-matrices of order 3 combined with Williamson sequences of
 *                  order m into four circulants of order 3m, in the Goethals–Seidel array
 * and Kronecker products of these. A plan writes n = order[0]·…·order[count-1]·2^k and the matrix
 * is H_order[0] ⊗ … ⊗ H_order[count-1] ⊗ H_2^k (first factor = outermost, major index). */
#ifndef ROTQ_LINALG_HADAMARD_H
#define ROTQ_LINALG_HADAMARD_H

#include <stddef.h>
#include <stdint.h>

typedef enum hadamard_construction {
  HADAMARD_SYLVESTER,
  HADAMARD_PALEY_I,
  HADAMARD_PALEY_II,
  HADAMARD_WILLIAMSON,
  HADAMARD_COOPER_WALLIS,
} hadamard_construction;

#define HADAMARD_MAX_FACTORS 8

typedef struct hadamard_plan {
  int count;                       /* direct factors, outermost first */
  int order[HADAMARD_MAX_FACTORS]; /* each a multiple of 4, not 2^j */
  hadamard_construction construction[HADAMARD_MAX_FACTORS];
  int log2_sylvester; /* the innermost factor H_2^k */
} hadamard_plan;

/* Plans a Hadamard matrix of order n ≥ 1: for n = 2^v·u (u odd), splits u into factors d, each
 * with a direct construction of order 2^a·d (smallest a ≥ 2 that works), minimising the sum of the
 * direct orders (the cost of applying them), the rest of 2^v going to Sylvester. 0, or -1 if no
 * plan exists (n ≡ 2 mod 4 or odd with n > 2, or a part of u with no known construction). */
int hadamard_plan_order(int n, hadamard_plan *plan);

/* Fills h (order × order, row-major) with the matrix of one direct construction; -1 if it does
 * not apply to that order (or its search finds nothing, or memory runs out). */
int hadamard_direct(hadamard_construction construction, int order, int8_t *h);

/* The plan's full matrix, n × n row-major (n = product of the plan's orders); -1 on failure. */
int hadamard_build(const hadamard_plan *plan, int8_t *h);

/* "Sylvester", "Paley I", "Paley II", "Williamson", "Cooper–Wallis". */
const char *hadamard_construction_name(hadamard_construction construction);

/* Writes e.g. "H_172 (Williamson) ⊗ H_64 (Sylvester)" into text (truncated to size). */
void hadamard_plan_describe(const hadamard_plan *plan, char *text, size_t size);

#endif
