/* Executes one rotate_command on one tensor, piece by piece: read the piece (from the read-only
 * mapping, or for a row piece from a copy of its rows the caller read: tensor_transform_piece_from),
 * convert once to the compute precision (float64 by default), fuse the norm, bake the
 * mean, rotate, cast once to the output dtype (the tensor's own, or the one the user picked;
 * quantized tensors are read as their exact values and written as BF16 by default). Tensors
 * without a command's work, written in their own dtype, are copied bit for bit.
 *
 * A tensor is cut into pieces that are transformed independently: row ranges when every operation
 * acts within rows (or within groups of rows of the output rotation, when such a group is small),
 * else column ranges when every operation acts within columns (or within the input rotation's
 * segments). Each row and column is computed by the same arithmetic whatever the cut, so the output
 * is bitwise the same for any piece size and any thread count. Only what no cut allows (an online
 * rotation together with an output rotation) is transformed whole. */
#ifndef ROTQ_ROTATE_TENSOR_TRANSFORM_H
#define ROTQ_ROTATE_TENSOR_TRANSFORM_H

#include <stdbool.h>

#include "rotate/adapter.h"
#include "io/checkpoint.h"
#include "io/safetensors_writer.h"
#include "rotate/rotate_command.h"

typedef struct transform_context {
  const checkpoint *ck;
  const model_adapter *adapter;
  st_writer *writer;
  bool use_float64;
  int threads;
  int num_heads, head_dim; /* for the o_proj heads rotation */
  bool has_out_dtype;      /* write every tensor as out_dtype (rotq rotate --dtype) */
  dtype out_dtype;
  /* rotq rotate --quantize: the decoder Linear weights it names are quantized as they are written
   * (writer is then its output writer, holding the other tensors); when the in-stream check runs,
   * it holds their rotated (unquantized) rows in memory for it (quantize_stream_keep_rows). */
  struct quantize_stream *quant;
} transform_context;

/* The dtype tensor t is written in: ctx->out_dtype when chosen, else a float tensor's own dtype,
 * BF16 for a quantized one. */
dtype transform_output_dtype(const transform_context *ctx, const st_tensor *t);
/* The --dtype names: 1 and *t if name is bf16, f16, f32 or f64 (either case), else 0. */
int output_dtype_parse(const char *name, dtype *t);
/* Is t written in another dtype or read through scales (so not copied even when unchanged)? */
bool transform_converts(const transform_context *ctx, const st_tensor *t);

typedef enum tensor_cut {
  CUT_COPY,    /* unchanged: its bytes are copied */
  CUT_ROWS,    /* pieces are row ranges, each written as soon as it is done */
  CUT_COLUMNS, /* pieces are column ranges of the whole tensor's output, written when all are done */
  CUT_WHOLE,   /* one piece, the whole tensor */
} tensor_cut;

/* How one command's tensor is transformed. */
typedef struct tensor_plan {
  const rotate_command *command;
  const st_tensor *source;
  size_t output_index; /* in the writer (unused for a quantized weight) */
  long quant_index;    /* the weight's quantize_stream handle, or -1: written as it is */
  size_t rows, cols;   /* the tensor as a [rows, cols] matrix; a vector is [n, 1] */
  tensor_cut cut;
  dtype out_dtype; /* the dtype written (transform_output_dtype) */
  size_t step;     /* rows (CUT_ROWS) or columns (CUT_COLUMNS) per piece */
  size_t pieces;
  size_t block_rows;  /* rows transformed at a time inside a row piece (cache-sized) */
  double *norm;       /* the fused norm's weight (1 + w for 1 + w norms; 1/γ for a kept norm bias), or NULL */
  double *bias_shift; /* a LayerNorm reader's bias: W·β added first [rows], or NULL */
} tensor_plan;

/* Seconds spent by one thread: reading (the mapped input converted to the compute precision),
 * computing (norm, mean, rotations), converting back, and writing (pwrite). */
typedef struct transform_timing {
  double read, compute, convert, write;
} transform_timing;

/* Plans command c (reads its fused norm's weight). */
int tensor_plan_make(const transform_context *ctx, const rotate_command *c, tensor_plan *plan, rotq_error *err);
void tensor_plan_free(tensor_plan *plan);
/* Row or column range [*begin, *end) of piece i. */
void tensor_piece_range(const tensor_plan *plan, size_t i, size_t *begin, size_t *end);
/* Bytes of compute buffer a piece needs (CUT_ROWS, CUT_COLUMNS; CUT_WHOLE allocates its own). */
size_t tensor_piece_work_bytes(const transform_context *ctx, const tensor_plan *plan);
/* Bytes of output a row piece produces at most (CUT_ROWS). */
size_t tensor_piece_output_bytes(const tensor_plan *plan);

/* Transforms piece i into out, in plan->out_dtype: for a row piece, its rows only ([end − begin,
 * cols]); for a column piece or the whole, the whole tensor's bytes, of which it fills its columns.
 * work: tensor_piece_work_bytes of scratch (unused for CUT_WHOLE, which uses ctx->threads threads).
 * Adds its time to timing. */
int tensor_transform_piece(const transform_context *ctx, const tensor_plan *plan, size_t i, void *work, void *out,
                           transform_timing *timing, rotq_error *err);
/* tensor_transform_piece reading a row piece's rows from `rows` (when not NULL): a tensor like
 * plan->source (same dtype, unscaled) whose element 0 is the first element of the piece's first
 * row, e.g. the piece's bytes read into memory with pread. */
int tensor_transform_piece_from(const transform_context *ctx, const tensor_plan *plan, size_t i, const st_tensor *rows,
                                void *work, void *out, transform_timing *timing, rotq_error *err);
/* Does c change its tensor's bytes (or is it a plain copy)? */
bool command_changes_tensor(const rotate_command *c);

#endif
