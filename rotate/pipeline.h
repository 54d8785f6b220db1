/* The processor's execution loop. For each batch of commands (the pre-run tensors, or one decoder
 * layer) every tensor is planned and cut into pieces (rotate/tensor_transform.h), and a team of
 * ctx->threads threads takes the pieces in order, each thread reading and transforming its piece,
 * so that reading, arithmetic and writing of different pieces overlap. A row piece is queued for
 * writing as soon as it is done; column pieces fill one output buffer, queued by the thread that
 * finishes the last of them. The queue is written by one thread at a time, whichever finds no one
 * writing it, while the others go on computing (a file's buffered writes are serialized by the
 * kernel): rows first, whole tensors in parts between them; each write's writeback starts at once.
 * pipeline_run returns once everything is written.
 *
 * Memory: a reader thread reads the sources into the page cache ahead of the workers (a bounded
 * window, not kept mapped; none when every shard is on tmpfs or ramfs, already in memory); the
 * mapped input pages of a piece are released once it is transformed (a copied tensor's once it is
 * written); the
 * buffers live as long as the pipeline. So the process holds the pieces in flight whatever the
 * model's size. When a batch ends, its input and output leave the page cache too: the job then
 * cycles through a little memory instead of filling the page cache with two copies of the model,
 * which keeps the kernel's page copies on recently used memory (on virtual machines, freshly
 * allocated memory costs several times more to touch first).
 *
 * The bytes written do not depend on the number of threads. */
#ifndef ROTQ_ROTATE_PIPELINE_H
#define ROTQ_ROTATE_PIPELINE_H

#include "rotate/tensor_transform.h"

typedef struct pipeline pipeline;

/* A pipeline for ctx (which must outlive it). */
pipeline *pipeline_create(const transform_context *ctx, rotq_error *err);
/* Waits for the running in-stream check, if any, ignoring its result (before an error path frees
 * what it reads). */
void pipeline_stop_check(pipeline *pl);
void pipeline_free(pipeline *pl);
/* Called once batch `batch` is written, before its input and output leave the page cache (the
 * in-stream verification reads both back from there). It runs on its own thread beside the next
 * batch's transforms (so that the disk never waits for it), one batch at a time; its error fails
 * the next pipeline_run, or pipeline_finish. */
typedef int (*pipeline_check)(void *user, int batch, rotq_error *err);

/* Transforms and writes the count commands; returns when all are written (or on the first error),
 * and check (NULL = none) of the batch is started. Fails with the previous batch's check error.
 * Adds the threads' time to timing. */
int pipeline_run(pipeline *pl, const rotate_command *const *commands, size_t count, pipeline_check check,
                 void *check_user, int batch, transform_timing *timing, rotq_error *err);
/* Waits for the last batch's check; its status. */
int pipeline_finish(pipeline *pl, rotq_error *err);
/* Queues the commands' source tensors for reading ahead, in order, by the pipeline's reader
 * thread (each tensor once: the batch about to run, then the next). */
void pipeline_prefetch(pipeline *pl, const rotate_command *const *commands, size_t count);

#endif
