#include "eval/pack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "linalg/quantize.h"

int ct_scheme_parse(const char *name, int group, bool asymmetric, ct_scheme *s) {
  if (strcasecmp(name, "W4A16") == 0) {
    if (group < 1) return -1;
    *s = (ct_scheme){.kind = CT_W4A16, .bits = 4, .group = group, .symmetric = !asymmetric};
    return 0;
  }
  if (asymmetric || group != 0) return -1;
  if (strcasecmp(name, "NVFP4A16") == 0)
    return *s = (ct_scheme){.kind = CT_NVFP4A16, .bits = 4, .group = 16, .symmetric = true}, 0;
  if (strcasecmp(name, "W8A8") == 0) return *s = (ct_scheme){.kind = CT_W8A8, .bits = 8, .symmetric = true}, 0;
  if (strcasecmp(name, "FP8") == 0) return *s = (ct_scheme){.kind = CT_FP8, .bits = 8, .symmetric = true}, 0;
  if (strcasecmp(name, "FP8_BLOCK") == 0)
    return *s = (ct_scheme){.kind = CT_FP8, .bits = 8, .symmetric = true, .block = 128}, 0;
  if (strcasecmp(name, "MXFP4A16") == 0)
    return *s = (ct_scheme){.kind = CT_MXFP4A16, .bits = 4, .group = 32, .symmetric = true}, 0;
  return -1;
}

int ct_row_block(const ct_scheme *s) { return s->block > CT_ROW_BLOCK ? s->block : CT_ROW_BLOCK; }

const char *ct_scheme_name(const ct_scheme *s) {
  static const char *const names[] = {"W4A16", "W8A8", "FP8", "NVFP4A16", "MXFP4A16"};
  return s->block ? "FP8_BLOCK" : names[s->kind];
}

const char *ct_scheme_format(const ct_scheme *s) {
  static const char *const formats[] = {"pack-quantized", "int-quantized", "float-quantized", "nvfp4-pack-quantized",
                                        "mxfp4-pack-quantized"};
  return formats[s->kind];
}

int64_t ct_groups(const ct_scheme *s, int64_t cols) {
  return s->block ? (cols + s->block - 1) / s->block : s->group > 0 ? cols / s->group : 1;
}

/* int32 words holding n b-bit values, packed densely (pack_to_int32). */
static int64_t packed_words(int64_t n, int bits) { return (n * bits + 31) / 32; }

size_t ct_weight_bytes(const ct_scheme *s, int64_t rows, int64_t cols) {
  if (s->kind == CT_W4A16) return (size_t)(rows * packed_words(cols, s->bits)) * 4;
  if (s->kind == CT_NVFP4A16 || s->kind == CT_MXFP4A16) return (size_t)(rows * ((cols + 1) / 2));
  return (size_t)(rows * cols);
}

static ct_part_spec part(ct_part which, const char *suffix, const char *stored, int ndim, int64_t d0, int64_t d1,
                         size_t block_bytes) {
  return (ct_part_spec){.part = which,
                        .suffix = suffix,
                        .stored_dtype = stored,
                        .shape = {d0, d1},
                        .ndim = ndim,
                        .row_bytes = block_bytes};
}

int ct_parts(const ct_scheme *s, int64_t rows, int64_t cols, dtype t, ct_part_spec *parts) {
  if (s->group > 0 && (cols % s->group) != 0) return -1;
  const int64_t groups = ct_groups(s, cols), block = ct_row_block(s);
  const size_t weight_bytes = ct_weight_bytes(s, block, cols);
  int n = 0;
  switch (s->kind) {
  case CT_MXFP4A16:
    parts[n++] = part(CT_PART_WEIGHT, "weight_packed", "U8", 2, rows, (cols + 1) / 2, weight_bytes);
    parts[n++] = part(CT_PART_SCALE, "weight_scale", "U8", 2, rows, groups, (size_t)(block * groups));
    return n;
  case CT_NVFP4A16:
    parts[n++] = part(CT_PART_WEIGHT, "weight_packed", "U8", 2, rows, (cols + 1) / 2, weight_bytes);
    parts[n++] = part(CT_PART_SCALE, "weight_scale", "F8_E4M3", 2, rows, groups, (size_t)(block * groups));
    parts[n++] = part(CT_PART_GLOBAL, "weight_global_scale", "F32", 1, 1, 0, 0);
    return n;
  case CT_W4A16:
    parts[n++] = part(CT_PART_WEIGHT, "weight_packed", "I32", 2, rows, packed_words(cols, s->bits), weight_bytes);
    break;
  case CT_W8A8: parts[n++] = part(CT_PART_WEIGHT, "weight", "I8", 2, rows, cols, weight_bytes); break;
  case CT_FP8: parts[n++] = part(CT_PART_WEIGHT, "weight", "F8_E4M3", 2, rows, cols, weight_bytes); break;
  }
  if (s->block) /* one scale per block of rows too */
    parts[n++] = part(CT_PART_SCALE, "weight_scale", NULL, 2, (rows + s->block - 1) / s->block, groups,
                      (size_t)groups * dtype_size(t));
  else
    parts[n++] = part(CT_PART_SCALE, "weight_scale", NULL, 2, rows, groups, (size_t)(block * groups) * dtype_size(t));
  if (s->kind == CT_W4A16) parts[n++] = part(CT_PART_SHAPE, "weight_shape", "I64", 1, 2, 0, 0);
  if (!s->symmetric)
    parts[n++] = part(CT_PART_ZERO, "weight_zero_point", "I32", 2, packed_words(rows, s->bits), groups,
                      (size_t)(packed_words(block, s->bits) * groups) * 4);
  return n;
}

/* v rounded to dtype t (RNE), as a double: the value a scale of that dtype holds. */
static double round_to(dtype t, double v) {
  unsigned char bytes[8];
  double r;
  dtype_from_f64(t, &v, bytes, 1);
  dtype_to_f64(t, bytes, &r, 1);
  return r;
}

static double clamp(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* nearbyint(v) in the default rounding mode (to nearest, ties to even) without the library call:
 * adding and subtracting 1.5·2^52 leaves v rounded to an integer, exactly, for |v| < 2^51 (the
 * codes' range by far); larger values (and NaN) go to nearbyint. The only difference: a result of
 * zero is +0 where nearbyint keeps the sign (-0.3 → -0), which no code or decoded value can show. */
static inline double round_even(double v) {
  const double magic = 0x1.8p52;
  if (!(fabs(v) < 0x1p51)) return nearbyint(v);
  double shifted = v + magic; /* not folded: rotq is never built with -ffast-math */
  return shifted - magic;
}

/* fp8_e4m3_round (linalg/quantize.h) without frexp/ldexp: the step of v's binade read from its
 * exponent bits (3 fraction bits; binades below 2^-6 are E4M3's subnormals, step 2^-9),
 * saturating at ±448. */
static inline double e4m3_round(double v) {
  double a = fabs(v);
  if (!(a < 0x1p9)) return fp8_e4m3_round(v); /* ≥ 512, inf, NaN: the reference */
  uint64_t bits;
  memcpy(&bits, &a, sizeof bits);
  int exponent = (int)(bits >> 52) - 1023;
  if (exponent < -6) exponent = -6;
  uint64_t step_bits = (uint64_t)(exponent - 3 + 1023) << 52, inverse_bits = (uint64_t)(3 - exponent + 1023) << 52;
  double step, inverse; /* 2^(exponent − 3) and its inverse: products by them are exact */
  memcpy(&step, &step_bits, sizeof step);
  memcpy(&inverse, &inverse_bits, sizeof inverse);
  double r = round_even(a * inverse) * step;
  return copysign(r > 448 ? 448 : r, v);
}

/* Four doubles at a time (GCC vector extensions; AVX2 / AVX-512 clones where the CPU has them):
 * the same IEEE operations as the scalar code, lane by lane, so the results are bit for bit the
 * scalar ones. */
typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4l __attribute__((vector_size(32)));
typedef int32_t v4i __attribute__((vector_size(16)));
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

#define V4_SPLAT(v) ((v4d){(v), (v), (v), (v)})
/* a > b ? a : b and a < b ? a : b, lane by lane (as the scalar ternaries: a NaN a gives b) */
#define V4_SELECT(m, a, b) ((v4d)(((m) & (v4l)(a)) | (~(m) & (v4l)(b))))
#define V4_SELECT_L(m, a, b) (((m) & (a)) | (~(m) & (b)))
#define V4_MAX(a, b) V4_SELECT((v4l)((a) > (b)), a, b)
#define V4_MIN(a, b) V4_SELECT((v4l)((a) < (b)), a, b)

/* min(x, 0) and max(x, 0) over x[0..n) (a NaN is passed over, as fmin/fmax). */
CLONES static void range_of(const double *x, size_t n, double *lo_out, double *hi_out) {
  v4d lo = V4_SPLAT(0.0), hi = V4_SPLAT(0.0);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    v4d v;
    memcpy(&v, x + i, sizeof v);
    lo = V4_MIN(v, lo);
    hi = V4_MAX(v, hi);
  }
  double l = 0, h = 0;
  for (int k = 0; k < 4; k++) {
    l = lo[k] < l ? lo[k] : l;
    h = hi[k] > h ? hi[k] : h;
  }
  for (; i < n; i++) {
    l = x[i] < l ? x[i] : l;
    h = x[i] > h ? x[i] : h;
  }
  *lo_out = l, *hi_out = h;
}

/* u[i] = clamp(round_even(x[i] / sc) + z, qlo, qhi) + offset for sc > 0: |x[i] / sc| stays far
 * below 2^51 (|x| ≤ the range the scale was made from), so the rounding is the 1.5·2^52 trick
 * without its guard; clamping after rounding to integer bounds is clamping before it. */
CLONES static void int_codes(const double *x, size_t n, double sc, double z, double qlo, double qhi, int offset,
                             int *u) {
  const v4d magic = V4_SPLAT(0x1.8p52), vs = V4_SPLAT(sc), vz = V4_SPLAT(z), vlo = V4_SPLAT(qlo), vhi = V4_SPLAT(qhi);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    v4d v;
    memcpy(&v, x + i, sizeof v);
    v = v / vs;
    v = (v + magic) - magic + vz;
    v = V4_MAX(v, vlo);
    v = V4_MIN(v, vhi);
    v4i q = __builtin_convertvector(v, v4i) + offset;
    memcpy(u + i, &q, sizeof q);
  }
  for (; i < n; i++) u[i] = (int)clamp(round_even(x[i] / sc) + z, qlo, qhi) + offset;
}

/* The scale (rounded to t) and unsigned zero point of a group whose values span [lo, hi]
 * (lo = min(x, 0), hi = max(x, 0)). */
static void int_params_of_range(const ct_scheme *s, double lo, double hi, dtype t, double *scale, int *zero) {
  if (s->symmetric) {
    const double qmax = (1 << (s->bits - 1)) - 1;
    *scale = round_to(t, (hi > -lo ? hi : -lo) / qmax);
    *zero = 1 << (s->bits - 1);
    return;
  }
  const double qmax = (double)((1 << s->bits) - 1);
  double sc = round_to(t, (hi - lo) / qmax);
  *scale = sc;
  *zero = sc > 0 ? (int)clamp(round_even(-lo / sc), 0, qmax) : 0;
}

void ct_int_params(const ct_scheme *s, const double *x, size_t n, dtype t, double *scale, int *zero) {
  double lo, hi;
  range_of(x, n, &lo, &hi);
  int_params_of_range(s, lo, hi, t, scale, zero);
}

int ct_int_code(const ct_scheme *s, double v, double scale, int zero) {
  if (!(scale > 0)) return zero;
  const int offset = 1 << (s->bits - 1);
  if (s->symmetric) return (int)clamp(round_even(v / scale), -offset, offset - 1) + offset;
  return (int)clamp(round_even(v / scale) + zero, 0, (1 << s->bits) - 1);
}

double ct_int_value(int code, double scale, int zero, dtype t) { return round_to(t, scale * (double)(code - zero)); }

/* One group x[0..n) as unsigned codes u[0..n) (ct_int_code's, four at a time), its stored scale and
 * unsigned zero point (ct_int_params); fake[0..n) (or NULL) the decoded values before their
 * rounding to the weight's dtype. */
static void int_group(const ct_scheme *s, const double *x, size_t n, dtype t, int *u, double *scale, int *zero,
                      double *fake) {
  const int offset = 1 << (s->bits - 1);
  double sc;
  int z;
  ct_int_params(s, x, n, t, &sc, &z);
  if (!(sc > 0))
    for (size_t i = 0; i < n; i++) u[i] = z;
  else if (s->symmetric)
    int_codes(x, n, sc, 0, -offset, offset - 1, offset, u);
  else
    int_codes(x, n, sc, z, 0, (1 << s->bits) - 1, 0, u);
  for (size_t i = 0; fake && i < n; i++) fake[i] = sc * ((double)u[i] - z);
  *scale = sc;
  *zero = z;
}

/* The int codes from bfloat16 values in float, 16 lanes at a time.
 *
 * Why float division gives int_codes' integers exactly: x = a·2^p and the scale s = b·2^q are
 * bfloat16 (integers a, b < 2^8), so Q = x/s differs from any half-integer h by 0 or by
 * |x − h·s|/s ≥ 2^min(p, q−1)/s — at least 2^(p−q−8) when p ≤ q − 1, else at least 2^−9 — while
 * the float quotient is within 2^−24·|Q| of Q (≤ 2^(p−q−16), resp. ≤ 2^−20 for |Q| ≤ 16, which
 * the codes' range bounds). So the float quotient lies on the same side of every half-integer as
 * Q, or equals it when Q is one (then exactly representable): round-half-even of either is the
 * same, and so is the double path's. Rounded by adding and subtracting 1.5·2^23 (|Q| < 2^22). */
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef uint16_t v16h __attribute__((vector_size(32)));

/* 16 bfloat16 values at x widened to float (exactly: the high half of the float's bits), into v */
#define BF16_LOAD16(v, x)                                                                                              \
  do {                                                                                                                 \
    v16h h_;                                                                                                           \
    memcpy(&h_, (x), sizeof h_);                                                                                       \
    v16u bits_ = __builtin_convertvector(h_, v16u) << 16;                                                              \
    memcpy(&(v), &bits_, sizeof(v));                                                                                   \
  } while (0)
/* m ? a : b lane by lane, m a comparison's mask */
#define V16_SELECT(m, a, b) ((v16f)(((v16u)(m) & (v16u)(a)) | (~(v16u)(m) & (v16u)(b))))

/* min(x, 0) and max(x, 0) over a group of bfloat16 values (NaN-free: the callers refused them). */
CLONES static void bf16_range(const uint16_t *x, size_t n, double *lo_out, double *hi_out) {
  v16f lo = {0}, hi = {0};
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v16f v;
    BF16_LOAD16(v, x + i);
    lo = V16_SELECT(v < lo, v, lo);
    hi = V16_SELECT(v > hi, v, hi);
  }
  float l = 0, h = 0;
  for (int k = 0; k < 16; k++) {
    l = lo[k] < l ? lo[k] : l;
    h = hi[k] > h ? hi[k] : h;
  }
  for (; i < n; i++) {
    uint32_t bits = (uint32_t)x[i] << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    l = f < l ? f : l;
    h = f > h ? f : h;
  }
  *lo_out = l, *hi_out = h;
}

CLONES static void bf16_int_codes(const uint16_t *x, size_t n, float sc, float z, float qlo, float qhi, int offset,
                                  int *u) {
  const v16f magic = (v16f){0} + 0x1.8p23f, vs = (v16f){0} + sc, vz = (v16f){0} + z, vlo = (v16f){0} + qlo,
             vhi = (v16f){0} + qhi;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v16f v;
    BF16_LOAD16(v, x + i);
    v = v / vs;
    v = (v + magic) - magic + vz;
    v = V16_SELECT(v > vlo, v, vlo);
    v = V16_SELECT(v < vhi, v, vhi);
    v16i q = __builtin_convertvector(v, v16i) + offset;
    memcpy(u + i, &q, sizeof q);
  }
  for (; i < n; i++) {
    uint32_t bits = (uint32_t)x[i] << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    u[i] = (int)clamp(round_even((double)f / sc) + z, qlo, qhi) + offset;
  }
}

/* int_group of bfloat16 values: ct_int_params' scale and zero from the group's range, its codes. */
static void bf16_int_group(const ct_scheme *s, const uint16_t *x, size_t n, int *u, double *scale, int *zero) {
  const int offset = 1 << (s->bits - 1);
  double lo, hi, sc;
  int z;
  bf16_range(x, n, &lo, &hi);
  int_params_of_range(s, lo, hi, DTYPE_BF16, &sc, &z);
  if (!(sc > 0))
    for (size_t i = 0; i < n; i++) u[i] = z;
  else if (s->symmetric)
    bf16_int_codes(x, n, (float)sc, 0, (float)-offset, (float)(offset - 1), offset, u);
  else
    bf16_int_codes(x, n, (float)sc, (float)z, 0, (float)((1 << s->bits) - 1), 0, u);
  *scale = sc;
  *zero = z;
}

/* Packs the b-bit unsigned values u[0..n) densely into words (pack_to_int32: value i at bit
 * b·i of the little-endian bit string, crossing words where it must). */
/* pack_bits of 8·count 4-bit values: whole words, vectorized. */
CLONES static void pack_nibbles(const int *u, int64_t count, int32_t *words) {
  for (int64_t w = 0; w < count; w++) {
    uint32_t word = 0;
    for (int k = 0; k < 8; k++) word |= ((uint32_t)u[8 * w + k] & 15u) << (4 * k);
    words[w] = (int32_t)word;
  }
}

static void pack_bits(const int *u, int64_t n, int bits, int32_t *words) {
  const int64_t count = packed_words(n, bits);
  if (bits == 4) { /* 8 values a word, value i at bits 4·(i mod 8) */
    pack_nibbles(u, n / 8, words);
    for (int64_t w = n / 8; w < count; w++) {
      uint32_t word = 0;
      for (int64_t k = 0; k < 8 && 8 * w + k < n; k++) word |= ((uint32_t)u[8 * w + k] & 15u) << (4 * k);
      words[w] = (int32_t)word;
    }
    return;
  }
  for (int64_t w = 0; w < count; w++) words[w] = 0;
  for (int64_t i = 0; i < n; i++) {
    uint64_t bit = (uint64_t)i * (uint64_t)bits;
    uint64_t v = (uint64_t)u[i] & ((1u << bits) - 1);
    uint32_t *word = (uint32_t *)&words[bit / 32];
    word[0] |= (uint32_t)(v << (bit % 32));
    if (bit % 32 + (uint64_t)bits > 32) word[1] |= (uint32_t)(v >> (32 - bit % 32));
  }
}

void ct_pack_int_row(const ct_scheme *s, const int *u, int64_t cols, void *weight) {
  if (s->kind == CT_W4A16)
    pack_bits(u, cols, s->bits, weight);
  else
    for (int64_t i = 0; i < cols; i++) ((int8_t *)weight)[i] = (int8_t)(u[i] - (1 << (s->bits - 1)));
}

int ct_pack_zero_points(const ct_scheme *s, const int *zeros, int64_t n, int64_t groups, int32_t *zero) {
  const int64_t words = packed_words(n, s->bits);
  int *column = malloc((size_t)(n ? n : 1) * sizeof *column);
  int32_t *packed = malloc((size_t)(words ? words : 1) * sizeof *packed);
  if (!column || !packed) {
    free(column);
    free(packed);
    return -1;
  }
  for (int64_t g = 0; g < groups; g++) { /* packed along the output dimension: column g of the zero points */
    for (int64_t r = 0; r < n; r++) column[r] = zeros[r * groups + g];
    pack_bits(column, n, s->bits, packed);
    for (int64_t k = 0; k < words; k++) zero[k * groups + g] = packed[k];
  }
  free(column);
  free(packed);
  return 0;
}

uint8_t ct_e4m3_encode(double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  uint8_t sign = (uint8_t)(bits >> 63 << 7);
  double a = fabs(v);
  if (a < 0x1p-6) return sign | (uint8_t)(a * 0x1p9); /* zero or subnormal: m·2^-9, m exact */
  int exponent = (int)((bits >> 52) & 0x7ff) - 1023;  /* the normal binade 2^exponent */
  return sign | (uint8_t)((exponent + 7) << 3) | (uint8_t)((bits >> 49) & 7);
}

/* E4M3 codes of x[0..n) / sc (sc > 0 finite), four at a time: e4m3_round and ct_e4m3_encode lane
 * by lane (a lane at or beyond 512, which the scale's rounding cannot give but a subnormal scale
 * might, sends its four to the scalar code). */
CLONES static void fp8_codes(const double *x, size_t n, double sc, uint8_t *codes) {
  const v4d vs = V4_SPLAT(sc), magic = V4_SPLAT(0x1.8p52), limit = V4_SPLAT(448.0), big = V4_SPLAT(0x1p9);
  const v4l abs_mask = {INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX}, low = {-6, -6, -6, -6};
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    v4d v;
    memcpy(&v, x + i, sizeof v);
    v = v / vs;
    v4d a = (v4d)((v4l)v & abs_mask);
    v4l fine = (v4l)(a < big);
    if (!(fine[0] & fine[1] & fine[2] & fine[3])) {
      for (int k = 0; k < 4; k++) codes[i + k] = ct_e4m3_encode(e4m3_round(x[i + k] / sc));
      continue;
    }
    v4l exponent = ((v4l)a >> 52) - 1023;
    exponent = V4_SELECT_L(exponent < low, low, exponent);
    v4d step = (v4d)((exponent - 3 + 1023) << 52), inverse = (v4d)((3 - exponent + 1023) << 52);
    v4d r = ((a * inverse + magic) - magic) * step;
    r = V4_MIN(r, limit);
    /* the code of the magnitude r: subnormal (r < 2^-6) m·2^-9, else exponent and 3 mantissa bits */
    v4l rb = (v4l)r;
    v4l normal = (((rb >> 52) - 1023 + 7) << 3) | ((rb >> 49) & 7);
    v4l sub = __builtin_convertvector(r * V4_SPLAT(0x1p9), v4l);
    v4l code = V4_SELECT_L((v4l)(r < V4_SPLAT(0x1p-6)), sub, normal) | (((v4l)v >> 63) & 0x80);
    for (int k = 0; k < 4; k++) codes[i + k] = (uint8_t)code[k];
  }
  for (; i < n; i++) codes[i] = ct_e4m3_encode(e4m3_round(x[i] / sc));
}

/* One row of FP8: codes (E4M3 bytes), the stored scale, the decoded values. */
static void fp8_row(const double *x, int64_t cols, dtype t, uint8_t *codes, double *scale, double *fake) {
  double lo, hi;
  range_of(x, (size_t)cols, &lo, &hi);
  double amax = hi > -lo ? hi : -lo;
  double sc = round_to(t, amax / 448);
  bool usable = sc > 0 && isfinite(sc);
  if (usable)
    fp8_codes(x, (size_t)cols, sc, codes);
  else
    memset(codes, 0, (size_t)cols);
  for (int64_t i = 0; fake && i < cols; i++) fake[i] = usable ? sc * fp8_e4m3_value(codes[i]) : 0;
  *scale = usable ? sc : 0;
}

double ct_nvfp4_global_scale(double amax) {
  float g = (float)(448.0 * 6.0 / amax);
  return isfinite(g) && g > 0 ? g : 1;
}

/* f rounded to bfloat16 (RNE), as a double. */
static double bf16_of_float(float f) {
  unsigned char bytes[2];
  double r;
  dtype_from_f32(DTYPE_BF16, &f, bytes, 1);
  dtype_to_f64(DTYPE_BF16, bytes, &r, 1);
  return r;
}

/* fp4_e2m1_round (linalg/quantize.h) without libm: steps 0.5 below 2, 1 below 4, 2 above,
 * saturating at ±6. */
static inline double e2m1_round(double v) {
  double a = fabs(v);
  if (!(a < 6)) return isnan(v) ? fp4_e2m1_round(v) : copysign(6, v);
  const double step = a < 2 ? 0.5 : a < 4 ? 1 : 2, inverse = a < 2 ? 2 : a < 4 ? 1 : 0.5; /* powers of 2: exact */
  double r = round_even(a * inverse) * step;
  return copysign(r > 6 ? 6 : r, v);
}

/* The E2M1 nibble of v, on the E2M1 grid: sign bit 8, magnitude index into 0 .. 6. */
static uint8_t e2m1_encode(double v) {
  /* 2·|v| ∈ {0, 1, 2, 3, 4, 6, 8, 12} → its index */
  static const uint8_t index_of_twice[13] = {0, 1, 2, 3, 4, 0, 5, 0, 6, 0, 0, 0, 7};
  return (uint8_t)((signbit(v) ? 8 : 0) | index_of_twice[(int)(fabs(v) * 2)]);
}

/* One row of NVFP4A16: packed nibbles, the E4M3 block scales (as values), the decoded values. */
static void nvfp4_row(const double *x, int64_t cols, double global, uint8_t *packed, double *scale, double *fake) {
  memset(packed, 0, (size_t)(cols + 1) / 2);
  for (int64_t b = 0; b < cols; b += 16) {
    int64_t count = cols - b < 16 ? cols - b : 16;
    double amax = 0;
    for (int64_t i = 0; i < count; i++) amax = fabs(x[b + i]) > amax ? fabs(x[b + i]) : amax;
    double s = e4m3_round(amax / 6 * global);
    float effective = (float)(s / global); /* float32(s) / float32(global), correctly rounded */
    scale[b / 16] = s;
    for (int64_t i = 0; i < count; i++) {
      double q = effective > 0 ? e2m1_round(x[b + i] / effective) : 0;
      packed[(b + i) / 2] |= (uint8_t)(e2m1_encode(q) << (4 * ((b + i) % 2)));
      if (fake) fake[b + i] = bf16_of_float((float)(q * effective));
    }
  }
}

/* One row of MXFP4A16: packed nibbles, the E8M0 scales (as their values 2^e), the decoded values. */
static void mxfp4_row(const double *x, int64_t cols, dtype t, uint8_t *packed, double *scale, double *fake) {
  memset(packed, 0, (size_t)(cols + 1) / 2);
  for (int64_t b = 0; b < cols; b += 32) {
    int64_t count = cols - b < 32 ? cols - b : 32;
    double amax = 0;
    for (int64_t i = 0; i < count; i++) amax = fabs(x[b + i]) > amax ? fabs(x[b + i]) : amax;
    int e = -127; /* an all-zero group: byte 0 */
    if (amax > 0) {
      int exponent;
      double m = frexp(amax, &exponent); /* amax = m·2^exponent, m in [0.5, 1) */
      e = exponent - 1 + (m >= 0.875) - 2;
      if (e < -127) e = -127;
      if (e > 127) e = 127;
    }
    double s = ldexp(1, e);
    scale[b / 32] = s;
    for (int64_t i = 0; i < count; i++) {
      double q = amax > 0 ? e2m1_round(x[b + i] / s) : 0;
      packed[(b + i) / 2] |= (uint8_t)(e2m1_encode(q) << (4 * ((b + i) % 2)));
      if (fake) fake[b + i] = round_to(t, q * s);
    }
  }
}

/* FP8_BLOCK: rows [0, n) (n ≤ block, the rows of one block of rows) of x, a scale per block of
 * columns from the amax over the block's rows. */
static void fp8_block_rows(const ct_scheme *s, const double *x, int64_t n, int64_t cols, dtype t, uint8_t *codes,
                           double *scale, double *fake) {
  for (int64_t c0 = 0, g = 0; c0 < cols; c0 += s->block, g++) {
    int64_t width = cols - c0 < s->block ? cols - c0 : s->block;
    double amax = 0;
    for (int64_t r = 0; r < n; r++) {
      double lo, hi;
      range_of(x + r * cols + c0, (size_t)width, &lo, &hi);
      amax = hi > amax ? hi : amax;
      amax = -lo > amax ? -lo : amax;
    }
    double sc = round_to(t, amax / 448);
    bool usable = sc > 0 && isfinite(sc);
    for (int64_t r = 0; r < n; r++) {
      uint8_t *out = codes + r * cols + c0;
      if (usable)
        fp8_codes(x + r * cols + c0, (size_t)width, sc, out);
      else
        memset(out, 0, (size_t)width);
      for (int64_t i = 0; fake && i < width; i++) fake[r * cols + c0 + i] = usable ? sc * fp8_e4m3_value(out[i]) : 0;
    }
    scale[g] = usable ? sc : 0;
  }
}

/* The int schemes' rows: each group's codes, scale and zero point (from the doubles w, or straight
 * from the bfloat16 rows raw when w is NULL, then without fake), each row packed, then the zero
 * points. -1 when out of memory. */
static int int_rows(const ct_scheme *s, const double *w, const uint16_t *raw, int64_t n, int64_t cols, dtype t,
                    void *weight, double *scale, int32_t *zero, double *fake) {
  const int64_t groups = ct_groups(s, cols), width = cols / groups;
  int *u = malloc((size_t)cols * sizeof *u);
  int *zeros = malloc((size_t)(n * groups) * sizeof *zeros);
  int status = u && zeros ? 0 : -1;
  for (int64_t r = 0; status == 0 && r < n; r++) {
    for (int64_t g = 0; g < groups; g++) {
      const int64_t at = r * cols + g * width;
      if (w)
        int_group(s, w + at, (size_t)width, t, u + g * width, &scale[r * groups + g], &zeros[r * groups + g],
                  fake ? fake + at : NULL);
      else
        bf16_int_group(s, raw + at, (size_t)width, u + g * width, &scale[r * groups + g], &zeros[r * groups + g]);
    }
    ct_pack_int_row(s, u, cols, (char *)weight + ct_weight_bytes(s, r, cols));
  }
  if (status == 0 && !s->symmetric) status = ct_pack_zero_points(s, zeros, n, groups, zero);
  free(u);
  free(zeros);
  return status;
}

int ct_quantize_rows(const ct_scheme *s, const double *w, int64_t n, int64_t cols, dtype t, double global_amax,
                     void *weight, double *scale, int32_t *zero, double *fake) {
  const int64_t groups = ct_groups(s, cols);
  if (s->kind == CT_MXFP4A16) {
    for (int64_t r = 0; r < n; r++)
      mxfp4_row(w + r * cols, cols, t, (uint8_t *)weight + r * ((cols + 1) / 2), scale + r * groups,
                fake ? fake + r * cols : NULL);
    return 0;
  }
  if (s->block) { /* n rows from a multiple of the block: scales [⌈n / block⌉, groups] */
    for (int64_t r0 = 0; r0 < n; r0 += s->block)
      fp8_block_rows(s, w + r0 * cols, n - r0 < s->block ? n - r0 : s->block, cols, t, (uint8_t *)weight + r0 * cols,
                     scale + r0 / s->block * groups, fake ? fake + r0 * cols : NULL);
    return 0;
  }
  if (s->kind == CT_NVFP4A16) {
    const double global = ct_nvfp4_global_scale(global_amax);
    for (int64_t r = 0; r < n; r++)
      nvfp4_row(w + r * cols, cols, global, (uint8_t *)weight + r * ((cols + 1) / 2), scale + r * groups,
                fake ? fake + r * cols : NULL);
    return 0;
  }
  if (s->kind == CT_FP8) {
    for (int64_t r = 0; r < n; r++)
      fp8_row(w + r * cols, cols, t, (uint8_t *)weight + r * cols, scale + r, fake ? fake + r * cols : NULL);
    return 0;
  }
  return int_rows(s, w, NULL, n, cols, t, weight, scale, zero, fake);
}

int ct_quantize_rows_bf16(const ct_scheme *s, const uint16_t *w, int64_t n, int64_t cols, void *weight, double *scale,
                          int32_t *zero) {
  if ((s->kind != CT_W4A16 && s->kind != CT_W8A8) || s->block) return 1;
  return int_rows(s, NULL, w, n, cols, DTYPE_BF16, weight, scale, zero, NULL);
}
