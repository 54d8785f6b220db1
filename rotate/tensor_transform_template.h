/* Template of a command's arithmetic on one tensor part, for one compute precision; included by
 * tensor_transform.c after defining REAL (double or float), SUFFIX(x) (x_f64 / x_f32), TO_REAL and
 * FROM_REAL (st_to_f64 / dtype_from_f64, or the f32 pair: reading dequantizes), APPLY_ROWS and APPLY_COLS
 * (rotation_apply_rows_f64 / rotation_apply_cols_f64, or the f32 pair), TO_REAL_SCALED
 * (st_to_f64_scaled / st_to_f32_scaled) and NORM_IN_LOAD (1: the norm is fused while converting,
 * each product rounded to REAL once, as a separate multiplication would round it). Norm weights,
 * means, dot products and the bias shift stay float64; each operation rounds its result to REAL
 * once, as C's arithmetic conversions do. */

/* Part of the tensor in the compute precision: [rows, cols] with row stride ld. */
typedef struct SUFFIX(matrix) {
  REAL *x;
  size_t rows, cols, ld;
  size_t row0;       /* the tensor row of m's first row */
  const rotation *r; /* the rotation being applied (parallel bodies) */
  int heads, head_dim;
  int *failed; /* set (from any thread) when a rotation's scratch memory could not be allocated */
} SUFFIX(matrix);

/* Applies body(m, begin, end) with scratch failures recovered and recorded in *m->failed. */
static void SUFFIX(recovering)(SUFFIX(matrix) * m, void (*body)(SUFFIX(matrix) *, size_t, size_t), size_t begin,
                               size_t end) {
  rotation_scratch_recover(true);
  body(m, begin, end);
  if (rotation_scratch_failed() && m->failed) __atomic_store_n(m->failed, 1, __ATOMIC_RELAXED);
  rotation_scratch_recover(false);
}

/* Each row r of m ← r·(I − 2wwᵀ) (w of length m->cols). */
static void SUFFIX(reflect_rows)(SUFFIX(matrix) * m, const double *w) {
  for (size_t i = 0; i < m->rows; i++) {
    REAL *row = m->x + i * m->ld;
    double dot = 0;
    for (size_t j = 0; j < m->cols; j++) dot += row[j] * w[j];
    for (size_t j = 0; j < m->cols; j++) row[j] = (REAL)(row[j] - 2 * dot * w[j]);
  }
}

/* Each column of each group of n rows of m ← (I − 2wwᵀ)·column (w of length n). */
static void SUFFIX(reflect_columns)(SUFFIX(matrix) * m, const double *w, size_t n) {
  for (size_t g = 0; g + n <= m->rows; g += n)
    for (size_t j = 0; j < m->cols; j++) {
      double dot = 0;
      for (size_t i = 0; i < n; i++) dot += m->x[(g + i) * m->ld + j] * w[i];
      for (size_t i = 0; i < n; i++) {
        size_t k = (g + i) * m->ld + j;
        m->x[k] = (REAL)(m->x[k] - 2 * dot * w[i]);
      }
    }
}

/* Rows [row, row + m->rows) of t (the source, or a copy of some of its rows: then row counts from
 * the copy's first) into m (or the norm's identity value when the command
 * resets it), columns multiplied by g[j] if g (NORM_IN_LOAD only: the norm fused while each row is
 * in the L1 cache). Column c0 of m is column c0 + col of the tensor. */
static void SUFFIX(load)(const transform_context *ctx, const tensor_plan *plan, const st_tensor *t, size_t row,
                         size_t col, const double *g, SUFFIX(matrix) * m) {
  const rotate_command *c = plan->command;
  if (c->reset_norm) {
    double identity = c->is_bias || ctx->adapter->norm == NORM_RMS_PLUS_ONE ? 0.0 : 1.0; /* LayerNorm β: 0 */
    for (size_t i = 0; i < m->rows; i++)
      for (size_t j = 0; j < m->cols; j++) m->x[i * m->ld + j] = (REAL)identity;
    return;
  }
  const bool strided = m->cols < plan->cols;
#if NORM_IN_LOAD
  if (g) {
    for (size_t i = 0; i < m->rows; i++) {
      size_t ahead = (row + i + PREFETCH_ROWS) * plan->cols + col;
      if (strided && i + PREFETCH_ROWS < m->rows)
        prefetch_bytes(st_address(t, ahead), st_span(t, ahead, m->cols), false);
      TO_REAL_SCALED(t, (row + i) * plan->cols + col, m->cols, g, m->x + i * m->ld);
    }
    return;
  }
#else
  (void)g;
#endif
  if (m->ld == plan->cols && col == 0) { /* contiguous rows: one conversion */
    TO_REAL(t, row * plan->cols, m->rows * m->cols, m->x);
    return;
  }
  for (size_t i = 0; i < m->rows; i++) {
    size_t ahead = (row + i + PREFETCH_ROWS) * plan->cols + col, from = (row + i) * plan->cols + col;
    if (strided && i + PREFETCH_ROWS < m->rows) prefetch_bytes(st_address(t, ahead), st_span(t, ahead, m->cols), false);
    TO_REAL(t, from, m->cols, m->x + i * m->ld);
  }
}

/* m to the output dtype at out, row i at out + i·out_ld elements; an out_in_source expert [out, in]
 * (the whole of m) transposed: element (i, j) at out + (j·m->rows + i) elements. */
static void SUFFIX(store)(const tensor_plan *plan, const SUFFIX(matrix) * m, unsigned char *out, size_t out_ld) {
  size_t element = dtype_size(plan->out_dtype);
  if (plan->command->out_in_source) {
    REAL *column = malloc(sizeof(REAL) * (m->rows ? m->rows : 1)), one;
    for (size_t j = 0; j < m->cols; j++) {
      for (size_t i = 0; column && i < m->rows; i++) column[i] = m->x[i * m->ld + j];
      if (column)
        FROM_REAL(plan->out_dtype, column, out + j * m->rows * element, m->rows);
      else /* no memory for a column: element by element */
        for (size_t i = 0; i < m->rows; i++)
          one = m->x[i * m->ld + j], FROM_REAL(plan->out_dtype, &one, out + (j * m->rows + i) * element, 1);
    }
    free(column);
    return;
  }
  if (m->ld == m->cols && out_ld == m->cols) {
    FROM_REAL(plan->out_dtype, m->x, out, m->rows * m->cols);
    return;
  }
  for (size_t i = 0; i < m->rows; i++) {
    if (i + PREFETCH_ROWS < m->rows)
      prefetch_bytes(out + (i + PREFETCH_ROWS) * out_ld * element, m->cols * element, true);
    FROM_REAL(plan->out_dtype, m->x + i * m->ld, out + i * out_ld * element, m->cols);
  }
}

/* W[:, j] *= g[j]: the norm's weight moves into the linear it feeds (g from column col on). */
static void SUFFIX(fuse_norm)(SUFFIX(matrix) * m, const double *g) {
  for (size_t i = 0; i < m->rows; i++)
    for (size_t j = 0; j < m->cols; j++) m->x[i * m->ld + j] = (REAL)(m->x[i * m->ld + j] * g[j]);
}

/* In-out weights [experts·in, out]: row r (tensor row m->row0 + r) *= g[(m->row0 + r) % in]. */
static void SUFFIX(fuse_norm_rows)(SUFFIX(matrix) * m, const double *g, size_t in) {
  for (size_t i = 0; i < m->rows; i++) {
    double scale = g[(m->row0 + i) % in];
    for (size_t j = 0; j < m->cols; j++) m->x[i * m->ld + j] = (REAL)(m->x[i * m->ld + j] * scale);
  }
}

/* Subtracts the mean over the residual (hidden) dimension: of each row for the embedding
 * [vocab, hidden], of each column for a writer [hidden, in] (and of a writer's bias). Sums run in
 * order of the other index, in float64. */
static void SUFFIX(bake_mean)(SUFFIX(matrix) * m, bool rows_are_tokens) {
  size_t outer = rows_are_tokens ? m->rows : m->cols, inner = rows_are_tokens ? m->cols : m->rows;
  for (size_t o = 0; o < outer; o++) {
    double sum = 0;
    for (size_t i = 0; i < inner; i++) sum += m->x[rows_are_tokens ? o * m->ld + i : i * m->ld + o];
    double mean = sum / (double)inner;
    for (size_t i = 0; i < inner; i++) {
      size_t k = rows_are_tokens ? o * m->ld + i : i * m->ld + o;
      m->x[k] = (REAL)(m->x[k] - mean);
    }
  }
}

static void SUFFIX(rotate_rows_body)(SUFFIX(matrix) * m, size_t begin, size_t end) {
  APPLY_ROWS(m->r, m->x + begin * m->ld, end - begin, m->cols, m->ld);
}

static void SUFFIX(rotate_cols_body)(SUFFIX(matrix) * m, size_t begin, size_t end) {
  APPLY_COLS(m->r, m->x + begin, m->rows, end - begin, m->ld);
}

/* Each row x viewed as [heads, head_dim] becomes R_headsᵀ·X: x·(R_heads ⊗ I_head_dim). */
static void SUFFIX(rotate_heads_body)(SUFFIX(matrix) * m, size_t begin, size_t end) {
  for (size_t i = begin; i < end; i++)
    APPLY_COLS(m->r, m->x + i * m->ld, (size_t)m->heads, (size_t)m->head_dim, (size_t)m->head_dim);
}

static void SUFFIX(rotate_rows_range)(void *ctx, size_t begin, size_t end) {
  SUFFIX(recovering)(ctx, SUFFIX(rotate_rows_body), begin, end);
}
static void SUFFIX(rotate_cols_range)(void *ctx, size_t begin, size_t end) {
  SUFFIX(recovering)(ctx, SUFFIX(rotate_cols_body), begin, end);
}
static void SUFFIX(rotate_heads_range)(void *ctx, size_t begin, size_t end) {
  SUFFIX(recovering)(ctx, SUFFIX(rotate_heads_body), begin, end);
}

/* The command's arithmetic on m, in its order: bias shift, norm (g from m's first column on),
 * mean, input rotation, online rotation, output rotation; over `threads` threads. */
static void SUFFIX(transform_matrix)(const transform_context *ctx, const tensor_plan *plan, const double *g,
                                     SUFFIX(matrix) * m, int threads) {
  const rotate_command *c = plan->command;
  if (c->in_out && !c->out_in_source) { /* [experts·in, out]: Rin on each expert's groups of rows, Rout in rows */
    if (g) SUFFIX(fuse_norm_rows)(m, g, (size_t)plan->source->shape[1]);
    if (c->input) {
      m->r = c->input;
      parallel_for(m->cols, 8, threads, SUFFIX(rotate_cols_range), m);
    }
    if (c->output) {
      m->r = c->output;
      parallel_for(m->rows, 1, threads, SUFFIX(rotate_rows_range), m);
    }
    return;
  }
  for (size_t i = 0; plan->bias_shift && i < m->rows; i++) /* m's rows are bias elements */
    m->x[i * m->ld] = (REAL)(m->x[i * m->ld] + plan->bias_shift[m->row0 + i]);
  if (g) SUFFIX(fuse_norm)(m, g);
  if (c->bake_mean) SUFFIX(bake_mean)(m, token_mean(c));
  if (c->input) {
    m->r = c->input;
    parallel_for(m->rows, 1, threads, SUFFIX(rotate_rows_range), m);
    if (c->reflect_input) SUFFIX(reflect_rows)(m, c->reflection);
  }
  if (c->online == ONLINE_INPUT) {
    m->r = c->online_rotation;
    parallel_for(m->rows, 1, threads, SUFFIX(rotate_rows_range), m);
  }
  if (c->online == ONLINE_INPUT_HEADS) {
    m->r = c->online_rotation;
    m->heads = ctx->num_heads;
    m->head_dim = ctx->head_dim;
    parallel_for(m->rows, 1, threads, SUFFIX(rotate_heads_range), m);
  }
  if (c->output) { /* on m's rows within the command's row ranges (a fused qkv_proj's V rows, MLA's value rows) */
    const size_t stride = c->output_row_stride ? (size_t)c->output_row_stride : 0;
    const size_t k0 = stride ? m->row0 / stride : 0, k1 = stride ? (m->row0 + m->rows + stride - 1) / stride : 1;
    for (size_t k = k0; k < k1; k++) {
      size_t first = 0, last = m->rows;
      if (c->output_row_count) {
        size_t begin = k * stride + (size_t)c->output_row_begin, end = begin + (size_t)c->output_row_count;
        first = begin > m->row0 ? begin - m->row0 : 0;
        last = end > m->row0 ? (end - m->row0 < m->rows ? end - m->row0 : m->rows) : 0;
      }
      SUFFIX(matrix) part = *m;
      part.rows = last > first ? last - first : 0;
      part.x += first * m->ld;
      part.r = c->output;
      if (part.rows) parallel_for(part.cols, 8, threads, SUFFIX(rotate_cols_range), &part);
    }
    if (c->reflect_output) SUFFIX(reflect_columns)(m, c->reflection, (size_t)rotation_dim(c->output));
  }
}

/* Can the norm be fused while loading (NORM_IN_LOAD, and no other operation comes before it)? */
static bool SUFFIX(norm_fused_in_load)(const tensor_plan *plan) {
  return NORM_IN_LOAD && plan->norm && !plan->bias_shift && !plan->command->reset_norm &&
         !(plan->command->in_out && !plan->command->out_in_source);
}

/* Rows [begin, end) in blocks of plan->block_rows, each loaded, transformed and stored in turn;
 * read from src, whose first row is row src_row0 of the tensor. */
static void SUFFIX(transform_rows)(const transform_context *ctx, const tensor_plan *plan, const st_tensor *src,
                                   size_t src_row0, size_t begin, size_t end, void *work, unsigned char *out,
                                   int threads, transform_timing *timing, int *failed) {
  size_t element = dtype_size(plan->out_dtype);
  const bool fused = SUFFIX(norm_fused_in_load)(plan);
  for (size_t b = begin; b < end; b += plan->block_rows) {
    size_t count = end - b < plan->block_rows ? end - b : plan->block_rows;
    SUFFIX(matrix) m = {.x = work, .rows = count, .cols = plan->cols, .ld = plan->cols, .row0 = b, .failed = failed};
    double t0 = now_seconds();
    SUFFIX(load)(ctx, plan, src, b - src_row0, 0, fused ? plan->norm : NULL, &m);
    double t1 = now_seconds();
    SUFFIX(transform_matrix)(ctx, plan, fused ? NULL : plan->norm, &m, threads);
    double t2 = now_seconds();
    SUFFIX(store)(plan, &m, out + (b - begin) * plan->cols * element, plan->cols);
    double t3 = now_seconds();
    timing->read += t1 - t0, timing->compute += t2 - t1, timing->convert += t3 - t2;
  }
}

/* Columns [begin, end) of every row. */
static void SUFFIX(transform_columns)(const transform_context *ctx, const tensor_plan *plan, size_t begin, size_t end,
                                      void *work, unsigned char *out, transform_timing *timing, int *failed) {
  SUFFIX(matrix) m = {.x = work, .rows = plan->rows, .cols = end - begin, .ld = end - begin, .failed = failed};
  const double *g =
      plan->norm ? plan->norm + (plan->command->in_out && !plan->command->out_in_source ? 0 : begin) : NULL;
  const bool fused = SUFFIX(norm_fused_in_load)(plan);
  double t0 = now_seconds();
  SUFFIX(load)(ctx, plan, plan->source, 0, begin, fused ? g : NULL, &m);
  double t1 = now_seconds();
  SUFFIX(transform_matrix)(ctx, plan, fused ? NULL : g, &m, 1);
  double t2 = now_seconds();
  SUFFIX(store)(plan, &m, out + begin * dtype_size(plan->out_dtype), plan->cols);
  double t3 = now_seconds();
  timing->read += t1 - t0, timing->compute += t2 - t1, timing->convert += t3 - t2;
}
