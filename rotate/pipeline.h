/* The processor's execution loop for one batch of commands (the pre-run tensors, or one decoder
 * layer): every tensor is planned and cut into pieces (rotate/tensor_transform.h), and a team of
 * ctx->threads threads takes the pieces in order, each thread reading, transforming and writing
 * its piece, so that reading, arithmetic and writing of different pieces overlap. A row piece is
 * written as soon as it is done; column pieces fill one output buffer, written by the thread that
 * finishes the last of them. The mapped input pages of a piece are released once it is written, so
 * memory stays bounded by the pieces in flight whatever the model's size. The bytes written do not
 * depend on the number of threads. */
#ifndef ROTQ_ROTATE_PIPELINE_H
#define ROTQ_ROTATE_PIPELINE_H

#include "rotate/tensor_transform.h"

/* Transforms and writes the count commands; returns when all are written (or on the first error).
 * Adds the threads' time to timing. */
int pipeline_run(const transform_context *ctx, const rotate_command *const *commands, size_t count,
                 transform_timing *timing, rotq_error *err);
/* Starts reading the commands' source tensors into the page cache in the background. */
void pipeline_prefetch(const transform_context *ctx, const rotate_command *const *commands, size_t count);

#endif
