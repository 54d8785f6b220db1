#include "linalg/orthogonal.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

/* OpenBLAS's threaded GEMM and QR give results that change with its thread count (it splits the
 * work differently). Generated matrices must not, so their BLAS/LAPACK calls run on one thread.
 * OpenBLAS 0.3.27 and later set that for the calling thread alone (openblas_set_num_threads_local,
 * found at run time); older ones only process-wide: there the count is set to one for the
 * generation and the caller's restored at once, one generation at a time. This scoped section is
 * the library's only touch of BLAS settings (the runner leaves them to the caller). */
extern int openblas_set_num_threads_local(int threads) __attribute__((weak));

static pthread_mutex_t single_thread_lock = PTHREAD_MUTEX_INITIALIZER;

static int single_thread_begin(void) {
  if (openblas_set_num_threads_local) return openblas_set_num_threads_local(1);
  pthread_mutex_lock(&single_thread_lock);
  int saved = openblas_get_num_threads();
  if (saved != 1) openblas_set_num_threads(1);
  return saved;
}

static void single_thread_end(int saved) {
  if (openblas_set_num_threads_local) {
    openblas_set_num_threads_local(saved);
    return;
  }
  if (saved != 1) openblas_set_num_threads(saved);
  pthread_mutex_unlock(&single_thread_lock);
}

int orthogonal_random(int n, rng *g, double *q, rotq_error *err) {
  size_t nn = (size_t)n * (size_t)n;
  double *a = malloc(sizeof *a * nn), *tau = malloc(sizeof *tau * (size_t)n), *sign = malloc(sizeof *sign * (size_t)n);
  if (!a || !tau || !sign) {
    free(a), free(tau), free(sign);
    return rotq_fail(err, "random orthogonal matrix of order %d: out of memory", n);
  }
  for (size_t i = 0; i < nn; i++) a[i] = rng_gaussian(g);
  /* a is read column-major: column j is draws j·n .. j·n + n - 1 */
  int threads = single_thread_begin();
  lapack_int info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, n, n, a, n, tau);
  if (info == 0) {
    for (int j = 0; j < n; j++) sign[j] = a[(size_t)j * n + j] < 0 ? -1.0 : 1.0;
    info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, n, n, n, a, n, tau);
  }
  single_thread_end(threads);
  if (info == 0)
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) q[(size_t)i * n + j] = a[(size_t)j * n + i] * sign[j];
  free(a), free(tau), free(sign);
  if (info != 0)
    return rotq_fail(err, "random orthogonal matrix of order %d: LAPACK QR failed (info %d)", n, (int)info);
  return 0;
}

/* s ← RᵀR (upper triangle), then the largest deviation from I. */
static double gram_error(int n, const double *r, double *s) {
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, n, 1.0, r, n, 0.0, s, n);
  double worst = 0;
  for (int i = 0; i < n; i++)
    for (int j = i; j < n; j++) {
      double e = fabs(s[(size_t)i * n + j] - (i == j));
      if (!(e <= worst)) worst = e; /* NaN propagates */
    }
  return worst;
}

double orthogonality_error(int n, const double *r) {
  double *s = malloc(sizeof *s * (size_t)n * (size_t)n);
  if (!s) return NAN;
  double e = gram_error(n, r, s);
  free(s);
  return e;
}

int orthogonal_polish(int n, double *r, rotq_error *err) {
  size_t nn = (size_t)n * (size_t)n;
  double *s = malloc(sizeof *s * nn), *x = malloc(sizeof *x * nn);
  int status = s && x ? -1 : -2;
  double previous = INFINITY;
  int threads = single_thread_begin();
  for (int iteration = 0; status == -1 && iteration < 30; iteration++) {
    double e = gram_error(n, r, s);
    if (e < 1e-14 || (e > previous / 2 && e < 1e-11))
      status = 0; /* done, or at rounding level */
    else if (!(e < 1.0) || e > previous / 2)
      break;
    else {
      previous = e;
      /* s ← (3I - s)/2 as a full symmetric matrix; r ← r·s */
      for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) {
          double v = ((i == j ? 3.0 : 0.0) - s[(size_t)i * n + j]) / 2;
          s[(size_t)i * n + j] = s[(size_t)j * n + i] = v;
        }
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, r, n, s, n, 0.0, x, n);
      for (size_t i = 0; i < nn; i++) r[i] = x[i];
    }
  }
  single_thread_end(threads);
  free(s), free(x);
  if (status == -2) return rotq_fail(err, "orthogonalizing a matrix of order %d: out of memory", n);
  if (status < 0) return rotq_fail(err, "matrix of order %d: too far from orthogonal to orthogonalize", n);
  return 0;
}
