#include "rotate/tensor_transform.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/parallel.h"

/* Output bytes (in the tensor's dtype) of a row piece at most: large writes, from a buffer that
 * stays in the L2 cache with the block being transformed. */
#define PIECE_OUTPUT_BYTES ((size_t)1 << 20)
/* Compute-precision bytes a row piece transforms at a time: the block stays in the L2 cache
 * through conversion, norm, rotations and conversion back. */
#define BLOCK_BYTES ((size_t)512 << 10)
/* Compute-precision bytes of a column piece. */
#define COLUMN_PIECE_BYTES ((size_t)4 << 20)
/* A row cut holds whole groups of output-rotation rows; beyond this many compute-precision bytes
 * per group, columns are cut instead. */
#define ROW_GROUP_MAX_BYTES ((size_t)8 << 20)

/* Part of the tensor in the compute precision: [rows, cols] with row stride ld, at d or f. */
typedef struct matrix {
  double *d; /* float64 compute, or NULL */
  float *f;  /* float32 compute, or NULL */
  size_t rows, cols, ld;
  size_t row0;       /* the tensor row of m's first row */
  const rotation *r; /* the rotation being applied (parallel bodies) */
  int heads, head_dim;
  int *failed; /* set (from any thread) when a rotation's scratch memory could not be allocated */
} matrix;

/* Applies body(m, begin, end) with scratch failures recovered and recorded in *m->failed. */
static void recovering(matrix *m, void (*body)(matrix *, size_t, size_t), size_t begin, size_t end) {
  rotation_scratch_recover(true);
  body(m, begin, end);
  if (rotation_scratch_failed() && m->failed) __atomic_store_n(m->failed, 1, __ATOMIC_RELAXED);
  rotation_scratch_recover(false);
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

dtype transform_output_dtype(const transform_context *ctx, const st_tensor *t) {
  if (ctx->has_out_dtype) return ctx->out_dtype;
  return dtype_is_float(t->dtype) && !st_is_quantized(t) ? t->dtype : DTYPE_BF16;
}

bool transform_converts(const transform_context *ctx, const st_tensor *t) {
  return st_is_quantized(t) || transform_output_dtype(ctx, t) != t->dtype;
}

bool command_changes_tensor(const rotate_command *c) {
  return c->reset_norm || c->fuse_norm[0] || c->bake_mean || c->input || c->output || c->fold_norm_bias[0] ||
         c->online != ONLINE_NONE || strcmp(c->name, c->source) != 0;
}

/* The embedding's mean is over each row (a token's vector); a residual writer's over each column. */
static bool token_mean(const rotate_command *c) { return c->bake_mean && c->layer < 0; }
static bool column_mean(const rotate_command *c) { return c->bake_mean && c->layer >= 0; }

static size_t at_least(size_t value, size_t minimum) { return value > minimum ? value : minimum; }

/* The largest multiple of unit that is at most limit / per_item items, at least unit. */
static size_t multiple_within(size_t limit, size_t per_item, size_t unit) {
  size_t items = limit / (per_item ? per_item : 1);
  return at_least(items / unit * unit, unit);
}

/* plan->bias_shift = W·β for a reader's bias (W its original weight, β its norm's bias). */
static int fold_shift(const transform_context *ctx, tensor_plan *plan, rotq_error *err) {
  const rotate_command *c = plan->command;
  const st_tensor *w = checkpoint_find(ctx->ck, c->fold_weight);
  if (!w || w->ndim != 2 || (size_t)w->shape[0] != plan->rows)
    return rotq_fail(err, "tensor '%s': its weight '%s' is missing or not [%zu, in]", c->name, c->fold_weight,
                     plan->rows);
  size_t in = (size_t)w->shape[1];
  double *weight = NULL, *beta = NULL;
  int rc = checkpoint_read_f64(ctx->ck, c->fold_weight, plan->rows * in, &weight, err);
  if (rc == 0) rc = checkpoint_read_f64(ctx->ck, c->fold_norm_bias, in, &beta, err);
  if (rc == 0 && !(plan->bias_shift = malloc(plan->rows * sizeof(double)))) rc = rotq_fail(err, "out of memory");
  for (size_t i = 0; rc == 0 && i < plan->rows; i++) {
    double sum = 0;
    for (size_t j = 0; j < in; j++) sum += weight[i * in + j] * beta[j];
    plan->bias_shift[i] = sum;
  }
  free(weight);
  free(beta);
  return rc;
}

/* Each row r of m ← r·(I − 2wwᵀ) (w of length m->cols). */
static void reflect_rows(matrix *m, const double *w) {
  for (size_t i = 0; i < m->rows; i++) {
    double dot = 0;
    for (size_t j = 0; j < m->cols; j++) dot += (m->d ? m->d[i * m->ld + j] : m->f[i * m->ld + j]) * w[j];
    for (size_t j = 0; j < m->cols; j++) {
      if (m->d)
        m->d[i * m->ld + j] -= 2 * dot * w[j];
      else
        m->f[i * m->ld + j] = (float)(m->f[i * m->ld + j] - 2 * dot * w[j]);
    }
  }
}

/* Each column of each group of n rows of m ← (I − 2wwᵀ)·column (w of length n). */
static void reflect_columns(matrix *m, const double *w, size_t n) {
  for (size_t g = 0; g + n <= m->rows; g += n)
    for (size_t j = 0; j < m->cols; j++) {
      double dot = 0;
      for (size_t i = 0; i < n; i++) dot += (m->d ? m->d[(g + i) * m->ld + j] : m->f[(g + i) * m->ld + j]) * w[i];
      for (size_t i = 0; i < n; i++) {
        size_t k = (g + i) * m->ld + j;
        if (m->d)
          m->d[k] -= 2 * dot * w[i];
        else
          m->f[k] = (float)(m->f[k] - 2 * dot * w[i]);
      }
    }
}

int tensor_plan_make(const transform_context *ctx, const rotate_command *c, tensor_plan *plan, rotq_error *err) {
  memset(plan, 0, sizeof *plan);
  const st_tensor *t = checkpoint_find(ctx->ck, c->source);
  long index = st_writer_index(ctx->writer, c->name);
  if (!t || index < 0) return rotq_fail(err, "tensor '%s': not planned for output", c->name);
  size_t numel = st_numel(t);
  *plan = (tensor_plan){.command = c,
                        .source = t,
                        .output_index = (size_t)index,
                        .rows = numel,
                        .cols = 1,
                        .out_dtype = transform_output_dtype(ctx, t)};
  if (t->ndim == 2 && !c->is_bias) plan->rows = (size_t)t->shape[0], plan->cols = (size_t)t->shape[1];
  if (c->keep_norm_bias) plan->rows = 1, plan->cols = numel; /* a row vector, rotated like the embedding */
  const size_t compute_size = ctx->use_float64 ? sizeof(double) : sizeof(float);
  const size_t group = c->output ? (size_t)rotation_dim(c->output) : 1;
  const size_t segment = c->input ? (size_t)rotation_dim(c->input) : 1;
  /* operations that read other tensors or rows outside a group are done on the whole tensor */
  const bool whole_only =
      c->fold_norm_bias[0] || c->keep_norm_bias || (c->output_row_count && (size_t)c->output_row_begin % group != 0);
  if ((!command_changes_tensor(c) && !transform_converts(ctx, t)) || numel == 0) {
    plan->cut = CUT_COPY;
  } else if (whole_only) {
    plan->cut = CUT_WHOLE;
    plan->step = plan->block_rows = plan->rows;
  } else if (!column_mean(c) && group * plan->cols * compute_size <= ROW_GROUP_MAX_BYTES) {
    plan->cut = CUT_ROWS;
    plan->step = multiple_within(PIECE_OUTPUT_BYTES, plan->cols * dtype_size(plan->out_dtype), group);
    plan->block_rows = multiple_within(BLOCK_BYTES, plan->cols * compute_size, group);
  } else if (c->online == ONLINE_NONE && !token_mean(c)) {
    plan->cut = CUT_COLUMNS;
    plan->step = multiple_within(COLUMN_PIECE_BYTES, plan->rows * compute_size, segment);
  } else {
    plan->cut = CUT_WHOLE;
    plan->step = plan->block_rows = plan->rows;
  }
  if (plan->step > (plan->cut == CUT_COLUMNS ? plan->cols : plan->rows))
    plan->step = plan->cut == CUT_COLUMNS ? plan->cols : plan->rows;
  if (plan->block_rows > plan->step) plan->block_rows = plan->step;
  const size_t extent = plan->cut == CUT_COLUMNS ? plan->cols : plan->rows;
  plan->pieces = plan->cut == CUT_COPY ? 1 : (extent + plan->step - 1) / plan->step;
  if (c->fuse_norm[0]) {
    if (checkpoint_read_f64(ctx->ck, c->fuse_norm, plan->cols, &plan->norm, err) < 0) return -1;
    if (ctx->adapter->norm == NORM_RMS_PLUS_ONE)
      for (size_t j = 0; j < plan->cols; j++) plan->norm[j] += 1.0;
    for (size_t j = 0; c->keep_norm_bias && j < plan->cols; j++) {
      if (plan->norm[j] == 0)
        return rotq_fail(err, "tensor '%s': its norm weight '%s' has a zero at %zu: the bias cannot be kept", c->name,
                         c->fuse_norm, j);
      plan->norm[j] = 1 / plan->norm[j];
    }
  }
  if (c->fold_norm_bias[0] && fold_shift(ctx, plan, err) < 0) return -1;
  return 0;
}

void tensor_plan_free(tensor_plan *plan) {
  free(plan->norm);
  free(plan->bias_shift);
  plan->norm = plan->bias_shift = NULL;
}

void tensor_piece_range(const tensor_plan *plan, size_t i, size_t *begin, size_t *end) {
  size_t extent = plan->cut == CUT_COLUMNS ? plan->cols : plan->rows;
  *begin = i * plan->step;
  *end = *begin + plan->step < extent ? *begin + plan->step : extent;
}

size_t tensor_piece_work_bytes(const transform_context *ctx, const tensor_plan *plan) {
  size_t compute_size = ctx->use_float64 ? sizeof(double) : sizeof(float);
  if (plan->cut == CUT_ROWS) return plan->block_rows * plan->cols * compute_size;
  if (plan->cut == CUT_COLUMNS) return plan->rows * plan->step * compute_size;
  return 0;
}

size_t tensor_piece_output_bytes(const tensor_plan *plan) {
  return plan->cut == CUT_ROWS ? plan->step * plan->cols * dtype_size(plan->out_dtype) : 0;
}

/* Rows [row, row + m->rows) of the source into m (or the norm's identity value when the command
 * resets it), columns multiplied by g[j] if g (float64 only: the norm fused while each row is in
 * the L1 cache). Column c0 of m is column c0 + col of the tensor. */
/* Rows ahead prefetched when a piece's rows lie far apart (column pieces): the hardware prefetcher
 * does not follow strides of whole rows, and each row would wait for memory. */
#define PREFETCH_ROWS 8

/* Prefetches the n bytes at p, to read them or to write them. */
static void prefetch_bytes(const unsigned char *p, size_t n, bool for_writing) {
  for (size_t k = 0; k < n; k += 64) {
    if (for_writing)
      __builtin_prefetch(p + k, 1);
    else
      __builtin_prefetch(p + k, 0);
  }
}

static void load(const transform_context *ctx, const tensor_plan *plan, size_t row, size_t col, const double *g,
                 matrix *m) {
  const rotate_command *c = plan->command;
  const st_tensor *t = plan->source;
  if (c->reset_norm) {
    double identity = c->is_bias || ctx->adapter->norm == NORM_RMS_PLUS_ONE ? 0.0 : 1.0; /* LayerNorm β: 0 */
    for (size_t i = 0; i < m->rows; i++)
      for (size_t j = 0; j < m->cols; j++)
        m->d ? (void)(m->d[i * m->ld + j] = identity) : (void)(m->f[i * m->ld + j] = (float)identity);
    return;
  }
  const bool strided = m->cols < plan->cols;
  if (g) {
    for (size_t i = 0; i < m->rows; i++) {
      size_t ahead = (row + i + PREFETCH_ROWS) * plan->cols + col;
      if (strided && i + PREFETCH_ROWS < m->rows)
        prefetch_bytes(st_address(t, ahead), st_span(t, ahead, m->cols), false);
      st_to_f64_scaled(t, (row + i) * plan->cols + col, m->cols, g, m->d + i * m->ld);
    }
    return;
  }
  if (m->ld == plan->cols && col == 0) { /* contiguous rows: one conversion */
    if (m->d)
      st_to_f64(t, row * plan->cols, m->rows * m->cols, m->d);
    else
      st_to_f32(t, row * plan->cols, m->rows * m->cols, m->f);
    return;
  }
  for (size_t i = 0; i < m->rows; i++) {
    size_t ahead = (row + i + PREFETCH_ROWS) * plan->cols + col, from = (row + i) * plan->cols + col;
    if (strided && i + PREFETCH_ROWS < m->rows) prefetch_bytes(st_address(t, ahead), st_span(t, ahead, m->cols), false);
    if (m->d)
      st_to_f64(t, from, m->cols, m->d + i * m->ld);
    else
      st_to_f32(t, from, m->cols, m->f + i * m->ld);
  }
}

/* m to the output dtype at out, row i at out + i·out_ld elements. */
static void store(const tensor_plan *plan, const matrix *m, unsigned char *out, size_t out_ld) {
  size_t element = dtype_size(plan->out_dtype);
  if (m->ld == m->cols && out_ld == m->cols) {
    if (m->d)
      dtype_from_f64(plan->out_dtype, m->d, out, m->rows * m->cols);
    else
      dtype_from_f32(plan->out_dtype, m->f, out, m->rows * m->cols);
    return;
  }
  for (size_t i = 0; i < m->rows; i++) {
    if (i + PREFETCH_ROWS < m->rows)
      prefetch_bytes(out + (i + PREFETCH_ROWS) * out_ld * element, m->cols * element, true);
    if (m->d)
      dtype_from_f64(plan->out_dtype, m->d + i * m->ld, out + i * out_ld * element, m->cols);
    else
      dtype_from_f32(plan->out_dtype, m->f + i * m->ld, out + i * out_ld * element, m->cols);
  }
}

/* W[:, j] *= g[j]: the norm's weight moves into the linear it feeds (g from column col on). */
static void fuse_norm(matrix *m, const double *g) {
  for (size_t i = 0; i < m->rows; i++)
    for (size_t j = 0; j < m->cols; j++) {
      if (m->d)
        m->d[i * m->ld + j] *= g[j];
      else
        m->f[i * m->ld + j] = (float)(m->f[i * m->ld + j] * g[j]);
    }
}

/* Subtracts the mean over the residual (hidden) dimension: of each row for the embedding
 * [vocab, hidden], of each column for a writer [hidden, in] (and of a writer's bias). Sums run in
 * order of the other index. */
static void bake_mean(matrix *m, bool rows_are_tokens) {
  size_t outer = rows_are_tokens ? m->rows : m->cols, inner = rows_are_tokens ? m->cols : m->rows;
  for (size_t o = 0; o < outer; o++) {
    double sum = 0;
    for (size_t i = 0; i < inner; i++) {
      size_t k = rows_are_tokens ? o * m->ld + i : i * m->ld + o;
      sum += m->d ? m->d[k] : m->f[k];
    }
    double mean = sum / (double)inner;
    for (size_t i = 0; i < inner; i++) {
      size_t k = rows_are_tokens ? o * m->ld + i : i * m->ld + o;
      if (m->d)
        m->d[k] -= mean;
      else
        m->f[k] = (float)(m->f[k] - mean);
    }
  }
}

static void rotate_rows_body(matrix *m, size_t begin, size_t end) {
  if (m->d)
    rotation_apply_rows_f64(m->r, m->d + begin * m->ld, end - begin, m->cols, m->ld);
  else
    rotation_apply_rows_f32(m->r, m->f + begin * m->ld, end - begin, m->cols, m->ld);
}

static void rotate_cols_body(matrix *m, size_t begin, size_t end) {
  if (m->d)
    rotation_apply_cols_f64(m->r, m->d + begin, m->rows, end - begin, m->ld);
  else
    rotation_apply_cols_f32(m->r, m->f + begin, m->rows, end - begin, m->ld);
}

/* Each row x viewed as [heads, head_dim] becomes R_headsᵀ·X: x·(R_heads ⊗ I_head_dim). */
static void rotate_heads_body(matrix *m, size_t begin, size_t end) {
  for (size_t i = begin; i < end; i++) {
    if (m->d)
      rotation_apply_cols_f64(m->r, m->d + i * m->ld, (size_t)m->heads, (size_t)m->head_dim, (size_t)m->head_dim);
    else
      rotation_apply_cols_f32(m->r, m->f + i * m->ld, (size_t)m->heads, (size_t)m->head_dim, (size_t)m->head_dim);
  }
}

static void rotate_rows_range(void *ctx, size_t begin, size_t end) { recovering(ctx, rotate_rows_body, begin, end); }
static void rotate_cols_range(void *ctx, size_t begin, size_t end) { recovering(ctx, rotate_cols_body, begin, end); }
static void rotate_heads_range(void *ctx, size_t begin, size_t end) { recovering(ctx, rotate_heads_body, begin, end); }

/* The command's arithmetic on m, in its order: norm (g from m's first column on), mean, input
 * rotation, online rotation, output rotation; over `threads` threads. */
static void transform_matrix(const transform_context *ctx, const tensor_plan *plan, const double *g, matrix *m,
                             int threads) {
  const rotate_command *c = plan->command;
  for (size_t i = 0; plan->bias_shift && i < m->rows; i++) { /* m's rows are bias elements */
    if (m->d)
      m->d[i * m->ld] += plan->bias_shift[m->row0 + i];
    else
      m->f[i * m->ld] = (float)(m->f[i * m->ld] + plan->bias_shift[m->row0 + i]);
  }
  if (g) fuse_norm(m, g);
  if (c->bake_mean) bake_mean(m, token_mean(c));
  if (c->input) {
    m->r = c->input;
    parallel_for(m->rows, 1, threads, rotate_rows_range, m);
    if (c->reflect_input) reflect_rows(m, c->reflection);
  }
  if (c->online == ONLINE_INPUT) {
    m->r = c->online_rotation;
    parallel_for(m->rows, 1, threads, rotate_rows_range, m);
  }
  if (c->online == ONLINE_INPUT_HEADS) {
    m->r = c->online_rotation;
    m->heads = ctx->num_heads;
    m->head_dim = ctx->head_dim;
    parallel_for(m->rows, 1, threads, rotate_heads_range, m);
  }
  if (c->output) { /* on m's rows within the command's row range (the V rows of a fused qkv_proj) */
    size_t first = 0, last = m->rows;
    if (c->output_row_count) {
      size_t begin = (size_t)c->output_row_begin, end = begin + (size_t)c->output_row_count;
      first = begin > m->row0 ? begin - m->row0 : 0;
      last = end > m->row0 ? (end - m->row0 < m->rows ? end - m->row0 : m->rows) : 0;
    }
    matrix part = *m;
    part.rows = last > first ? last - first : 0;
    if (part.d)
      part.d += first * m->ld;
    else
      part.f += first * m->ld;
    part.r = c->output;
    if (part.rows) parallel_for(part.cols, 8, threads, rotate_cols_range, &part);
    if (c->reflect_output) reflect_columns(m, c->reflection, (size_t)rotation_dim(c->output));
  }
}

/* Can the norm be fused while loading (float64, and no other operation comes before it)? */
static bool norm_fused_in_load(const tensor_plan *plan, const matrix *m) {
  return plan->norm && m->d && !plan->bias_shift && !plan->command->reset_norm;
}

static matrix matrix_at(const transform_context *ctx, void *memory, size_t rows, size_t cols) {
  matrix m = {.rows = rows, .cols = cols, .ld = cols};
  if (ctx->use_float64)
    m.d = memory;
  else
    m.f = memory;
  return m;
}

/* Rows [begin, end) in blocks of plan->block_rows, each loaded, transformed and stored in turn. */
static void transform_rows(const transform_context *ctx, const tensor_plan *plan, size_t begin, size_t end, void *work,
                           unsigned char *out, int threads, transform_timing *timing, int *failed) {
  size_t element = dtype_size(plan->out_dtype);
  for (size_t b = begin; b < end; b += plan->block_rows) {
    size_t count = end - b < plan->block_rows ? end - b : plan->block_rows;
    matrix m = matrix_at(ctx, work, count, plan->cols);
    m.row0 = b;
    m.failed = failed;
    const bool fused = norm_fused_in_load(plan, &m);
    double t0 = now_seconds();
    load(ctx, plan, b, 0, fused ? plan->norm : NULL, &m);
    double t1 = now_seconds();
    transform_matrix(ctx, plan, fused ? NULL : plan->norm, &m, threads);
    double t2 = now_seconds();
    store(plan, &m, out + (b - begin) * plan->cols * element, plan->cols);
    double t3 = now_seconds();
    timing->read += t1 - t0, timing->compute += t2 - t1, timing->convert += t3 - t2;
  }
}

/* Columns [begin, end) of every row. */
static void transform_columns(const transform_context *ctx, const tensor_plan *plan, size_t begin, size_t end,
                              void *work, unsigned char *out, transform_timing *timing, int *failed) {
  matrix m = matrix_at(ctx, work, plan->rows, end - begin);
  m.failed = failed;
  const double *g = plan->norm ? plan->norm + begin : NULL;
  const bool fused = norm_fused_in_load(plan, &m);
  double t0 = now_seconds();
  load(ctx, plan, 0, begin, fused ? g : NULL, &m);
  double t1 = now_seconds();
  transform_matrix(ctx, plan, fused ? NULL : g, &m, 1);
  double t2 = now_seconds();
  store(plan, &m, out + begin * dtype_size(plan->out_dtype), plan->cols);
  double t3 = now_seconds();
  timing->read += t1 - t0, timing->compute += t2 - t1, timing->convert += t3 - t2;
}

int tensor_transform_piece(const transform_context *ctx, const tensor_plan *plan, size_t i, void *work, void *out,
                           transform_timing *timing, rotq_error *err) {
  size_t begin, end;
  int failed = 0;
  tensor_piece_range(plan, i, &begin, &end);
  if (plan->cut == CUT_ROWS) {
    transform_rows(ctx, plan, begin, end, work, out, 1, timing, &failed);
  } else if (plan->cut == CUT_COLUMNS) {
    transform_columns(ctx, plan, begin, end, work, out, timing, &failed);
  } else if (plan->cut == CUT_WHOLE) {
    size_t bytes = plan->rows * plan->cols * (ctx->use_float64 ? sizeof(double) : sizeof(float));
    void *whole = malloc(bytes ? bytes : 1);
    if (!whole) return rotq_fail(err, "tensor '%s': out of memory (%zu bytes)", plan->command->name, bytes);
    transform_rows(ctx, plan, 0, plan->rows, whole, out, ctx->threads, timing, &failed);
    free(whole);
  }
  if (failed) return rotq_fail(err, "tensor '%s': out of memory (rotation scratch)", plan->command->name);
  return 0;
}
