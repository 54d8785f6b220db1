/* Inside rotq, for tests only: caps the conversion loops io/dtype.c may pick (each is chosen at run
 * time by what the CPU has), so that a test on a CPU with every extension still reaches the narrower
 * loops and compares them with the element-wise conversion. Not used by the library itself. */
#ifndef ROTQ_IO_DTYPE_SIMD_H
#define ROTQ_IO_DTYPE_SIMD_H

typedef enum dtype_simd {
  DTYPE_SIMD_NONE = 0,       /* the generic (compiler-vectorized) loops only */
  DTYPE_SIMD_AVX512 = 1,     /* AVX-512F/VL loops, not AVX512-BF16's */
  DTYPE_SIMD_AVX512BF16 = 2, /* every loop the CPU has */
  DTYPE_SIMD_ALL = 2,
} dtype_simd;

void dtype_simd_cap(dtype_simd level);

#endif
