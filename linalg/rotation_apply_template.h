/* Template of the rotation application for one element type; included by rotation_apply.c after
 * defining REAL (double or float), SUFFIX(x) (x_f64 / x_f32), GEMM (cblas_dgemm / cblas_sgemm),
 * and the members of a rotation and of the kernels that hold that type:
 * SCALE(r), SIGNS(factor), DENSE(r), FWHT(k), COLUMNS(k), SIGN_MATRIX(k).
 *
 * A block is `order` consecutive vectors (rows of the rotation's input) each of `width` elements,
 * stored contiguously (order × width): width 1 is one row segment of W (x·R), width > 1 is a tile
 * of W's columns gathered from a group of rows (Rᵀ·W, which is x·R for every column x). Both run
 * the same arithmetic, so rows and columns give bitwise the same numbers. */

/* The Hadamard kernel on a block: scale (D/√order), H_2^k on each run of 2^k vectors, then each
 * ±1 factor across its index (outer factors first). scratch holds order × width. */
static void SUFFIX(hadamard_block)(const rotation *r, const fwht_kernels *k, REAL *x, size_t width,
                                   REAL *scratch) {
  size_t order = (size_t)r->order, run = (size_t)1 << r->log2_sylvester;
  const REAL *scale = SCALE(r);
  for (size_t i = 0; i < order; i++)
    for (size_t t = 0; t < width; t++) x[i * width + t] *= scale[i];
  if (run > 1)
    for (size_t l = 0; l < order / run; l++) {
      if (width == 1) FWHT(k)(x + l * run, r->log2_sylvester);
      else COLUMNS(k)(x + l * run * width, r->log2_sylvester, width, width);
    }
  size_t outer = 1, inner = order * width;
  for (int f = 0; f < r->factor_count; f++) {
    size_t m = (size_t)r->factor[f].order;
    inner /= m;
    for (size_t o = 0; o < outer; o++) {
      REAL *block = x + o * m * inner;
      SIGN_MATRIX(k)(SIGNS(&r->factor[f]), (int)m, block, scratch, inner);
      memcpy(block, scratch, sizeof *block * m * inner);
    }
    outer *= m;
  }
}

/* The fallback kernel on a block, viewed as [2^k, m, width]: scale, H_2^k across the first index,
 * Q (m × m) across the second. */
static void SUFFIX(fallback_block)(const rotation *r, const fwht_kernels *k, REAL *x, size_t width,
                                   REAL *scratch) {
  size_t order = (size_t)r->order, m = (size_t)r->dense_order, run = order / m;
  const REAL *scale = SCALE(r);
  for (size_t i = 0; i < order; i++)
    for (size_t t = 0; t < width; t++) x[i * width + t] *= scale[i];
  COLUMNS(k)(x, r->log2_sylvester, m * width, m * width);
  if (width == 1) { /* the run × m matrix X becomes X·Q */
    GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)run, (int)m, (int)m, 1, x, (int)m, DENSE(r),
         (int)m, 0, scratch, (int)m);
    memcpy(x, scratch, sizeof *x * order);
    return;
  }
  for (size_t j = 0; j < run; j++) { /* each m × width slice X_j becomes Qᵀ·X_j */
    REAL *slice = x + j * m * width;
    GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)width, (int)m, 1, DENSE(r), (int)m, slice,
         (int)width, 0, scratch, (int)width);
    memcpy(slice, scratch, sizeof *slice * m * width);
  }
}

static void SUFFIX(structured_block)(const rotation *r, const fwht_kernels *k, REAL *x, size_t width,
                                     REAL *scratch) {
  if (r->kind == ROTATION_KIND_HADAMARD) SUFFIX(hadamard_block)(r, k, x, width, scratch);
  else SUFFIX(fallback_block)(r, k, x, width, scratch);
}

/* Dense R on row segments: blocks of rows copied out, multiplied back into place. */
static void SUFFIX(dense_rows)(const rotation *r, REAL *w, size_t rows, size_t cols, size_t ld) {
  size_t order = (size_t)r->order, block = rows_per_block(order, rows);
  REAL *copy = checked_malloc(sizeof *copy * block * order);
  for (size_t r0 = 0; r0 < rows; r0 += block) {
    size_t count = rows - r0 < block ? rows - r0 : block;
    for (size_t c0 = 0; c0 < cols; c0 += order) {
      for (size_t i = 0; i < count; i++) memcpy(copy + i * order, w + (r0 + i) * ld + c0, sizeof *copy * order);
      GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)count, (int)order, (int)order, 1, copy,
           (int)order, DENSE(r), (int)order, 0, w + r0 * ld + c0, (int)ld);
    }
  }
  free(copy);
}

/* Dense Rᵀ on groups of rows: tiles of columns copied out, multiplied back into place. */
static void SUFFIX(dense_cols)(const rotation *r, REAL *w, size_t rows, size_t cols, size_t ld) {
  size_t order = (size_t)r->order, tile = rows_per_block(order, cols);
  REAL *copy = checked_malloc(sizeof *copy * tile * order);
  for (size_t g = 0; g < rows; g += order)
    for (size_t c0 = 0; c0 < cols; c0 += tile) {
      size_t width = cols - c0 < tile ? cols - c0 : tile;
      for (size_t i = 0; i < order; i++) memcpy(copy + i * width, w + (g + i) * ld + c0, sizeof *copy * width);
      GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)order, (int)width, (int)order, 1, DENSE(r),
           (int)order, copy, (int)width, 0, w + g * ld + c0, (int)ld);
    }
  free(copy);
}

void SUFFIX(rotation_apply_rows)(const rotation *r, REAL *w, size_t rows, size_t cols, size_t ld) {
  assert(cols % (size_t)r->n == 0 && ld >= cols);
  size_t order = (size_t)r->order;
  if (r->kind == ROTATION_KIND_DENSE) {
    SUFFIX(dense_rows)(r, w, rows, cols, ld);
  } else if (r->kind == ROTATION_KIND_KRONECKER) {
    /* every segment X (a.n × b.n) becomes X·B (all at once), then Aᵀ·X */
    size_t nb = (size_t)r->b->n, na = (size_t)r->a->n;
    SUFFIX(rotation_apply_rows)(r->b, w, rows, cols, ld);
    for (size_t i = 0; i < rows; i++)
      for (size_t c0 = 0; c0 < cols; c0 += order) SUFFIX(rotation_apply_cols)(r->a, w + i * ld + c0, na, nb, nb);
  } else {
    const fwht_kernels *k = fwht_kernels_for(simd_best());
    REAL *scratch = checked_malloc(sizeof *scratch * order);
    for (size_t i = 0; i < rows; i++)
      for (size_t c0 = 0; c0 < cols; c0 += order) SUFFIX(structured_block)(r, k, w + i * ld + c0, 1, scratch);
    free(scratch);
  }
}

void SUFFIX(rotation_apply_cols)(const rotation *r, REAL *w, size_t rows, size_t cols, size_t ld) {
  assert(rows % (size_t)r->n == 0 && ld >= cols);
  size_t order = (size_t)r->order;
  if (r->kind == ROTATION_KIND_DENSE) {
    SUFFIX(dense_cols)(r, w, rows, cols, ld);
  } else if (r->kind == ROTATION_KIND_KRONECKER) {
    /* rows (l, p) of a group: Bᵀ over p (all groups at once), then Aᵀ over l for each p */
    size_t nb = (size_t)r->b->n, na = (size_t)r->a->n;
    SUFFIX(rotation_apply_cols)(r->b, w, rows, cols, ld);
    for (size_t g = 0; g < rows; g += order)
      for (size_t p = 0; p < nb; p++) SUFFIX(rotation_apply_cols)(r->a, w + (g + p) * ld, na, cols, ld * nb);
  } else {
    const fwht_kernels *k = fwht_kernels_for(simd_best());
    size_t tile = tile_width(order, cols);
    REAL *block = checked_malloc(sizeof *block * order * tile), *scratch = checked_malloc(sizeof *scratch * order * tile);
    for (size_t g = 0; g < rows; g += order)
      for (size_t c0 = 0; c0 < cols; c0 += tile) {
        size_t width = cols - c0 < tile ? cols - c0 : tile;
        for (size_t i = 0; i < order; i++) memcpy(block + i * width, w + (g + i) * ld + c0, sizeof *block * width);
        SUFFIX(structured_block)(r, k, block, width, scratch);
        for (size_t i = 0; i < order; i++) memcpy(w + (g + i) * ld + c0, block + i * width, sizeof *block * width);
      }
    free(block);
    free(scratch);
  }
}
