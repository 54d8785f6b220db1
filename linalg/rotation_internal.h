/* The structured form of a rotation, shared by rotation.c (building, describing) and
 * rotation_apply.c (applying). Not part of the public interface. */
#ifndef ROTQ_LINALG_ROTATION_INTERNAL_H
#define ROTQ_LINALG_ROTATION_INTERNAL_H

#include "linalg/hadamard.h"
#include "linalg/rotation.h"

typedef enum rotation_kind {
  /* x·R = (x ∘ scale)·(H_f0 ⊗ … ⊗ H_f(count-1) ⊗ H_2^k): scale = D/√order, the ±1 factors small
   * dense sign matrices, H_2^k a fast Walsh–Hadamard transform */
  ROTATION_KIND_HADAMARD,
  /* x·R = (x ∘ (scale ⊗ 1_m))·(H_2^k ⊗ Q): no Hadamard of the order is constructible; Q a random
   * orthogonal matrix of the odd part m (dense), scale = D/√(2^k) with D of order 2^k (Q being
   * random already, signs on its index would add nothing) */
  ROTATION_KIND_FALLBACK,
  /* x·R with R a dense matrix (GEMM) */
  ROTATION_KIND_DENSE,
  /* x·(A ⊗ B) = Aᵀ·X·B, X the a.n × b.n view of x */
  ROTATION_KIND_KRONECKER,
} rotation_kind;

/* A ±1 Hadamard factor of order m, transposed into reals: signs_t[i·m + l] = H[l][i]. */
typedef struct sign_factor {
  int order;
  double *signs_t;
  float *signs_t_f32;
} sign_factor;

struct rotation {
  rotation_kind kind;
  int n;          /* the order of the rotation */
  int order;      /* the order of one diagonal block: n, or block_size */
  int block_size; /* 0 = one block */
  int has_mode;   /* 0 for matrices given densely and Kronecker products */
  rotation_mode mode;
  uint64_t seed;
  int fallback;

  double *scale; /* HADAMARD: order entries; FALLBACK: 2^k entries */
  float *scale_f32;
  int factor_count; /* HADAMARD */
  sign_factor factor[HADAMARD_MAX_FACTORS];
  int log2_sylvester; /* HADAMARD, FALLBACK */

  int dense_order; /* DENSE: order; FALLBACK: Q's order m */
  double *dense;   /* dense_order × dense_order, row-major */
  float *dense_f32;

  rotation *a, *b; /* KRONECKER */

  int json_factor_count; /* the factor orders reported by rotation_to_json */
  int json_factor[HADAMARD_MAX_FACTORS + 2];
  char description[512];
};

#endif
