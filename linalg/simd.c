#include "linalg/simd.h"

simd_isa simd_best(void) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) return SIMD_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SIMD_AVX2;
#endif
  return SIMD_GENERIC;
}

const char *simd_isa_name(simd_isa isa) {
  switch (isa) {
  case SIMD_GENERIC: return "generic";
  case SIMD_AVX2: return "avx2";
  case SIMD_AVX512: return "avx512";
  }
  return "?";
}
