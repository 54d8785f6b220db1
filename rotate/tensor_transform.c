#include "rotate/tensor_transform.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/parallel.h"
#include "rotate/quantize_command.h"

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
  return c->reset_norm || c->out_in_source || c->fuse_norm[0] || c->bake_mean || c->input || c->output ||
         c->fold_norm_bias[0] || c->online != ONLINE_NONE || strcmp(c->name, c->source) != 0;
}

/* The embedding's mean is over each row (a token's vector); a residual writer's over each column. */
static bool token_mean(const rotate_command *c) { return c->bake_mean && c->layer < 0; }
static bool column_mean(const rotate_command *c) { return c->bake_mean && c->layer >= 0; }

/* Bytes of one element in the compute precision. */
static size_t compute_size_of(const transform_context *ctx) {
  return ctx->use_float64 ? sizeof(double) : sizeof(float);
}

static size_t at_least(size_t value, size_t minimum) { return value > minimum ? value : minimum; }

/* The largest multiple of unit that is at most limit / per_item items, at least unit. */
static size_t gcd(size_t a, size_t b) {
  while (b) {
    size_t r = a % b;
    a = b, b = r;
  }
  return a;
}

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

int tensor_plan_make(const transform_context *ctx, const rotate_command *c, tensor_plan *plan, rotq_error *err) {
  memset(plan, 0, sizeof *plan);
  const st_tensor *t = checkpoint_find(ctx->ck, c->source);
  long quant = ctx->quant ? quantize_stream_index(ctx->quant, c->name) : -1;
  long index = quant < 0 ? st_writer_index(ctx->writer, c->name) : 0;
  if (!t || index < 0) return rotq_fail(err, "tensor '%s': not planned for output", c->name);
  size_t numel = st_numel(t);
  *plan = (tensor_plan){.command = c,
                        .source = t,
                        .output_index = (size_t)index,
                        .quant_index = quant,
                        .rows = numel,
                        .cols = 1,
                        .out_dtype = transform_output_dtype(ctx, t)};
  if (t->ndim == 2 && !c->is_bias) plan->rows = (size_t)t->shape[0], plan->cols = (size_t)t->shape[1];
  if (c->in_out && t->ndim == 3) /* [experts, in, out] as [experts·in, out] ([experts, out, in] likewise) */
    plan->rows = (size_t)t->shape[0] * (size_t)t->shape[1], plan->cols = (size_t)t->shape[2];
  const bool in_out_math = c->in_out && !c->out_in_source;   /* out_in_source: each expert an [out, in] weight */
  if (c->keep_norm_bias) plan->rows = 1, plan->cols = numel; /* a row vector, rotated like the embedding */
  const size_t compute_size = compute_size_of(ctx);
  /* the rotation acting on groups of rows, and the one acting within each row (in_out: swapped); row
     pieces hold whole rotation groups (whole heads of MLA's kv_b_proj: a head's value rows are rotated
     together) */
  const rotation *on_rows = in_out_math ? c->input : c->output, *in_rows = in_out_math ? c->output : c->input;
  const size_t group = c->output_row_stride ? (size_t)c->output_row_stride
                       : on_rows            ? (size_t)rotation_dim(on_rows)
                                            : 1;
  const size_t segment = in_rows ? (size_t)rotation_dim(in_rows) : 1;
  /* operations that read other tensors or rows outside a group are done on the whole tensor */
  const bool whole_only = c->fold_norm_bias[0] || c->keep_norm_bias ||
                          (c->output_row_count && !c->output_row_stride && (size_t)c->output_row_begin % group != 0);
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
  const size_t row_block = quant >= 0 ? (size_t)quantize_stream_row_block(ctx->quant) : 1;
  if (plan->cut == CUT_ROWS && plan->step % row_block) /* quantized in whole blocks of rows */
    plan->step *= row_block / gcd(plan->step, row_block);
  if (c->out_in_source && plan->cut != CUT_COPY) { /* one expert a piece, written transposed in its place */
    plan->cut = CUT_ROWS;
    plan->step = plan->block_rows = (size_t)t->shape[1];
  }
  if (plan->step > (plan->cut == CUT_COLUMNS ? plan->cols : plan->rows))
    plan->step = plan->cut == CUT_COLUMNS ? plan->cols : plan->rows;
  if (plan->block_rows > plan->step) plan->block_rows = plan->step;
  const size_t extent = plan->cut == CUT_COLUMNS ? plan->cols : plan->rows;
  plan->pieces = plan->cut == CUT_COPY ? 1 : (extent + plan->step - 1) / plan->step;
  if (c->fuse_norm[0]) {
    size_t norm_size = in_out_math ? (size_t)t->shape[1] : plan->cols; /* in_out: the norm scales rows */
    if (checkpoint_read_f64(ctx->ck, c->fuse_norm, norm_size, &plan->norm, err) < 0) return -1;
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
  size_t compute_size = compute_size_of(ctx);
  if (plan->cut == CUT_ROWS) return plan->block_rows * plan->cols * compute_size;
  if (plan->cut == CUT_COLUMNS) return plan->rows * plan->step * compute_size;
  return 0;
}

size_t tensor_piece_output_bytes(const tensor_plan *plan) {
  return plan->cut == CUT_ROWS ? plan->step * plan->cols * dtype_size(plan->out_dtype) : 0;
}

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

/* The arithmetic, instantiated for each compute precision (use_float64: true / false). */
#define REAL double
#define SUFFIX(x) x##_f64
#define TO_REAL st_to_f64
#define TO_REAL_SCALED st_to_f64_scaled
#define FROM_REAL dtype_from_f64
#define APPLY_ROWS rotation_apply_rows_f64
#define APPLY_COLS rotation_apply_cols_f64
#define NORM_IN_LOAD 1
#include "rotate/tensor_transform_template.h"
#undef REAL
#undef SUFFIX
#undef TO_REAL
#undef TO_REAL_SCALED
#undef FROM_REAL
#undef APPLY_ROWS
#undef APPLY_COLS
#undef NORM_IN_LOAD

#define REAL float
#define SUFFIX(x) x##_f32
#define TO_REAL st_to_f32
#define TO_REAL_SCALED st_to_f32_scaled
#define FROM_REAL dtype_from_f32
#define APPLY_ROWS rotation_apply_rows_f32
#define APPLY_COLS rotation_apply_cols_f32
#define NORM_IN_LOAD 1
#include "rotate/tensor_transform_template.h"
#undef REAL
#undef SUFFIX
#undef TO_REAL
#undef TO_REAL_SCALED
#undef FROM_REAL
#undef APPLY_ROWS
#undef APPLY_COLS
#undef NORM_IN_LOAD

int tensor_transform_piece(const transform_context *ctx, const tensor_plan *plan, size_t i, void *work, void *out,
                           transform_timing *timing, rotq_error *err) {
  return tensor_transform_piece_from(ctx, plan, i, NULL, work, out, timing, err);
}

int tensor_transform_piece_from(const transform_context *ctx, const tensor_plan *plan, size_t i, const st_tensor *rows,
                                void *work, void *out, transform_timing *timing, rotq_error *err) {
  size_t begin, end;
  int failed = 0;
  tensor_piece_range(plan, i, &begin, &end);
  /* the one choice of precision: every operation below is the instantiation's */
  void (*transform_rows)(const transform_context *, const tensor_plan *, const st_tensor *, size_t, size_t, size_t,
                         void *, unsigned char *, int, transform_timing *, int *) =
      ctx->use_float64 ? transform_rows_f64 : transform_rows_f32;
  void (*transform_columns)(const transform_context *, const tensor_plan *, size_t, size_t, void *, unsigned char *,
                            transform_timing *, int *) =
      ctx->use_float64 ? transform_columns_f64 : transform_columns_f32;
  if (plan->cut == CUT_ROWS) {
    if (rows)
      transform_rows(ctx, plan, rows, begin, begin, end, work, out, 1, timing, &failed);
    else
      transform_rows(ctx, plan, plan->source, 0, begin, end, work, out, 1, timing, &failed);
  } else if (plan->cut == CUT_COLUMNS) {
    transform_columns(ctx, plan, begin, end, work, out, timing, &failed);
  } else if (plan->cut == CUT_WHOLE) {
    size_t bytes = plan->rows * plan->cols * compute_size_of(ctx);
    void *whole = malloc(bytes ? bytes : 1);
    if (!whole) return rotq_fail(err, "tensor '%s': out of memory (%zu bytes)", plan->command->name, bytes);
    transform_rows(ctx, plan, plan->source, 0, 0, plan->rows, whole, out, ctx->threads, timing, &failed);
    free(whole);
  }
  if (failed) return rotq_fail(err, "tensor '%s': out of memory (rotation scratch)", plan->command->name);
  return 0;
}

/* The --dtype names: 1 and *t if name is bf16, f16, f32 or f64 (either case), else 0. */
int output_dtype_parse(const char *name, dtype *t) {
  static const struct {
    const char *name;
    dtype t;
  } names[] = {{"bf16", DTYPE_BF16}, {"f16", DTYPE_F16}, {"f32", DTYPE_F32}, {"f64", DTYPE_F64}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcasecmp(name, names[i].name) == 0) return *t = names[i].t, 1;
  return 0;
}
