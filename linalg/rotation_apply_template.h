/* Template of the rotation application for one element type; included by rotation_apply.c after
 * defining REAL (double or float), SUFFIX(x) (x_f64 / x_f32), GEMM (cblas_dgemm / cblas_sgemm),
 * and the members of a rotation and of the kernels that hold that type:
 * SCALE(r), SIGNS(factor), DENSE(r), FWHT(k), COLUMNS(k), SIGN_MATRIX(k), SCALE_ROWS(k).
 *
 * Input side (rows): each length-order segment x of a row becomes x·R, computed in place on the
 * contiguous segment. Output side (cols): Rᵀ·W is x·R for every column x, computed in place on a
 * tile of columns of a group of `order` rows, the columns being the vector lanes: the same
 * arithmetic element by element, so both sides give bitwise the same numbers for Hadamard
 * rotations. Tiles span whole rows of up to COLUMN_TILE elements, which keeps the strided access
 * streaming (one page per row segment). */

/* Hadamard, one contiguous segment: scale (D/√order), H_2^k on each run of 2^k elements, then each
 * ±1 factor across its index, outer factors first. scratch holds order elements. */
static void SUFFIX(hadamard_segment)(const rotation *r, const fwht_kernels *k, REAL *x, REAL *scratch) {
  size_t order = (size_t)r->order, run = (size_t)1 << r->log2_sylvester;
  if (run > 1)
    for (size_t l = 0; l < order / run; l++) FWHT(k)(x + l * run, r->log2_sylvester, SCALE(r) + l * run);
  else
    SCALE_ROWS(k)(x, order, 1, 1, SCALE(r));
  size_t outer = 1, inner = order;
  for (int f = 0; f < r->factor_count; f++) {
    size_t m = (size_t)r->factor[f].order;
    inner /= m;
    for (size_t o = 0; o < outer; o++) {
      REAL *block = x + o * m * inner;
      SIGN_MATRIX(k)(SIGNS(&r->factor[f]), (int)m, block, inner, scratch, inner);
      memcpy(block, scratch, sizeof *block * m * inner);
    }
    outer *= m;
  }
}

/* Hadamard, a tile (order rows × width columns, row stride ld): the same steps across rows.
 * scratch holds m × width for the largest factor m. */
static void SUFFIX(hadamard_tile)(const rotation *r, const fwht_kernels *k, REAL *x, size_t width, size_t ld,
                                  REAL *scratch) {
  size_t order = (size_t)r->order, run = (size_t)1 << r->log2_sylvester;
  if (run > 1)
    for (size_t l = 0; l < order / run; l++)
      COLUMNS(k)(x + l * run * ld, r->log2_sylvester, width, ld, SCALE(r) + l * run);
  else
    SCALE_ROWS(k)(x, order, width, ld, SCALE(r));
  size_t outer = 1, inner = order; /* in rows */
  for (int f = 0; f < r->factor_count; f++) {
    size_t m = (size_t)r->factor[f].order;
    inner /= m;
    for (size_t o = 0; o < outer; o++)
      for (size_t j = 0; j < inner; j++) {
        REAL *first = x + (o * m * inner + j) * ld; /* rows first + l·inner·ld, l < m */
        SIGN_MATRIX(k)(SIGNS(&r->factor[f]), (int)m, first, inner * ld, scratch, width);
        for (size_t i = 0; i < m; i++) memcpy(first + i * inner * ld, scratch + i * width, sizeof *first * width);
      }
    outer *= m;
  }
}

/* Fallback, one contiguous segment viewed as a run × m matrix X: H_2^k·diag(scale)·X, then X·Q. */
static void SUFFIX(fallback_segment)(const rotation *r, const fwht_kernels *k, REAL *x, REAL *scratch) {
  size_t order = (size_t)r->order, m = (size_t)r->dense_order, run = order / m;
  COLUMNS(k)(x, r->log2_sylvester, m, m, SCALE(r));
  GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)run, (int)m, (int)m, 1, x, (int)m, DENSE(r), (int)m, 0, scratch,
       (int)m);
  memcpy(x, scratch, sizeof *x * order);
}

/* Fallback, a tile whose rows are (j, p), j < run, p < m: scale and H_2^k across j, Qᵀ across p.
 * scratch holds m × width. */
static void SUFFIX(fallback_tile)(const rotation *r, const fwht_kernels *k, REAL *x, size_t width, size_t ld,
                                  REAL *scratch) {
  size_t m = (size_t)r->dense_order, run = (size_t)r->order / m;
  for (size_t p = 0; p < m; p++) COLUMNS(k)(x + p * ld, r->log2_sylvester, width, m * ld, SCALE(r));
  for (size_t j = 0; j < run; j++) {
    REAL *slice = x + j * m * ld;
    GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)width, (int)m, 1, DENSE(r), (int)m, slice, (int)ld, 0,
         scratch, (int)width);
    for (size_t i = 0; i < m; i++) memcpy(slice + i * ld, scratch + i * width, sizeof *slice * width);
  }
}

/* Dense R on row segments: blocks of rows copied out, multiplied back into place. */
static int SUFFIX(dense_rows)(const rotation *r, REAL *w, size_t rows, size_t cols, size_t ld) {
  size_t order = (size_t)r->order, block = vectors_per_block(order, rows);
  REAL *copy = checked_malloc(sizeof *copy * block * order);
  if (!copy) return -1;
  for (size_t r0 = 0; r0 < rows; r0 += block) {
    size_t count = rows - r0 < block ? rows - r0 : block;
    for (size_t c0 = 0; c0 < cols; c0 += order) {
      for (size_t i = 0; i < count; i++) memcpy(copy + i * order, w + (r0 + i) * ld + c0, sizeof *copy * order);
      GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)count, (int)order, (int)order, 1, copy, (int)order, DENSE(r),
           (int)order, 0, w + r0 * ld + c0, (int)ld);
    }
  }
  free(copy);
  return 0;
}

/* Dense Rᵀ on groups of rows: tiles of columns copied out, multiplied back into place. */
static int SUFFIX(dense_cols)(const rotation *r, REAL *w, size_t rows, size_t cols, size_t ld) {
  size_t order = (size_t)r->order, tile = vectors_per_block(order, cols);
  REAL *copy = checked_malloc(sizeof *copy * tile * order);
  if (!copy) return -1;
  for (size_t g = 0; g < rows; g += order)
    for (size_t c0 = 0; c0 < cols; c0 += tile) {
      size_t width = cols - c0 < tile ? cols - c0 : tile;
      for (size_t i = 0; i < order; i++) memcpy(copy + i * width, w + (g + i) * ld + c0, sizeof *copy * width);
      GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)order, (int)width, (int)order, 1, DENSE(r), (int)order, copy,
           (int)width, 0, w + g * ld + c0, (int)ld);
    }
  free(copy);
  return 0;
}

int SUFFIX(rotation_apply_rows)(const rotation *r, REAL *w, size_t rows, size_t cols, size_t ld) {
  assert(cols % (size_t)r->n == 0 && ld >= cols);
  size_t order = (size_t)r->order;
  const fwht_kernels *k = fwht_kernels_for(simd_best());
  if (r->kind == ROTATION_KIND_DENSE) return SUFFIX(dense_rows)(r, w, rows, cols, ld);
  if (r->kind == ROTATION_KIND_KRONECKER) {
    /* every segment X (a.n × b.n) becomes X·B (all at once), then Aᵀ·X */
    size_t nb = (size_t)r->b->n, na = (size_t)r->a->n;
    int status = SUFFIX(rotation_apply_rows)(r->b, w, rows, cols, ld);
    for (size_t i = 0; status == 0 && i < rows; i++)
      for (size_t c0 = 0; status == 0 && c0 < cols; c0 += order)
        status = SUFFIX(rotation_apply_cols)(r->a, w + i * ld + c0, na, nb, nb);
    return status;
  } else {
    REAL *scratch = checked_malloc(sizeof *scratch * order);
    if (!scratch) return -1;
    for (size_t i = 0; i < rows; i++)
      for (size_t c0 = 0; c0 < cols; c0 += order) {
        if (r->kind == ROTATION_KIND_HADAMARD)
          SUFFIX(hadamard_segment)(r, k, w + i * ld + c0, scratch);
        else
          SUFFIX(fallback_segment)(r, k, w + i * ld + c0, scratch);
      }
    free(scratch);
  }
  return 0;
}

int SUFFIX(rotation_apply_cols)(const rotation *r, REAL *w, size_t rows, size_t cols, size_t ld) {
  assert(rows % (size_t)r->n == 0 && ld >= cols);
  size_t order = (size_t)r->order;
  const fwht_kernels *k = fwht_kernels_for(simd_best());
  if (r->kind == ROTATION_KIND_DENSE) return SUFFIX(dense_cols)(r, w, rows, cols, ld);
  if (r->kind == ROTATION_KIND_KRONECKER) {
    /* rows (l, p) of a group: Bᵀ over p (all groups at once), then Aᵀ over l for each p */
    size_t nb = (size_t)r->b->n, na = (size_t)r->a->n;
    int status = SUFFIX(rotation_apply_cols)(r->b, w, rows, cols, ld);
    for (size_t g = 0; status == 0 && g < rows; g += order)
      for (size_t p = 0; status == 0 && p < nb; p++)
        status = SUFFIX(rotation_apply_cols)(r->a, w + (g + p) * ld, na, cols, ld * nb);
    return status;
  } else {
    size_t tile = cols < COLUMN_TILE ? cols : COLUMN_TILE, m = 1;
    for (int f = 0; f < r->factor_count; f++)
      if ((size_t)r->factor[f].order > m) m = (size_t)r->factor[f].order;
    if (r->kind == ROTATION_KIND_FALLBACK) m = (size_t)r->dense_order;
    REAL *scratch = checked_malloc(sizeof *scratch * m * tile);
    if (!scratch) return -1;
    for (size_t g = 0; g < rows; g += order)
      for (size_t c0 = 0; c0 < cols; c0 += tile) {
        size_t width = cols - c0 < tile ? cols - c0 : tile;
        if (r->kind == ROTATION_KIND_HADAMARD)
          SUFFIX(hadamard_tile)(r, k, w + g * ld + c0, width, ld, scratch);
        else
          SUFFIX(fallback_tile)(r, k, w + g * ld + c0, width, ld, scratch);
      }
    free(scratch);
  }
  return 0;
}
