/* Element types of safetensors tensors and their conversions. Every narrowing conversion is one
 * round to nearest, ties to even, done on the bits: f16/bf16 from a double are rounded directly
 * from the double (never through float, which would round twice). Data is little-endian (as in
 * safetensors files and on every host rotq builds for) and may be unaligned, so each element is
 * loaded and stored with memcpy, which compilers turn into a plain move. */
#include "io/dtype.h"
#include "io/dtype_simd.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static const struct {
  const char *name;
  size_t size;
} dtype_info[] = {
    [DTYPE_F64] = {"F64", 8},   [DTYPE_F32] = {"F32", 4},         [DTYPE_F16] = {"F16", 2},
    [DTYPE_BF16] = {"BF16", 2}, [DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [DTYPE_F8_E5M2] = {"F8_E5M2", 1},
    [DTYPE_U8] = {"U8", 1},     [DTYPE_F4_E2M1] = {"F4_E2M1", 1}, [DTYPE_I8] = {"I8", 1},
    [DTYPE_I32] = {"I32", 4},   [DTYPE_I64] = {"I64", 8},         [DTYPE_I4] = {"I4", 1},
};

size_t dtype_size(dtype t) { return dtype_info[t].size; }

size_t dtype_bytes(dtype t, size_t first, size_t n) {
  if (t == DTYPE_F4_E2M1 || t == DTYPE_I4) return (first + n + 1) / 2 - first / 2;
  return n * dtype_info[t].size;
}

const char *dtype_name(dtype t) { return dtype_info[t].name; }

int dtype_parse(const char *name, dtype *t) {
  for (size_t i = 0; i < DTYPE_COUNT; i++)
    if (i != DTYPE_F4_E2M1 && i != DTYPE_I4 && strcmp(name, dtype_info[i].name) == 0) {
      *t = (dtype)i;
      return 0;
    }
  return -1;
}

int dtype_is_integer(dtype t) {
  return t == DTYPE_I8 || t == DTYPE_I32 || t == DTYPE_I64 || t == DTYPE_I4 || t == DTYPE_U8;
}

int dtype_is_float(dtype t) { return t == DTYPE_F64 || t == DTYPE_F32 || t == DTYPE_F16 || t == DTYPE_BF16; }

/* ---- the codes of the quantized formats --------------------------------------------------- */

/* (1 + m / 2^mantissa_bits) · 2^(e − bias) for a normal code, m / 2^mantissa_bits · 2^(1 − bias)
 * for a subnormal one (e == 0), with the sign: every such value is exact in a double. */
static double minifloat(unsigned sign, unsigned e, unsigned m, int mantissa_bits, int bias) {
  double magnitude = e == 0 ? ldexp((double)m, 1 - bias - mantissa_bits)
                            : ldexp((double)((1u << mantissa_bits) + m), (int)e - bias - mantissa_bits);
  return sign ? -magnitude : magnitude;
}

double fp8_e4m3_value(unsigned char code) {
  unsigned sign = code >> 7, e = (code >> 3) & 15, m = code & 7;
  if (e == 15 && m == 7) return sign ? -NAN : NAN; /* the only NaNs; E4M3 has no infinity */
  return minifloat(sign, e, m, 3, 7);
}

double fp8_e5m2_value(unsigned char code) {
  unsigned sign = code >> 7, e = (code >> 2) & 31, m = code & 3;
  if (e == 31) return m ? (sign ? -NAN : NAN) : (sign ? -INFINITY : INFINITY);
  return minifloat(sign, e, m, 2, 15);
}

double fp4_e2m1_value(unsigned code) { return minifloat((code >> 3) & 1, (code >> 1) & 3, code & 1, 1, 1); }

double e8m0_value(unsigned char code) { return code == 0xff ? NAN : ldexp(1.0, (int)code - 127); }

/* Every code's value, built once. */
static double e4m3_table[256], e5m2_table[256], e2m1_table[16];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void) {
  for (unsigned c = 0; c < 256; c++) {
    e4m3_table[c] = fp8_e4m3_value((unsigned char)c);
    e5m2_table[c] = fp8_e5m2_value((unsigned char)c);
  }
  for (unsigned c = 0; c < 16; c++) e2m1_table[c] = fp4_e2m1_value(c);
}

/* n codes of a table's format → doubles. */
static void codes_to_doubles(const double *table, const unsigned char *src, double *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = table[src[i]];
}

/* n packed E2M1 values (element 0 the low nibble of src[0]) → doubles. */
static void nibbles_to_doubles(const unsigned char *src, double *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = e2m1_table[(src[i / 2] >> (4 * (i & 1))) & 15];
}

/* Decodes the quantized types (F8, U8, F4) to doubles. */
static void quantized_to_f64(dtype t, const unsigned char *p, double *dst, size_t n) {
  pthread_once(&tables_once, build_tables);
  if (t == DTYPE_F8_E4M3) codes_to_doubles(e4m3_table, p, dst, n);
  if (t == DTYPE_F8_E5M2) codes_to_doubles(e5m2_table, p, dst, n);
  if (t == DTYPE_F4_E2M1) nibbles_to_doubles(p, dst, n);
  for (size_t i = 0; t == DTYPE_U8 && i < n; i++) dst[i] = p[i];
  for (size_t i = 0; t == DTYPE_I8 && i < n; i++) dst[i] = (double)(int8_t)p[i];
  for (size_t i = 0; t == DTYPE_I32 && i < n; i++) {
    int32_t v;
    memcpy(&v, p + 4 * i, 4);
    dst[i] = v;
  }
  for (size_t i = 0; t == DTYPE_I64 && i < n; i++) {
    int64_t v;
    memcpy(&v, p + 8 * i, 8);
    dst[i] = (double)v;
  }
  for (size_t i = 0; t == DTYPE_I4 && i < n; i++) dst[i] = (double)((p[i / 2] >> (4 * (i & 1))) & 15) - 8;
}

static inline float float_from_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static inline uint32_t bits_of_float(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  return bits;
}

/* IEEE half (1 sign, 5 exponent, 10 mantissa bits) → float, exact. */
static inline float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  if (exponent == 0) { /* zero or subnormal: mantissa · 2^-24, exact in float */
    float magnitude = (float)mantissa * 0x1p-24f;
    return float_from_bits(sign | bits_of_float(magnitude));
  }
  if (exponent == 31) return float_from_bits(sign | 0x7f800000u | mantissa << 13); /* inf, NaN */
  return float_from_bits(sign | (exponent + 127 - 15) << 23 | mantissa << 13);
}

/* bfloat16 is the top half of a float. */
static inline float bfloat16_to_float(uint16_t b) { return float_from_bits((uint32_t)b << 16); }

/* Rounds x to the binary format with exponent_bits and mantissa_bits (at most 16 bits in all)
 * and returns its bits: round to nearest, ties to even, overflow to ±inf, NaN to a quiet NaN. */
static inline uint16_t narrow_double(double x, int exponent_bits, int mantissa_bits) {
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  uint16_t sign = (uint16_t)((bits >> 63) << (exponent_bits + mantissa_bits));
  uint64_t magnitude = bits & 0x7fffffffffffffffull;
  uint16_t infinity = (uint16_t)(((1u << exponent_bits) - 1) << mantissa_bits);
  if (magnitude >= 0x7ff0000000000000ull) /* inf stays inf; NaN keeps its top payload, quiet */
    return magnitude == 0x7ff0000000000000ull
               ? sign | infinity
               : sign | infinity | (uint16_t)(1u << (mantissa_bits - 1)) |
                     (uint16_t)((magnitude >> (52 - mantissa_bits)) & ((1u << mantissa_bits) - 1));
  int bias = (1 << (exponent_bits - 1)) - 1;
  int exponent = (int)(magnitude >> 52) - 1023 + bias; /* biased exponent in the target format */
  if (exponent >= (1 << exponent_bits) - 1) return sign | infinity;
  /* Double subnormals lie far below every target's range: they round to zero below. */
  uint64_t significand = (magnitude & 0xfffffffffffffull) | (magnitude >> 52 ? 1ull << 52 : 0);
  int shift = 52 - mantissa_bits + (exponent < 1 ? 1 - exponent : 0); /* bits dropped */
  if (shift > 54) return sign;                                        /* below half the smallest subnormal */
  uint64_t kept = significand >> shift;
  uint64_t dropped = significand & ((1ull << shift) - 1);
  uint64_t half = 1ull << (shift - 1);
  if (dropped > half || (dropped == half && (kept & 1))) kept++;
  /* A normal result carries its implicit bit into the exponent field (which is why exponent - 1
   * is added); rounding up to the next binade, or to inf, carries the same way. */
  uint64_t result = exponent < 1 ? kept : ((uint64_t)(exponent - 1) << mantissa_bits) + kept;
  return sign | (uint16_t)result;
}

static inline uint16_t double_to_half(double x) { return narrow_double(x, 5, 10); }

/* double → E4M3 ("fn"): narrow_double would take exponent field 15 for infinity, but E4M3 uses it
 * for normal numbers (all but mantissa 7), so from 128 on x/2 (exact) is rounded one binade down
 * and the exponent field raised by one; a result that reaches 0x7F (480) or beyond is NaN. */
static unsigned char double_to_e4m3(double x) {
  unsigned char sign = signbit(x) ? 0x80 : 0;
  if (isnan(x)) return sign | 0x7f;
  if (fabs(x) < 128) return (unsigned char)narrow_double(x, 4, 3);
  unsigned magnitude = narrow_double(x / 2, 4, 3) & 0x7f;
  if (magnitude >= 0x78) return sign | 0x7f; /* x/2 reached E4M3's "infinity": far beyond 448 */
  magnitude += 0x08;
  return sign | (unsigned char)(magnitude > 0x7f ? 0x7f : magnitude);
}

static unsigned char double_to_u8(double x) {
  if (!(x > 0)) return 0; /* also NaN */
  return x >= 255 ? 255 : (unsigned char)nearbyint(x);
}

/* Encodes doubles as a quantized type (F4_E2M1 is never written: left as zeros). */
static void quantized_from_f64(dtype t, const double *src, unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (t == DTYPE_F8_E4M3) p[i] = double_to_e4m3(src[i]);
    if (t == DTYPE_F8_E5M2) p[i] = (unsigned char)narrow_double(src[i], 5, 2);
    if (t == DTYPE_U8) p[i] = double_to_u8(src[i]);
  }
  if (t == DTYPE_F4_E2M1) memset(p, 0, (n + 1) / 2);
}

/* float → bfloat16 in float bits: add just under half an ulp (plus the kept bit, for ties to
 * even) and truncate; the carry handles binade changes and overflow to inf. */
static inline uint16_t float_to_bfloat16(float f) {
  uint32_t bits = bits_of_float(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(bits >> 16 | 0x0040); /* quiet NaN */
  return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1)) >> 16);
}

/* The bulk loops below work eight elements at a time with GCC vector types, compiled for AVX-512,
 * AVX2 and the baseline and picked at load time (target_clones), and give exactly the results of
 * the element-wise conversions above. */
#if defined(__x86_64__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

typedef uint64_t u64x8 __attribute__((vector_size(64)));
typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef uint16_t u16x8 __attribute__((vector_size(16)));
typedef float f32x8 __attribute__((vector_size(32)));
typedef double f64x8 __attribute__((vector_size(64)));

/* n doubles → the 16-bit format with exponent_bits and mantissa_bits (narrow_double's rounding).
 * Values whose results are normal numbers (or overflow to inf) are rounded with integer arithmetic
 * on their bits: rebias the exponent, add just under half an ulp plus the kept bit (ties to even),
 * shift; the carry moves into the exponent as needed. A group of 32 with any other value goes
 * through narrow_double. */
static inline __attribute__((always_inline)) void narrow_doubles(const double *src, unsigned char *dst, size_t n,
                                                                 int exponent_bits, int mantissa_bits) {
  const int shift = 52 - mantissa_bits, bias = (1 << (exponent_bits - 1)) - 1;
  const uint64_t lowest = (uint64_t)(1023 + 1 - bias) << 52; /* the target's smallest normal */
  const uint64_t beyond = (uint64_t)(1023 + 1 + bias) << 52; /* twice its largest binade */
  const uint64_t rebias = (uint64_t)(1023 - bias) << 52, below_half = ((uint64_t)1 << (shift - 1)) - 1;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    u16x8 narrow[4];
    u64x8 outside = {0}; /* lanes 0 or ~0 */
    for (int v = 0; v < 4; v++) {
      u64x8 bits;
      memcpy(&bits, src + i + 8 * v, sizeof bits);
      u64x8 magnitude = bits & 0x7fffffffffffffffull;
      outside |= (u64x8)(magnitude < lowest) | (u64x8)(magnitude >= beyond);
      u64x8 rebiased = magnitude - rebias;
      u64x8 rounded = (rebiased + below_half + ((rebiased >> shift) & 1)) >> shift | ((bits >> 48) & 0x8000);
      narrow[v] = __builtin_convertvector(rounded, u16x8);
    }
    outside |= __builtin_shufflevector(outside, outside, 4, 5, 6, 7, 0, 1, 2, 3);
    outside |= __builtin_shufflevector(outside, outside, 2, 3, 0, 1, 6, 7, 4, 5);
    outside |= __builtin_shufflevector(outside, outside, 1, 0, 3, 2, 5, 4, 7, 6);
    if (!outside[0]) {
      memcpy(dst + 2 * i, narrow, sizeof narrow);
      continue;
    }
    for (size_t k = i; k < i + 32; k++) {
      uint16_t h = narrow_double(src[k], exponent_bits, mantissa_bits);
      memcpy(dst + 2 * k, &h, 2);
    }
  }
  for (; i < n; i++) {
    uint16_t h = narrow_double(src[i], exponent_bits, mantissa_bits);
    memcpy(dst + 2 * i, &h, 2);
  }
}

VECTOR_CLONES static void doubles_to_bfloat16(const double *src, unsigned char *dst, size_t n) {
  narrow_doubles(src, dst, n, 8, 7);
}

/* The widest conversion loops used (tests lower it to reach every loop on one CPU). */
static _Atomic int simd_cap = DTYPE_SIMD_ALL;

void dtype_simd_cap(dtype_simd level) { simd_cap = level; }

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* doubles → bfloat16 with AVX-512 (F and VL), eight at a time, exactly as narrow_double rounds: a
 * value whose result is a normal number (or overflows to inf) is converted to float truncated
 * (round toward zero, one instruction) with the lowest bit set when that was inexact (round to
 * odd: 24 bits ≥ bf16's 8 + 2, so no double rounding), then rounded to nearest even on the float's
 * bits; eight with any other value (zero, subnormal results, inf, NaN) go through narrow_double.
 * Returns the elements done (a multiple of 8). */
__attribute__((target("avx512f,avx512vl"))) static size_t doubles_to_bfloat16_avx512(const double *src,
                                                                                     unsigned char *dst, size_t n) {
  const __m512i magnitude_mask = _mm512_set1_epi64(0x7fffffffffffffffLL);
  const __m512i lowest = _mm512_set1_epi64((long long)((uint64_t)(1023 - 126) << 52)); /* 2^-126 */
  const __m512i beyond = _mm512_set1_epi64((long long)((uint64_t)(1023 + 128) << 52)); /* 2^128 */
  const __m256i one = _mm256_set1_epi32(1), below_half = _mm256_set1_epi32(0x7fff);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m512d x = _mm512_loadu_pd(src + i);
    __m512i magnitude = _mm512_and_si512(_mm512_castpd_si512(x), magnitude_mask);
    if (_mm512_cmplt_epu64_mask(magnitude, lowest) | _mm512_cmpge_epu64_mask(magnitude, beyond)) {
      doubles_to_bfloat16(src + i, dst + 2 * i, 8);
      continue;
    }
    __m256 truncated = _mm512_cvt_roundpd_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask8 inexact = _mm512_cmp_pd_mask(_mm512_cvtps_pd(truncated), x, _CMP_NEQ_UQ);
    __m256i bits = _mm256_castps_si256(truncated);
    bits = _mm256_mask_or_epi32(bits, inexact, bits, one);
    __m256i tie = _mm256_and_si256(_mm256_srli_epi32(bits, 16), one);
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(bits, below_half), tie), 16);
    _mm_storeu_si128((__m128i *)(void *)(dst + 2 * i), _mm256_cvtepi32_epi16(rounded));
  }
  return i;
}

/* doubles_to_bfloat16_avx512 with AVX512-BF16: the same truncation to float with a sticky bit
 * (taken from the 29 bits the truncation drops: the float is normal, so they are exactly those),
 * then one instruction rounding float to bfloat16 to nearest even (exact for normal floats). */
__attribute__((target("avx512f,avx512vl,avx512bf16"))) static size_t
doubles_to_bfloat16_avx512bf16(const double *src, unsigned char *dst, size_t n) {
  const __m512i magnitude_mask = _mm512_set1_epi64(0x7fffffffffffffffLL);
  const __m512i lowest = _mm512_set1_epi64((long long)((uint64_t)(1023 - 126) << 52)); /* 2^-126 */
  const __m512i beyond = _mm512_set1_epi64((long long)((uint64_t)(1023 + 128) << 52)); /* 2^128 */
  const __m512i dropped = _mm512_set1_epi64((1LL << 29) - 1);
  const __m256i one = _mm256_set1_epi32(1);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m512d x = _mm512_loadu_pd(src + i);
    __m512i bits = _mm512_castpd_si512(x);
    __m512i magnitude = _mm512_and_si512(bits, magnitude_mask);
    if (_mm512_cmplt_epu64_mask(magnitude, lowest) | _mm512_cmpge_epu64_mask(magnitude, beyond)) {
      doubles_to_bfloat16(src + i, dst + 2 * i, 8);
      continue;
    }
    __m256 truncated = _mm512_cvt_roundpd_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask8 inexact = _mm512_test_epi64_mask(bits, dropped);
    __m256i odd = _mm256_mask_or_epi32(_mm256_castps_si256(truncated), inexact, _mm256_castps_si256(truncated), one);
    __m128bh rounded = _mm256_cvtneps_pbh(_mm256_castsi256_ps(odd));
    _mm_storeu_si128((__m128i *)(void *)(dst + 2 * i), (__m128i)rounded);
  }
  return i;
}

static bool has_avx512bf16(void) {
  static int known = -1; /* a benign race: every thread computes the same value */
  if (known < 0)
    known =
        __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  return known && simd_cap >= DTYPE_SIMD_AVX512BF16;
}

static bool has_avx512vl(void) {
  static int known = -1; /* a benign race: every thread computes the same value */
  if (known < 0) known = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  return known && simd_cap >= DTYPE_SIMD_AVX512;
}
#endif

/* doubles → bfloat16: the AVX-512 loop where the CPU has it, else (and for the tail) narrow_doubles. */
static void doubles_to_bfloat16_best(const double *src, unsigned char *dst, size_t n) {
  size_t done = 0;
#if defined(__x86_64__) && defined(__GNUC__)
  if (has_avx512bf16())
    done = doubles_to_bfloat16_avx512bf16(src, dst, n);
  else if (has_avx512vl())
    done = doubles_to_bfloat16_avx512(src, dst, n);
#endif
  doubles_to_bfloat16(src + done, dst + 2 * done, n - done);
}

VECTOR_CLONES static void doubles_to_half(const double *src, unsigned char *dst, size_t n) {
  narrow_doubles(src, dst, n, 5, 10);
}

void fp8_to_f64_scaled(dtype t, const unsigned char *src, double scale, double *dst, size_t n) {
  pthread_once(&tables_once, build_tables);
  const double *table = t == DTYPE_F8_E5M2 ? e5m2_table : e4m3_table;
  double *restrict out = dst;
  for (size_t i = 0; i < n; i++) out[i] = table[src[i]] * scale; /* a table beat bit arithmetic 2:1 */
}

/* How far ahead of a conversion its source is prefetched: the source is usually a file mapping,
 * read once, whose next page the hardware prefetcher does not fetch in time (3× faster with it). */
#define PREFETCH_BYTES 1024

/* bfloat16 → double: widen to float bits (<< 16), convert; exact. */
VECTOR_CLONES static void bfloat16_to_doubles(const unsigned char *src, double *dst, size_t n) {
  size_t i = 0;
  for (; i + 32 <= n; i += 32) { /* one cache line of source at a time */
    __builtin_prefetch(src + 2 * i + PREFETCH_BYTES);
    for (size_t k = i; k < i + 32; k += 8) {
      u16x8 b;
      memcpy(&b, src + 2 * k, sizeof b);
      f64x8 d = __builtin_convertvector((f32x8)(__builtin_convertvector(b, u32x8) << 16), f64x8);
      memcpy(dst + k, &d, sizeof d);
    }
  }
  for (; i + 8 <= n; i += 8) {
    u16x8 b;
    memcpy(&b, src + 2 * i, sizeof b);
    f64x8 d = __builtin_convertvector((f32x8)(__builtin_convertvector(b, u32x8) << 16), f64x8);
    memcpy(dst + i, &d, sizeof d);
  }
  for (; i < n; i++) {
    uint16_t b;
    memcpy(&b, src + 2 * i, 2);
    dst[i] = bfloat16_to_float(b);
  }
}

typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));
typedef float f32x16 __attribute__((vector_size(64)));

/* bfloat16 → float (exact), sixteen at a time. */
VECTOR_CLONES static void bfloat16_to_floats(const unsigned char *src, float *dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    if (!(i & 31)) __builtin_prefetch(src + 2 * i + PREFETCH_BYTES);
    u16x16 b;
    memcpy(&b, src + 2 * i, sizeof b);
    u32x16 w = __builtin_convertvector(b, u32x16) << 16;
    memcpy(dst + i, &w, sizeof w);
  }
  for (; i < n; i++) {
    uint16_t b;
    memcpy(&b, src + 2 * i, 2);
    dst[i] = bfloat16_to_float(b);
  }
}

/* float → bfloat16 as float_to_bfloat16 (NaN kept quiet, else round to nearest even), sixteen at a
 * time. */
VECTOR_CLONES static void floats_to_bfloat16(const float *src, unsigned char *dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    u32x16 bits;
    memcpy(&bits, src + i, sizeof bits);
    u32x16 nan = (u32x16)((bits & 0x7fffffffu) > 0x7f800000u);
    u32x16 rounded = (bits + 0x7fffu + ((bits >> 16) & 1)) >> 16, quiet = bits >> 16 | 0x0040;
    u16x16 h = __builtin_convertvector((nan & quiet) | (~nan & rounded), u16x16);
    memcpy(dst + 2 * i, &h, sizeof h);
  }
  for (; i < n; i++) {
    uint16_t b = float_to_bfloat16(src[i]);
    memcpy(dst + 2 * i, &b, 2);
  }
}

/* dst[i] = src[i]·scale[i] in doubles, eight at a time. */
VECTOR_CLONES static void scale_doubles(double *dst, const double *scale, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    f64x8 x, y;
    memcpy(&x, dst + i, sizeof x);
    memcpy(&y, scale + i, sizeof y);
    x *= y;
    memcpy(dst + i, &x, sizeof x);
  }
  for (; i < n; i++) dst[i] *= scale[i];
}

/* bfloat16 → double times scale[i], in one pass (the product rounds as x·scale[i] does). */
VECTOR_CLONES static void bfloat16_to_doubles_scaled(const unsigned char *src, const double *scale, double *dst,
                                                     size_t n) {
  size_t i = 0;
  for (; i + 32 <= n; i += 32) { /* one cache line of source at a time */
    __builtin_prefetch(src + 2 * i + PREFETCH_BYTES);
    for (size_t k = i; k < i + 32; k += 8) {
      u16x8 b;
      f64x8 g;
      memcpy(&b, src + 2 * k, sizeof b);
      memcpy(&g, scale + k, sizeof g);
      f64x8 d = __builtin_convertvector((f32x8)(__builtin_convertvector(b, u32x8) << 16), f64x8) * g;
      memcpy(dst + k, &d, sizeof d);
    }
  }
  for (; i < n; i++) {
    uint16_t b;
    memcpy(&b, src + 2 * i, 2);
    dst[i] = (double)bfloat16_to_float(b) * scale[i];
  }
}

/* bfloat16 → float times scale[i] (the product in double, rounded once to float), eight at a time. */
VECTOR_CLONES static void bfloat16_to_floats_scaled(const unsigned char *src, const double *scale, float *dst,
                                                    size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    u16x8 b;
    f64x8 g;
    memcpy(&b, src + 2 * i, sizeof b);
    memcpy(&g, scale + i, sizeof g);
    f64x8 d = __builtin_convertvector((f32x8)(__builtin_convertvector(b, u32x8) << 16), f64x8) * g;
    f32x8 f = __builtin_convertvector(d, f32x8);
    memcpy(dst + i, &f, sizeof f);
  }
  for (; i < n; i++) {
    uint16_t b;
    memcpy(&b, src + 2 * i, 2);
    dst[i] = (float)((double)bfloat16_to_float(b) * scale[i]);
  }
}

void dtype_to_f32_scaled(dtype t, const void *src, const double *scale, float *dst, size_t n) {
  if (t == DTYPE_BF16) {
    bfloat16_to_floats_scaled(src, scale, dst, n);
    return;
  }
  dtype_to_f32(t, src, dst, n);
  for (size_t i = 0; i < n; i++) dst[i] = (float)(dst[i] * scale[i]);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* bfloat16 → double with AVX-512, eight at a time, times scale[i] when scale is not NULL (one
 * rounding, as x·scale[i]): widen to float bits (<< 16) in one 256-bit register and convert into
 * one 512-bit register (the generic vectors above take two halves of each). Returns the elements
 * done (a multiple of 8). */
__attribute__((target("avx512f,avx512vl"))) static size_t
bfloat16_to_doubles_avx512(const unsigned char *src, const double *scale, double *dst, size_t n) {
  size_t i = 0;
#define WIDEN(k)                                                                                                       \
  _mm512_cvtps_pd(_mm256_castsi256_ps(                                                                                 \
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(src + 2 * (k)))), 16)))
  if (scale)
    for (; i + 8 <= n; i += 8) {
      if (!(i & 31)) __builtin_prefetch(src + 2 * i + PREFETCH_BYTES);
      _mm512_storeu_pd(dst + i, _mm512_mul_pd(WIDEN(i), _mm512_loadu_pd(scale + i)));
    }
  else
    for (; i + 8 <= n; i += 8) {
      if (!(i & 31)) __builtin_prefetch(src + 2 * i + PREFETCH_BYTES);
      _mm512_storeu_pd(dst + i, WIDEN(i));
    }
#undef WIDEN
  return i;
}
#endif

/* bfloat16 → double (times scale[i] when scale is not NULL): the AVX-512 loop where the CPU has
 * it, else (and for the tail) the generic vectors. */
static void bfloat16_to_doubles_best(const unsigned char *src, const double *scale, double *dst, size_t n) {
  size_t done = 0;
#if defined(__x86_64__) && defined(__GNUC__)
  if (has_avx512vl()) done = bfloat16_to_doubles_avx512(src, scale, dst, n);
#endif
  if (scale)
    bfloat16_to_doubles_scaled(src + 2 * done, scale + done, dst + done, n - done);
  else
    bfloat16_to_doubles(src + 2 * done, dst + done, n - done);
}

void dtype_to_f64_scaled(dtype t, const void *src, const double *scale, double *dst, size_t n) {
  if (t == DTYPE_BF16) {
    bfloat16_to_doubles_best(src, scale, dst, n);
    return;
  }
  dtype_to_f64(t, src, dst, n);
  scale_doubles(dst, scale, n);
}

void dtype_to_f64(dtype t, const void *src, double *dst, size_t n) {
  const unsigned char *p = src;
  switch (t) {
  case DTYPE_F64: memcpy(dst, src, n * sizeof(double)); break;
  case DTYPE_F32:
    for (size_t i = 0; i < n; i++) {
      float f;
      memcpy(&f, p + 4 * i, 4);
      dst[i] = f;
    }
    break;
  case DTYPE_F16:
    for (size_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, p + 2 * i, 2);
      dst[i] = half_to_float(h);
    }
    break;
  case DTYPE_BF16: bfloat16_to_doubles_best(p, NULL, dst, n); break;
  default: quantized_to_f64(t, p, dst, n); break;
  }
}

void dtype_to_f32(dtype t, const void *src, float *dst, size_t n) {
  const unsigned char *p = src;
  switch (t) {
  case DTYPE_F64:
    for (size_t i = 0; i < n; i++) {
      double d;
      memcpy(&d, p + 8 * i, 8);
      dst[i] = (float)d; /* IEEE conversion: round to nearest even, overflow to inf */
    }
    break;
  case DTYPE_F32: memcpy(dst, src, n * sizeof(float)); break;
  case DTYPE_F16:
    for (size_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, p + 2 * i, 2);
      dst[i] = half_to_float(h);
    }
    break;
  case DTYPE_BF16: bfloat16_to_floats(p, dst, n); break;
  default: /* quantized codes: exact as doubles; every F8/U8/F4/I8/I4 value is exact in a float too */
    for (size_t i = 0; i < n; i++) {
      double d;
      if (t == DTYPE_F4_E2M1)
        d = fp4_e2m1_value((p[i / 2] >> (4 * (i & 1))) & 15);
      else if (t == DTYPE_I4)
        d = (double)((p[i / 2] >> (4 * (i & 1))) & 15) - 8;
      else
        quantized_to_f64(t, p + dtype_bytes(t, 0, i), &d, 1);
      dst[i] = (float)d;
    }
    break;
  }
}

void dtype_from_f64(dtype t, const double *src, void *dst, size_t n) {
  unsigned char *p = dst;
  switch (t) {
  case DTYPE_F64: memcpy(dst, src, n * sizeof(double)); break;
  case DTYPE_F32:
    for (size_t i = 0; i < n; i++) {
      float f = (float)src[i];
      memcpy(p + 4 * i, &f, 4);
    }
    break;
  case DTYPE_F16: doubles_to_half(src, p, n); break;
  case DTYPE_BF16: doubles_to_bfloat16_best(src, p, n); break;
  default: quantized_from_f64(t, src, p, n); break;
  }
}

void dtype_from_f32(dtype t, const float *src, void *dst, size_t n) {
  unsigned char *p = dst;
  switch (t) {
  case DTYPE_F64:
    for (size_t i = 0; i < n; i++) {
      double d = src[i];
      memcpy(p + 8 * i, &d, 8);
    }
    break;
  case DTYPE_F32: memcpy(dst, src, n * sizeof(float)); break;
  case DTYPE_F16: /* float → double is exact, so this is still one rounding */
    for (size_t i = 0; i < n; i++) {
      uint16_t h = double_to_half(src[i]);
      memcpy(p + 2 * i, &h, 2);
    }
    break;
  case DTYPE_BF16: floats_to_bfloat16(src, p, n); break;
  default:
    for (size_t i = 0; t != DTYPE_F4_E2M1 && i < n; i++) {
      double d = src[i];
      quantized_from_f64(t, &d, p + i, 1);
    }
    if (t == DTYPE_F4_E2M1) memset(p, 0, (n + 1) / 2);
    break;
  }
}
