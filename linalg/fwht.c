#include "linalg/fwht.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* Each inclusion of fwht_kernels.h instantiates the kernels for one element type and instruction
 * set. GCC lowers the generic vector operations to the target's registers. */
#define NAME_(kernel, variant) kernel##_##variant
#define NAME_EXPAND(kernel, variant) NAME_(kernel, variant)

#define REAL double
#define TARGET
#define RADIX_LOG_MAX 3
#define NAME(kernel) NAME_EXPAND(kernel, f64_generic)
#define LANES 2
typedef double f64x2 __attribute__((vector_size(16)));
typedef int64_t i64x2 __attribute__((vector_size(16)));
#define VEC f64x2
#define INDEX i64x2
#define IOTA ((i64x2){0, 1})
#define MULTIPLY_ADD(a, s, x) ((a) + (s) * (x))
#include "linalg/fwht_kernels.h"
#undef REAL
#undef TARGET
#undef NAME
#undef LANES
#undef RADIX_LOG_MAX
#undef VEC
#undef INDEX
#undef IOTA
#undef MULTIPLY_ADD

#define REAL float
#define TARGET
#define RADIX_LOG_MAX 3
#define NAME(kernel) NAME_EXPAND(kernel, f32_generic)
#define LANES 4
typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x4 __attribute__((vector_size(16)));
#define VEC f32x4
#define INDEX i32x4
#define IOTA ((i32x4){0, 1, 2, 3})
#define MULTIPLY_ADD(a, s, x) ((a) + (s) * (x))
#include "linalg/fwht_kernels.h"
#undef REAL
#undef TARGET
#undef NAME
#undef LANES
#undef RADIX_LOG_MAX
#undef VEC
#undef INDEX
#undef IOTA
#undef MULTIPLY_ADD

#if defined(__x86_64__)
#define REAL double
#define TARGET __attribute__((target("avx2,fma")))
#define RADIX_LOG_MAX 3 /* 16 vector registers */
#define NAME(kernel) NAME_EXPAND(kernel, f64_avx2)
#define LANES 4
typedef double f64x4 __attribute__((vector_size(32)));
typedef int64_t i64x4 __attribute__((vector_size(32)));
#define VEC f64x4
#define INDEX i64x4
#define IOTA ((i64x4){0, 1, 2, 3})
#define MULTIPLY_ADD(a, s, x) ((f64x4)_mm256_fmadd_pd((__m256d)(x), _mm256_set1_pd(s), (__m256d)(a)))
#include "linalg/fwht_kernels.h"
#undef REAL
#undef TARGET
#undef NAME
#undef LANES
#undef RADIX_LOG_MAX
#undef VEC
#undef INDEX
#undef IOTA
#undef MULTIPLY_ADD

#define REAL float
#define TARGET __attribute__((target("avx2,fma")))
#define RADIX_LOG_MAX 3 /* 16 vector registers */
#define NAME(kernel) NAME_EXPAND(kernel, f32_avx2)
#define LANES 8
typedef float f32x8 __attribute__((vector_size(32)));
typedef int32_t i32x8 __attribute__((vector_size(32)));
#define VEC f32x8
#define INDEX i32x8
#define IOTA ((i32x8){0, 1, 2, 3, 4, 5, 6, 7})
#define MULTIPLY_ADD(a, s, x) ((f32x8)_mm256_fmadd_ps((__m256)(x), _mm256_set1_ps(s), (__m256)(a)))
#include "linalg/fwht_kernels.h"
#undef REAL
#undef TARGET
#undef NAME
#undef LANES
#undef RADIX_LOG_MAX
#undef VEC
#undef INDEX
#undef IOTA
#undef MULTIPLY_ADD

#define REAL double
#define TARGET __attribute__((target("avx512f")))
#define RADIX_LOG_MAX 4 /* 32 vector registers: 16 rows in flight */
#define NAME(kernel) NAME_EXPAND(kernel, f64_avx512)
#define LANES 8
typedef double f64x8 __attribute__((vector_size(64)));
typedef int64_t i64x8 __attribute__((vector_size(64)));
#define VEC f64x8
#define INDEX i64x8
#define IOTA ((i64x8){0, 1, 2, 3, 4, 5, 6, 7})
#define MULTIPLY_ADD(a, s, x) ((f64x8)_mm512_fmadd_pd((__m512d)(x), _mm512_set1_pd(s), (__m512d)(a)))
#include "linalg/fwht_kernels.h"
#undef REAL
#undef TARGET
#undef NAME
#undef LANES
#undef RADIX_LOG_MAX
#undef VEC
#undef INDEX
#undef IOTA
#undef MULTIPLY_ADD

#define REAL float
#define TARGET __attribute__((target("avx512f")))
#define RADIX_LOG_MAX 4 /* 32 vector registers: 16 rows in flight */
#define NAME(kernel) NAME_EXPAND(kernel, f32_avx512)
#define LANES 16
typedef float f32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));
#define VEC f32x16
#define INDEX i32x16
#define IOTA ((i32x16){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
#define MULTIPLY_ADD(a, s, x) ((f32x16)_mm512_fmadd_ps((__m512)(x), _mm512_set1_ps(s), (__m512)(a)))
#include "linalg/fwht_kernels.h"
#undef REAL
#undef TARGET
#undef NAME
#undef LANES
#undef RADIX_LOG_MAX
#undef VEC
#undef INDEX
#undef IOTA
#undef MULTIPLY_ADD
#endif

/* clang-format off */
#define KERNELS(f64, f32)                                                                      \
  {contiguous_##f64, contiguous_##f32, columns_##f64, columns_##f32,                           \
   sign_matrix_##f64, sign_matrix_##f32, scale_rows_##f64, scale_rows_##f32}
/* clang-format on */

static const fwht_kernels generic = KERNELS(f64_generic, f32_generic);
#if defined(__x86_64__)
static const fwht_kernels avx2 = KERNELS(f64_avx2, f32_avx2);
static const fwht_kernels avx512 = KERNELS(f64_avx512, f32_avx512);
#endif

const fwht_kernels *fwht_kernels_for(simd_isa isa) {
#if defined(__x86_64__)
  if (isa == SIMD_AVX512) return &avx512;
  if (isa == SIMD_AVX2) return &avx2;
#endif
  return &generic;
}

void fwht_f64(double *x, int log_n) { fwht_kernels_for(simd_best())->fwht_f64(x, log_n, NULL); }
void fwht_f32(float *x, int log_n) { fwht_kernels_for(simd_best())->fwht_f32(x, log_n, NULL); }
void fwht_columns_f64(double *x, int log_n, size_t width, size_t ld) {
  fwht_kernels_for(simd_best())->columns_f64(x, log_n, width, ld, NULL);
}
void fwht_columns_f32(float *x, int log_n, size_t width, size_t ld) {
  fwht_kernels_for(simd_best())->columns_f32(x, log_n, width, ld, NULL);
}
