/* An orthogonal rotation R (n × n) in structured form, and its fast application to weight
 * matrices. Row-vector convention: an activation x becomes x·R.
 *
 * Hadamard-based rotations are kept as factors — R = D·(H_m ⊗ H_2^k)/√n with D a ±1 diagonal
 * (identity for base_hadamard) — and applied with a fast Walsh–Hadamard transform for the 2^k
 * factor and a small dense product for the m factor: O(n log n) per vector, never a dense n × n
 * product. Dense rotations (orthogonal mode, matrices from a file) are applied with BLAS GEMM. */
#ifndef ROTQ_LINALG_ROTATION_H
#define ROTQ_LINALG_ROTATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct cJSON;

typedef enum rotation_mode {
  ROTATION_BASE_HADAMARD, /* deterministic normalized Hadamard (Sylvester order for 2^k) */
  ROTATION_HADAMARD,      /* random Hadamard D·H, D a seeded random ±1 diagonal */
  ROTATION_ORTHOGONAL,    /* Haar-random orthogonal: QR of a seeded Gaussian (sign-corrected) */
} rotation_mode;

typedef struct rotation rotation;

/* "hadamard" | "base_hadamard" | "orthogonal" → mode; -1 if unknown. */
int rotation_mode_parse(const char *name, rotation_mode *mode);
const char *rotation_mode_name(rotation_mode mode);

/* A rotation of order n. block_size: 0 or n = full size; a power of two b dividing n = the
 * block-diagonal matrix repeating one b × b rotation. When no Hadamard of a needed order is
 * constructible, Hadamard modes fall back to H_2^k ⊗ (seeded random orthogonal of order m) and
 * rotation_is_fallback() says so. */
rotation *rotation_create(int n, rotation_mode mode, uint64_t seed, int block_size, rotq_error *err);
/* The block size of a rotation of order n sized to quantization groups of `group` values: the
 * largest power of two dividing n and at most group (so that no block straddles two groups);
 * 0 (the full rotation) when group <= 0 or that block is n itself. */
int rotation_group_block(int n, int group);
/* A rotation from a dense row-major n × n matrix (copied); fails unless ‖RᵀR − I‖max < tol. */
rotation *rotation_from_dense(int n, const double *matrix, double tol, rotq_error *err);
/* The rotation a ⊗ b (order a.n · b.n): x·(A ⊗ B) is computed as Aᵀ·X·B with X the a.n × b.n
 * view of x. Takes ownership of a and b. */
rotation *rotation_kronecker(rotation *a, rotation *b, rotq_error *err);
void rotation_free(rotation *r);

int rotation_dim(const rotation *r);
int rotation_is_fallback(const rotation *r);
/* Human-readable construction, e.g. "random Hadamard H_172 (Williamson) ⊗ H_64 (Sylvester)". */
const char *rotation_describe(const rotation *r);
/* A JSON record of the rotation (mode, dim, seed as a decimal string, construction, factor orders, fallback). */
struct cJSON *rotation_to_json(const rotation *r);
/* The dense n × n matrix, row-major (for tests, export and small models); -1 when the scratch
 * memory of applying r cannot be allocated (out is then not the matrix). */
int rotation_dense(const rotation *r, double *out);

/* Scratch memory of the apply functions: when it cannot be allocated they return -1 without
 * applying the rotation (or having applied part of it), and rotation_scratch_failed() is true on
 * the calling thread until its next rotation_scratch_recover call (which clears the flag; `on`
 * is kept for older callers and means nothing: the library never aborts). */
void rotation_scratch_recover(bool on);
bool rotation_scratch_failed(void);

/* Input side, W ← W·blockdiag(R, R, ...): W is [rows, cols] with row stride ld (elements);
 * cols must be a multiple of n and every length-n segment of every row is rotated.
 * (n = hidden for R1 on a reader; n = head_dim with cols = heads·head_dim for R2 on o_proj.) */
int rotation_apply_rows_f64(const rotation *r, double *w, size_t rows, size_t cols, size_t ld);
int rotation_apply_rows_f32(const rotation *r, float *w, size_t rows, size_t cols, size_t ld);
/* Output side, W ← blockdiag(Rᵀ, Rᵀ, ...)·W: W is [rows, cols] with row stride ld; rows must be
 * a multiple of n and every group of n consecutive rows is rotated. Callers may split the
 * columns among threads (w offset, cols a sub-range, ld the full row length). */
int rotation_apply_cols_f64(const rotation *r, double *w, size_t rows, size_t cols, size_t ld);
int rotation_apply_cols_f32(const rotation *r, float *w, size_t rows, size_t cols, size_t ld);

#endif
