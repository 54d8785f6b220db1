/* Micro-benchmark of the per-row-block kernel of rotq rotate (not a test): a bf16 weight read by the
 * residual stream ([rows, cols], e.g. gate_proj) is transformed the way a row piece is, in blocks
 * of 512 KB of compute precision (the pipeline's block size): bf16 → float64 with the norm fused
 * (one pass), the random Hadamard R1 on every row (FWHT, radix-2^k passes in registers), float64 →
 * bf16 (round to nearest even). Its throughput, in GB/s of bf16 weights, is set against a plain
 * memcpy of the same rows, and split into its three steps; then the same with float32 arithmetic
 * (use_float64: false). One thread, CPU time of the thread (the machine may be shared).
 * Usage: bench_kernel [ROWS COLS [REPS]]   (default 8192 2048 5: llama-3.2-1b's gate_proj) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/dtype.h"
#include "linalg/rng.h"
#include "linalg/rotation.h"

#define BLOCK_BYTES ((size_t)512 << 10)

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct times {
  double load, rotate, store;
} times;

/* One pass over the weight in float64: src [rows, cols] bf16 → dst, as rotq does a row piece. */
static void kernel_f64(const rotation *r, const unsigned char *src, unsigned char *dst, size_t rows, size_t cols,
                       const double *norm, double *work, times *t) {
  size_t block = BLOCK_BYTES / (cols * sizeof(double));
  if (block < 1) block = 1;
  for (size_t b = 0; b < rows; b += block) {
    size_t n = rows - b < block ? rows - b : block;
    double t0 = now();
    for (size_t i = 0; i < n; i++)
      dtype_to_f64_scaled(DTYPE_BF16, src + (b + i) * cols * 2, norm, work + i * cols, cols);
    double t1 = now();
    rotation_apply_rows_f64(r, work, n, cols, cols);
    double t2 = now();
    dtype_from_f64(DTYPE_BF16, work, dst + b * cols * 2, n * cols);
    double t3 = now();
    t->load += t1 - t0, t->rotate += t2 - t1, t->store += t3 - t2;
  }
}

/* The same in float32 (each product with the norm rounded once to float). */
static void kernel_f32(const rotation *r, const unsigned char *src, unsigned char *dst, size_t rows, size_t cols,
                       const double *norm, float *work, times *t) {
  size_t block = BLOCK_BYTES / (cols * sizeof(float));
  if (block < 1) block = 1;
  for (size_t b = 0; b < rows; b += block) {
    size_t n = rows - b < block ? rows - b : block;
    double t0 = now();
    for (size_t i = 0; i < n; i++)
      dtype_to_f32_scaled(DTYPE_BF16, src + (b + i) * cols * 2, norm, work + i * cols, cols);
    double t1 = now();
    rotation_apply_rows_f32(r, work, n, cols, cols);
    double t2 = now();
    dtype_from_f32(DTYPE_BF16, work, dst + b * cols * 2, n * cols);
    double t3 = now();
    t->load += t1 - t0, t->rotate += t2 - t1, t->store += t3 - t2;
  }
}

static void report(const char *what, double bytes, double seconds, double memcpy_seconds, const times *t) {
  printf("  %-28s %7.2f GB/s   %5.2fx memcpy's time", what, bytes / seconds / 1e9, seconds / memcpy_seconds);
  if (t)
    printf("   (load+norm %2.0f%%, rotate %2.0f%%, store %2.0f%%)", 100 * t->load / seconds, 100 * t->rotate / seconds,
           100 * t->store / seconds);
  printf("\n");
}

int main(int argc, char **argv) {
  size_t rows = argc > 2 ? strtoul(argv[1], NULL, 10) : 8192, cols = argc > 2 ? strtoul(argv[2], NULL, 10) : 2048;
  int reps = argc > 3 ? atoi(argv[3]) : 5;
  rotq_error err = {{0}};
  rotation *r = rotation_create((int)cols, ROTATION_HADAMARD, 1, 0, &err);
  size_t bytes = rows * cols * 2;
  unsigned char *src = malloc(bytes), *dst = malloc(bytes);
  double *norm = malloc(cols * sizeof *norm), *work = malloc(BLOCK_BYTES + cols * sizeof(double));
  if (!r || !src || !dst || !norm || !work) {
    fprintf(stderr, "bench_kernel: %s\n", r ? "out of memory" : err.message);
    return 1;
  }
  rng g;
  rng_seed(&g, 1);
  double *row = malloc(cols * sizeof *row);
  for (size_t i = 0; i < rows; i++) {
    for (size_t j = 0; j < cols; j++) row[j] = (rng_uniform(&g) - 0.5) * 0.05;
    dtype_from_f64(DTYPE_BF16, row, src + i * cols * 2, cols);
  }
  for (size_t j = 0; j < cols; j++) norm[j] = 1 + 0.2 * (rng_uniform(&g) - 0.5);
  memset(dst, 0, bytes);
  double t_copy = 1e30, t64 = 1e30, t32 = 1e30;
  times best64 = {0}, best32 = {0};
  for (int k = 0; k < reps; k++) { /* the best of reps: the least disturbed by other processes */
    double t0 = now();
    memcpy(dst, src, bytes);
    double t1 = now();
    if (t1 - t0 < t_copy) t_copy = t1 - t0;
    times t = {0};
    t0 = now();
    kernel_f64(r, src, dst, rows, cols, norm, work, &t);
    t1 = now();
    if (t1 - t0 < t64) t64 = t1 - t0, best64 = t;
    t = (times){0};
    t0 = now();
    kernel_f32(r, src, dst, rows, cols, norm, (float *)work, &t);
    t1 = now();
    if (t1 - t0 < t32) t32 = t1 - t0, best32 = t;
  }
  printf("per-row-block kernel, bf16 [%zu, %zu] (%.0f MB), %s, one thread, best of %d (CPU time):\n", rows, cols,
         bytes / 1e6, rotation_describe(r), reps);
  report("memcpy", (double)bytes, t_copy, t_copy, NULL);
  report("kernel, float64", (double)bytes, t64, t_copy, &best64);
  report("kernel, float32", (double)bytes, t32, t_copy, &best32);
  rotation_free(r);
  free(src), free(dst), free(norm), free(work), free(row);
  return 0;
}
