#include "rotate/tensor_transform.h"

#include <stdlib.h>
#include <string.h>

#include "common/parallel.h"

/* The tensor being transformed, as a [rows, cols] matrix in the compute precision. */
typedef struct work {
  double *d; /* float64 compute, or NULL */
  float *f;  /* float32 compute, or NULL */
  size_t rows, cols;
  const rotation *r;
  int heads, head_dim;
} work;

bool command_changes_tensor(const rotate_command *c) {
  return c->reset_norm || c->fuse_norm[0] || c->bake_mean || c->input || c->output ||
         c->online != ONLINE_NONE || strcmp(c->name, c->source) != 0;
}

/* W[:, j] *= g[j]: the norm's weight moves into the linear it feeds. */
static void fuse_norm(work *w, const double *g) {
  for (size_t i = 0; i < w->rows; i++)
    for (size_t j = 0; j < w->cols; j++) {
      if (w->d) w->d[i * w->cols + j] *= g[j];
      else w->f[i * w->cols + j] = (float)(w->f[i * w->cols + j] * g[j]);
    }
}

/* Subtracts the mean over the residual (hidden) dimension: of each row for the embedding
 * [vocab, hidden], of each column for a writer [hidden, in] (and of a writer's bias). */
static void bake_mean(work *w, bool rows_are_tokens) {
  size_t outer = rows_are_tokens ? w->rows : w->cols, inner = rows_are_tokens ? w->cols : w->rows;
  for (size_t o = 0; o < outer; o++) {
    double sum = 0;
    for (size_t i = 0; i < inner; i++) {
      size_t k = rows_are_tokens ? o * w->cols + i : i * w->cols + o;
      sum += w->d ? w->d[k] : w->f[k];
    }
    double mean = sum / (double)inner;
    for (size_t i = 0; i < inner; i++) {
      size_t k = rows_are_tokens ? o * w->cols + i : i * w->cols + o;
      if (w->d) w->d[k] -= mean;
      else w->f[k] = (float)(w->f[k] - mean);
    }
  }
}

static void rotate_rows_range(void *ctx, size_t begin, size_t end) {
  work *w = ctx;
  if (w->d) rotation_apply_rows_f64(w->r, w->d + begin * w->cols, end - begin, w->cols, w->cols);
  else rotation_apply_rows_f32(w->r, w->f + begin * w->cols, end - begin, w->cols, w->cols);
}

static void rotate_cols_range(void *ctx, size_t begin, size_t end) {
  work *w = ctx;
  if (w->d) rotation_apply_cols_f64(w->r, w->d + begin, w->rows, end - begin, w->cols);
  else rotation_apply_cols_f32(w->r, w->f + begin, w->rows, end - begin, w->cols);
}

/* Each row x viewed as [heads, head_dim] becomes R_headsᵀ·X: x·(R_heads ⊗ I_head_dim). */
static void rotate_heads_range(void *ctx, size_t begin, size_t end) {
  work *w = ctx;
  for (size_t i = begin; i < end; i++) {
    if (w->d) rotation_apply_cols_f64(w->r, w->d + i * w->cols, (size_t)w->heads, (size_t)w->head_dim, (size_t)w->head_dim);
    else rotation_apply_cols_f32(w->r, w->f + i * w->cols, (size_t)w->heads, (size_t)w->head_dim, (size_t)w->head_dim);
  }
}

int tensor_transform(const transform_context *ctx, const rotate_command *c, rotq_error *err) {
  const st_tensor *t = checkpoint_find(ctx->ck, c->source);
  long index = st_writer_index(ctx->writer, c->name);
  if (!t || index < 0) return rotq_fail(err, "tensor '%s': not planned for output", c->name);
  if (!command_changes_tensor(c)) return st_writer_write(ctx->writer, (size_t)index, t->data, err);

  size_t numel = st_numel(t);
  work w = {.rows = t->ndim == 2 ? (size_t)t->shape[0] : numel, .cols = t->ndim == 2 ? (size_t)t->shape[1] : 1};
  if (c->is_bias || t->ndim == 1) w.rows = numel, w.cols = 1;
  void *out = malloc(numel * dtype_size(t->dtype) + 1);
  if (ctx->use_float64) w.d = malloc(numel * sizeof(double) + 1);
  else w.f = malloc(numel * sizeof(float) + 1);
  if (!out || (!w.d && !w.f)) {
    free(out), free(w.d), free(w.f);
    return rotq_fail(err, "tensor '%s': out of memory (%zu elements)", c->name, numel);
  }

  if (c->reset_norm) {
    double identity = ctx->adapter->norm == NORM_RMS_PLUS_ONE ? 0.0 : 1.0;
    for (size_t i = 0; i < numel; i++) w.d ? (void)(w.d[i] = identity) : (void)(w.f[i] = (float)identity);
  } else {
    if (w.d) dtype_to_f64(t->dtype, t->data, w.d, numel);
    else dtype_to_f32(t->dtype, t->data, w.f, numel);
  }
  int rc = 0;
  if (c->fuse_norm[0]) {
    double *g = NULL;
    rc = checkpoint_read_f64(ctx->ck, c->fuse_norm, w.cols, &g, err);
    if (rc == 0) {
      if (ctx->adapter->norm == NORM_RMS_PLUS_ONE)
        for (size_t j = 0; j < w.cols; j++) g[j] += 1.0;
      fuse_norm(&w, g);
    }
    free(g);
  }
  if (rc == 0 && c->bake_mean) bake_mean(&w, c->layer < 0);
  if (rc == 0 && c->input) {
    w.r = c->input;
    parallel_for(w.rows, 1, ctx->threads, rotate_rows_range, &w);
  }
  if (rc == 0 && c->online == ONLINE_INPUT) {
    w.r = c->online_rotation;
    parallel_for(w.rows, 1, ctx->threads, rotate_rows_range, &w);
  }
  if (rc == 0 && c->online == ONLINE_INPUT_HEADS) {
    w.r = c->online_rotation;
    w.heads = ctx->num_heads;
    w.head_dim = ctx->head_dim;
    parallel_for(w.rows, 1, ctx->threads, rotate_heads_range, &w);
  }
  if (rc == 0 && c->output) {
    w.r = c->output;
    parallel_for(w.cols, 8, ctx->threads, rotate_cols_range, &w);
  }
  if (rc == 0) {
    if (w.d) dtype_from_f64(t->dtype, w.d, out, numel);
    else dtype_from_f32(t->dtype, w.f, out, numel);
    rc = st_writer_write(ctx->writer, (size_t)index, out, err);
  }
  free(out);
  free(w.d);
  free(w.f);
  return rc;
}
