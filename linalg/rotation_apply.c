/* Applying rotations to weight matrices without dense n × n products where the structure allows:
 * Hadamard rotations through the FWHT and small sign matrices, the fallback through the FWHT and a
 * small GEMM, dense and file rotations through GEMM, Kronecker products as Aᵀ·X·B. The output
 * side works in place on wide tiles of columns with the columns as vector lanes, so it costs about
 * what the input side does. Scratch memory is per call: concurrent calls on disjoint data are
 * safe. Hadamard rotations give bitwise the same result however the caller splits rows or columns
 * (and on every instruction set); dense products go through OpenBLAS, whose last bits can change
 * with the shape of the call, hence with the split. */
#include <assert.h>
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "linalg/fwht.h"
#include "linalg/rotation_internal.h"

/* Running out of scratch memory fails the apply call (it returns -1, the rotation not or only
 * partly applied) and sets the calling thread's failure flag (rotation_scratch_failed), which
 * callers without an error channel of their own collect after a batch of calls. */
static _Thread_local bool failed;

void rotation_scratch_recover(bool on) {
  (void)on;
  failed = false;
}

bool rotation_scratch_failed(void) { return failed; }

static void *checked_malloc(size_t size) {
  void *p = malloc(size ? size : 1);
  if (!p) failed = true;
  return p;
}

/* Vectors per block for dense products: about 4 MB of copies, at least one. */
static size_t vectors_per_block(size_t order, size_t available) {
  size_t count = ((size_t)1 << 19) / order;
  if (count < 1) count = 1;
  return count < available ? count : available;
}

/* Columns per tile on the output side of structured rotations (4 KB of doubles per row). */
#define COLUMN_TILE 1024

#define REAL double
#define SUFFIX(x) x##_f64
#define GEMM cblas_dgemm
#define SCALE(r) ((r)->scale)
#define SIGNS(factor) ((factor)->signs_t)
#define DENSE(r) ((r)->dense)
#define FWHT(k) ((k)->fwht_f64)
#define COLUMNS(k) ((k)->columns_f64)
#define SIGN_MATRIX(k) ((k)->sign_matrix_f64)
#define SCALE_ROWS(k) ((k)->scale_rows_f64)
#include "linalg/rotation_apply_template.h"
#undef REAL
#undef SUFFIX
#undef GEMM
#undef SCALE
#undef SIGNS
#undef DENSE
#undef FWHT
#undef COLUMNS
#undef SIGN_MATRIX
#undef SCALE_ROWS

#define REAL float
#define SUFFIX(x) x##_f32
#define GEMM cblas_sgemm
#define SCALE(r) ((r)->scale_f32)
#define SIGNS(factor) ((factor)->signs_t_f32)
#define DENSE(r) ((r)->dense_f32)
#define FWHT(k) ((k)->fwht_f32)
#define COLUMNS(k) ((k)->columns_f32)
#define SIGN_MATRIX(k) ((k)->sign_matrix_f32)
#define SCALE_ROWS(k) ((k)->scale_rows_f32)
#include "linalg/rotation_apply_template.h"
