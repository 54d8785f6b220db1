/* Template of the Walsh–Hadamard kernels for one element type and one instruction set; included
 * by fwht.c once per variant, after defining
 *   REAL    double or float          LANES  elements per vector (a power of two)
 *   VEC     GCC vector of LANES REALs INDEX  GCC vector of LANES same-size integers
 *   IOTA    the INDEX {0, 1, ..., LANES-1}
 *   TARGET  a function attribute selecting the instruction set (or nothing)
 *   NAME(x) the variant's name for x
 *   RADIX_LOG_MAX  most stages done per pass in registers (2^RADIX_LOG_MAX vectors live: 4 with
 *           32 vector registers, 3 with 16)
 *   MULTIPLY_ADD(a, s, x)  a + s·x for vectors a, x and a scalar s (a fused multiply-add where
 *           the instruction set has one: s is ±1, so s·x is exact and fusing changes no bit).
 * A butterfly maps (a, b) to (a + b, a - b); every variant does the same butterflies on the same
 * pairs in the same stage order, so all variants agree bitwise. Loads and stores go through
 * memcpy: no alignment is assumed. */

/* One pass of K consecutive stages h, 2h, ..., 2^(K−1)·h on rows j of x (row j at x + j·ld, `width`
 * elements): the 2^K rows j + q·h (q < 2^K) of each group are loaded LANES elements at a time,
 * taken through the K stages in registers (radix 2^K), and stored once. If scale is not NULL, row
 * j is first multiplied by scale[j] as it is loaded. K is a constant where this is inlined. */
TARGET __attribute__((always_inline)) static inline void NAME(pass)(REAL *x, size_t rows, size_t width, size_t ld,
                                                                    size_t h, const int K, const REAL *scale) {
  const size_t n = (size_t)1 << K, span = h << K;
  for (size_t block = 0; block < rows; block += span)
    for (size_t j = block; j < block + h; j++) {
      REAL *r = x + j * ld, c[16];
#pragma GCC unroll 16
      for (size_t q = 0; q < n; q++) c[q] = scale ? scale[j + q * h] : 1;
      size_t t = 0;
      for (; t + LANES <= width; t += LANES) {
        VEC v[16];
#pragma GCC unroll 16
        for (size_t q = 0; q < n; q++) {
          memcpy(&v[q], r + q * h * ld + t, sizeof v[q]);
          if (scale) v[q] *= c[q];
        }
#pragma GCC unroll 4
        for (size_t d = 1; d < n; d *= 2)
#pragma GCC unroll 16
          for (size_t q = 0; q < n; q++)
            if (!(q & d)) {
              VEC a = v[q], b = v[q | d];
              v[q] = a + b;
              v[q | d] = a - b;
            }
#pragma GCC unroll 16
        for (size_t q = 0; q < n; q++) memcpy(r + q * h * ld + t, &v[q], sizeof v[q]);
      }
      for (; t < width; t++) {
        REAL v[16];
        for (size_t q = 0; q < n; q++) v[q] = scale ? r[q * h * ld + t] * c[q] : r[q * h * ld + t];
        for (size_t d = 1; d < n; d *= 2)
          for (size_t q = 0; q < n; q++)
            if (!(q & d)) {
              REAL a = v[q], b = v[q | d];
              v[q] = a + b;
              v[q | d] = a - b;
            }
        for (size_t q = 0; q < n; q++) r[q * h * ld + t] = v[q];
      }
    }
}

/* Stages h = h_first, 2·h_first, ... < h_end on rows j of x (row j at x + j·ld, `width` elements),
 * in as few passes as the registers allow (up to RADIX_LOG_MAX stages per pass, the stages shared
 * evenly between passes). Elements within a row are independent, so a row is processed LANES at a
 * time, then one by one. If scale is not NULL, row j is first multiplied by scale[j], as the first
 * pass loads it. Every butterfly is the same whatever the grouping of stages into passes, so the
 * result is bitwise that of one stage at a time. */
TARGET static void NAME(stages)(REAL *x, size_t rows, size_t width, size_t ld, size_t h_first, size_t h_end,
                                const REAL *scale) {
  int left = 0;
  for (size_t h = h_first; h < h_end; h *= 2) left++;
  int passes = (left + RADIX_LOG_MAX - 1) / RADIX_LOG_MAX;
  size_t h = h_first;
  while (left > 0) {
    int k = (left + passes - 1) / passes;
    if (scale) { /* the scale factors take registers too: at most 8 rows in flight */
      if (k > 3) k = 3;
      if (k == 1)
        NAME(pass)(x, rows, width, ld, h, 1, scale);
      else if (k == 2)
        NAME(pass)(x, rows, width, ld, h, 2, scale);
      else
        NAME(pass)(x, rows, width, ld, h, 3, scale);
      passes = (left - k + RADIX_LOG_MAX - 1) / RADIX_LOG_MAX + 1;
    } else if (k == 1)
      NAME(pass)(x, rows, width, ld, h, 1, NULL);
    else if (k == 2)
      NAME(pass)(x, rows, width, ld, h, 2, NULL);
    else if (k == 3)
      NAME(pass)(x, rows, width, ld, h, 3, NULL);
    else
      NAME(pass)(x, rows, width, ld, h, 4, NULL);
    h <<= k;
    left -= k;
    passes--;
    scale = NULL;
  }
}

/* One butterfly stage of distance H < LANES inside the vector v: lane i pairs with lane i ^ H;
 * the lower lane of each pair takes the sum, the upper one the difference. */
#if defined(__clang__) /* clang has no __builtin_shuffle: lane by lane (it builds the shuffles) */
#define IN_VECTOR_STAGE(v, H)                                                                                          \
  do {                                                                                                                 \
    VEC partner_, sum_, difference_;                                                                                   \
    for (int l_ = 0; l_ < LANES; l_++) partner_[l_] = v[l_ ^ (H)];                                                     \
    sum_ = v + partner_, difference_ = partner_ - v;                                                                   \
    for (int l_ = 0; l_ < LANES; l_++) v[l_] = (l_ & (H)) ? difference_[l_] : sum_[l_];                                \
  } while (0)
#else
#define IN_VECTOR_STAGE(v, H)                                                                                          \
  do {                                                                                                                 \
    VEC partner_ = __builtin_shuffle(v, IOTA ^ (H));                                                                   \
    VEC sum_ = v + partner_, difference_ = partner_ - v;                                                               \
    v = __builtin_shuffle(sum_, difference_, IOTA + (((IOTA & (H)) != 0) & LANES));                                    \
  } while (0)
#endif

/* Row i of x (width elements, row stride ld) times scale[i], for rows < count. */
TARGET static void NAME(scale_rows)(REAL *x, size_t count, size_t width, size_t ld, const REAL *scale) {
  for (size_t i = 0; i < count; i++) {
    REAL *row = x + i * ld, c = scale[i];
    size_t t = 0;
    for (; t + LANES <= width; t += LANES) {
      VEC v;
      memcpy(&v, row + t, sizeof v);
      v *= c;
      memcpy(row + t, &v, sizeof v);
    }
    for (; t < width; t++) row[t] *= c;
  }
}

/* x ← (x ∘ scale)·H_2^log_n for a contiguous vector (scale may be NULL: no scaling): the scaling
 * and the stages below LANES inside each vector in one pass, the other stages between vectors
 * (first within blocks that stay in L1, then across blocks). */
TARGET static void NAME(contiguous)(REAL *x, int log_n, const REAL *scale) {
  size_t n = (size_t)1 << log_n;
  if (n < LANES) {
    if (n == 1 && scale) x[0] *= scale[0];
    NAME(stages)(x, n, 1, 1, 1, n, scale);
    return;
  }
  for (size_t i = 0; i < n; i += LANES) {
    VEC v;
    memcpy(&v, x + i, sizeof v);
    if (scale) {
      VEC c;
      memcpy(&c, scale + i, sizeof c);
      v *= c;
    }
    IN_VECTOR_STAGE(v, 1);
#if LANES >= 4
    IN_VECTOR_STAGE(v, 2);
#endif
#if LANES >= 8
    IN_VECTOR_STAGE(v, 4);
#endif
#if LANES >= 16
    IN_VECTOR_STAGE(v, 8);
#endif
    memcpy(x + i, &v, sizeof v);
  }
  /* Rows of LANES elements: stage h (in elements) is stage h / LANES between rows. */
  size_t rows = n / LANES, block = (16384 / sizeof(REAL)) / LANES;
  if (block > rows) block = rows;
  for (size_t b = 0; b < rows; b += block) NAME(stages)(x + b * LANES, block, LANES, LANES, 1, block, NULL);
  NAME(stages)(x, rows, LANES, LANES, block, rows, NULL);
}

/* x ← H_2^log_n·diag(scale)·x for a 2^log_n × width matrix with row stride ld, i.e. the transform
 * of every column (scale may be NULL): the first stages (carrying the scaling) within blocks of
 * rows that fit in about 1 MB (L2), then the remaining stages. */
TARGET static void NAME(columns)(REAL *x, int log_n, size_t width, size_t ld, const REAL *scale) {
  size_t n = (size_t)1 << log_n, block = 1;
  while (block < n && 2 * block * width * sizeof(REAL) <= ((size_t)1 << 20)) block *= 2;
  if (block == 1 && scale) { /* no stage within blocks to carry the scaling */
    NAME(scale_rows)(x, n, width, ld, scale);
    scale = NULL;
  }
  for (size_t b = 0; b < n && block > 1; b += block)
    NAME(stages)(x + b * ld, block, width, ld, 1, block, scale ? scale + b : NULL);
  NAME(stages)(x, n, width, ld, block, n, NULL);
}

/* y[i] = Σ_l signs_t[i·m + l]·x[l] for i < m, where x[l] is the row of v elements at x + l·stride
 * and y[i] the row at y + i·v (m × v, contiguous), signs_t the transposed ±1 matrix: y = Hᵀ·x.
 * The sum runs over l in order. Per chunk of two vectors of a row, the m chunks are first packed
 * contiguously (rows at power-of-two strides would fight over a few L1 sets), then four outputs
 * at a time take them (eight accumulators). */
TARGET static void NAME(sign_matrix)(const REAL *signs_t, int m, const REAL *x, size_t stride, REAL *y, size_t v) {
  size_t t = 0;
  REAL *packed = v >= 2 * LANES ? malloc(sizeof *packed * 2 * LANES * (size_t)m) : NULL;
  /* without the packing buffer (short rows, or no memory) the scalar loop below does it all */
  for (; packed && t + 2 * LANES <= v; t += 2 * LANES) {
    for (int l = 0; l < m; l++)
      memcpy(packed + (size_t)l * 2 * LANES, x + (size_t)l * stride + t, sizeof *packed * 2 * LANES);
    int i = 0;
    for (; i + 4 <= m; i += 4) {
      const REAL *s = signs_t + (size_t)i * m;
      VEC a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, c0 = {0}, c1 = {0}, d0 = {0}, d1 = {0};
      for (int l = 0; l < m; l++) {
        VEC x0, x1;
        memcpy(&x0, packed + (size_t)l * 2 * LANES, sizeof x0);
        memcpy(&x1, packed + (size_t)l * 2 * LANES + LANES, sizeof x1);
        REAL sa = s[l], sb = s[m + l], sc = s[2 * m + l], sd = s[3 * m + l];
        a0 = MULTIPLY_ADD(a0, sa, x0);
        a1 = MULTIPLY_ADD(a1, sa, x1);
        b0 = MULTIPLY_ADD(b0, sb, x0);
        b1 = MULTIPLY_ADD(b1, sb, x1);
        c0 = MULTIPLY_ADD(c0, sc, x0);
        c1 = MULTIPLY_ADD(c1, sc, x1);
        d0 = MULTIPLY_ADD(d0, sd, x0);
        d1 = MULTIPLY_ADD(d1, sd, x1);
      }
      REAL *out = y + (size_t)i * v + t;
      memcpy(out, &a0, sizeof a0);
      memcpy(out + LANES, &a1, sizeof a1);
      memcpy(out + v, &b0, sizeof b0);
      memcpy(out + v + LANES, &b1, sizeof b1);
      memcpy(out + 2 * v, &c0, sizeof c0);
      memcpy(out + 2 * v + LANES, &c1, sizeof c1);
      memcpy(out + 3 * v, &d0, sizeof d0);
      memcpy(out + 3 * v + LANES, &d1, sizeof d1);
    }
    for (; i < m; i++) {
      const REAL *s = signs_t + (size_t)i * m;
      VEC a0 = {0}, a1 = {0};
      for (int l = 0; l < m; l++) {
        VEC x0, x1;
        memcpy(&x0, packed + (size_t)l * 2 * LANES, sizeof x0);
        memcpy(&x1, packed + (size_t)l * 2 * LANES + LANES, sizeof x1);
        a0 = MULTIPLY_ADD(a0, s[l], x0);
        a1 = MULTIPLY_ADD(a1, s[l], x1);
      }
      memcpy(y + (size_t)i * v + t, &a0, sizeof a0);
      memcpy(y + (size_t)i * v + t + LANES, &a1, sizeof a1);
    }
  }
  free(packed);
  for (; t < v; t++)
    for (int i = 0; i < m; i++) {
      const REAL *s = signs_t + (size_t)i * m;
      REAL a = 0;
      for (int l = 0; l < m; l++) a += s[l] * x[(size_t)l * stride + t];
      y[(size_t)i * v + t] = a;
    }
}

#undef IN_VECTOR_STAGE
