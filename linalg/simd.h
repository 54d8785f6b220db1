/* Which vector instruction set the transform kernels run on. Every kernel has one source,
 * written with GCC vector types and compiled once per instruction set (function target
 * attributes, no global flags); the variants give bitwise identical results, because they do the
 * same additions in the same order. */
#ifndef ROTQ_LINALG_SIMD_H
#define ROTQ_LINALG_SIMD_H

typedef enum simd_isa {
  SIMD_GENERIC, /* portable: 16-byte vectors, whatever the compiler's baseline target makes of them */
  SIMD_AVX2,    /* x86-64 AVX2 + FMA, 32-byte vectors */
  SIMD_AVX512,  /* x86-64 AVX-512F, 64-byte vectors */
} simd_isa;

/* The widest instruction set this CPU supports. */
simd_isa simd_best(void);
/* "generic", "avx2", "avx512". */
const char *simd_isa_name(simd_isa isa);

#endif
