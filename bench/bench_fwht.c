/* Micro-benchmark of the Hadamard kernels (not a test): the FWHT per instruction set, then a
 * random Hadamard rotation (f64) applied to 4096 × 4096 and 14336 × 4096 weights, input side
 * (W·R) and output side (Rᵀ·W), and R_14336 to 4096 × 14336 on the input side, against
 * cblas_dgemm with the dense R.
 * Usage: bench_fwht [--quick]   (--quick skips the dense products with R_14336) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "linalg/fwht.h"
#include "linalg/rng.h"
#include "linalg/rotation.h"

/* CPU time of this thread: the machine may be shared, and everything here runs on one thread. */
static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double *random_matrix(size_t count) {
  rng g;
  rng_seed(&g, 1);
  double *x = malloc(sizeof *x * count);
  for (size_t i = 0; i < count; i++) x[i] = rng_uniform(&g) - 0.5;
  return x;
}

static void bench_fwht_isa(void) {
  const int log_n = 12, reps = 20000;
  double *x = random_matrix((size_t)1 << log_n);
  float *y = malloc(sizeof *y << log_n);
  for (int i = 0; i < 1 << log_n; i++) y[i] = (float)x[i];
  printf("FWHT of 4096 elements, ns per transform:\n");
  for (int isa = SIMD_GENERIC; isa <= (int)simd_best(); isa++) {
    const fwht_kernels *k = fwht_kernels_for((simd_isa)isa);
    double t0 = now();
    for (int r = 0; r < reps; r++) k->fwht_f64(x, log_n, NULL);
    double t1 = now();
    for (int r = 0; r < reps; r++) k->fwht_f32(y, log_n, NULL);
    double t2 = now();
    printf("  %-8s f64 %8.0f   f32 %8.0f\n", simd_isa_name((simd_isa)isa), (t1 - t0) / reps * 1e9,
           (t2 - t1) / reps * 1e9);
  }
  free(x);
  free(y);
}

/* Seconds for W·R (input side, R of order cols) or Rᵀ·W (output side, R of order rows), fast and
 * dense. */
static void bench_side(size_t rows, size_t cols, int output_side, int dense) {
  int n = (int)(output_side ? rows : cols);
  rotq_error err;
  rotation *r = rotation_create(n, ROTATION_HADAMARD, 1, 0, &err);
  if (!r) {
    fprintf(stderr, "%s\n", err.message);
    exit(1);
  }
  double *w = random_matrix(rows * cols), fast = 1e30, gemm = 0, t0;
  for (int rep = 0; rep < 3; rep++) { /* best of three: the machine may be shared */
    t0 = now();
    if (output_side)
      rotation_apply_cols_f64(r, w, rows, cols, cols);
    else
      rotation_apply_rows_f64(r, w, rows, cols, cols);
    if (now() - t0 < fast) fast = now() - t0;
  }
  if (dense) {
    double *rd = malloc(sizeof *rd * (size_t)n * (size_t)n), *out = malloc(sizeof *out * rows * cols);
    rotation_dense(r, rd);
    t0 = now();
    if (output_side)
      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)rows, (int)cols, (int)rows, 1.0, rd, n, w, (int)cols,
                  0.0, out, (int)cols);
    else
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)cols, 1.0, w, (int)cols, rd, n,
                  0.0, out, (int)cols);
    gemm = now() - t0;
    free(rd);
    free(out);
  }
  printf("  %5zu x %-5zu %s R_%-5d fast %7.3f s", rows, cols, output_side ? "cols Rt.W" : "rows W.R ", n, fast);
  if (dense) printf("   dgemm %7.3f s   dgemm/fast %6.1fx", gemm, gemm / fast);
  printf("\n");
  free(w);
  rotation_free(r);
}

int main(int argc, char **argv) {
  int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  openblas_set_num_threads(1); /* one core each: the comparison is per core */
  printf("instruction set: %s; one thread (rotq and OpenBLAS), CPU time\n", simd_isa_name(simd_best()));
  bench_fwht_isa();
  printf("random Hadamard rotation, f64 (R_4096: %s; R_14336: %s):\n", "H_4096 (Sylvester)",
         "H_28 (Paley I) ⊗ H_512 (Sylvester)");
  bench_side(4096, 4096, 0, 1);
  bench_side(4096, 4096, 1, 1);
  bench_side(14336, 4096, 0, 1);
  bench_side(14336, 4096, 1, !quick);
  bench_side(4096, 14336, 0, !quick); /* the same R_14336 on the input side */
  return 0;
}
