/* Dense orthogonal matrices (row-major n × n doubles): Haar-random sampling, the orthogonality
 * error, and the nearest orthogonal matrix. BLAS/LAPACK do the heavy lifting; while a matrix is
 * generated OpenBLAS runs one thread (for the calling thread where OpenBLAS can, else briefly
 * process-wide: see orthogonal.c), so the numbers never depend on its thread count. */
#ifndef ROTQ_LINALG_ORTHOGONAL_H
#define ROTQ_LINALG_ORTHOGONAL_H

#include "common/error.h"
#include "linalg/rng.h"

/* q ← a Haar-random orthogonal matrix: Q·diag(sign(diag(R))) for the QR decomposition (LAPACK
 * dgeqrf/dorgqr) of an n × n standard Gaussian matrix drawn from g (column by column). */
int orthogonal_random(int n, rng *g, double *q, rotq_error *err);

/* max |RᵀR - I| over all entries (NaN if r holds a NaN). */
double orthogonality_error(int n, const double *r);

/* r ← its nearest orthogonal matrix (the polar factor), by Newton–Schulz iterations
 * X ← X·(3I - XᵀX)/2 until ‖XᵀX - I‖max < 1e-14; needs r close to orthogonal already (a rounded
 * copy of an orthogonal matrix); -1 if the iteration does not converge. */
int orthogonal_polish(int n, double *r, rotq_error *err);

#endif
