/* Executes one rotate_command on one tensor: read it (from the read-only mapping), convert once to
 * the compute precision (float64 by default), fuse the norm, bake the mean, rotate, cast once back
 * to the tensor's dtype, and hand the bytes to the writer. Tensors without a command's work are
 * copied bit for bit. */
#ifndef ROTQ_ROTATE_TENSOR_TRANSFORM_H
#define ROTQ_ROTATE_TENSOR_TRANSFORM_H

#include <stdbool.h>

#include "adapter/adapter.h"
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
} transform_context;

int tensor_transform(const transform_context *ctx, const rotate_command *c, rotq_error *err);
/* Does c change its tensor's bytes (or is it a plain copy)? */
bool command_changes_tensor(const rotate_command *c);

#endif
