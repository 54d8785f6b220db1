#include "rotate/pipeline.h"

#include "linalg/rotation.h"

#include "common/buffer_pool.h"
#include "io/finite.h"
#include "rotate/quantize_command.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Output buffers per thread for row pieces: one being filled while the others wait to be
 * written (see queue_write). */
#define OUTPUT_BUFFERS 2

/* A thread's buffers, kept from batch to batch. output_busy[k]: output[k] holds rows queued or
 * being written (guarded by the pipeline's write_lock). A thread has at most OUTPUT_BUFFERS + 1
 * writes queued. */
typedef struct slot {
  void *work, *output[OUTPUT_BUFFERS], *input;
  size_t work_size, output_size, input_size;
  bool output_busy[OUTPUT_BUFFERS];
  bool whole_busy; /* a whole tensor this thread queued is not written yet (write_lock) */
} slot;

/* Output bytes a thread (slot `owner`) queued for writing: rows [begin, end) of a row piece, in
 * its output buffer `buffer`; or (buffer -1) a whole tensor, from its staging buffer (then given
 * back) or, copied unchanged, from the source's mapping (then released). */
typedef struct pending_write {
  struct batch *b;
  struct job *j;
  size_t begin, end;
  const void *data;
  slot *owner;
  int buffer;
  size_t size, done; /* a whole tensor: its bytes, and those written so far */
} pending_write;

/* Source bytes queued for reading ahead. */
typedef struct range {
  const unsigned char *data;
  size_t size;
} range;

/* How far the reader reads ahead of the pieces done, and how much it reads per call. */
#define READ_WINDOW ((size_t)1024 << 20)
#define READ_STEP ((size_t)2 << 20)

/* Marks a checker's output as a quantized weight's quantize_stream handle: its rotated rows are
 * held in memory for the check (quantize_stream_keep_rows), let go once it is checked. */
#define HELD_OUTPUT (((size_t)-1 >> 1) + 1)

/* The check of a written batch, running beside the next one, then its eviction. */
typedef struct checker {
  pthread_t thread;
  bool running;
  pipeline_check check;
  void *user;
  int batch;
  const void **sources; /* the batch's input bytes and output tensors, evicted after the check */
  size_t *source_bytes, *outputs, count, capacity;
  int status;
  rotq_error error;
} checker;

struct pipeline {
  const transform_context *ctx;
  int threads;
  int *shard_fds; /* per checkpoint shard: a descriptor to pread row pieces from, or -1 */
  checker checking;
  slot *slots;
  pthread_mutex_t lock; /* guards the staging buffers */
  buffer_pool buffers;  /* whole-tensor output buffers (column pieces), reused by later tensors */
  /* Row pieces' writes: a thread done with a piece queues its rows; the first thread to find no
   * one writing becomes the writer and writes the queue until it is empty, the others going on
   * computing (a file's buffered writes are serialized: in the kernel, by the inode's lock, and
   * a thread waiting for that lock would leave its core idle). */
  pthread_mutex_t write_lock;
  pthread_cond_t written; /* an output buffer was written */
  pending_write *rows;    /* ring of threads · OUTPUT_BUFFERS row pieces */
  pending_write *wholes;  /* ring of threads whole tensors (at most one per thread) */
  size_t rows_first, rows_count, wholes_first, wholes_count;
  bool writing; /* a thread is writing the queue */
  /* The reader thread reads the queued input, in order, into the page cache, staying within
   * READ_WINDOW of the bytes the workers are done with, so that the workers rarely wait for the
   * disk. */
  pthread_t reader;
  bool reading;            /* the thread runs */
  pthread_mutex_t io_lock; /* guards everything below */
  pthread_cond_t wake;     /* input queued, room to read ahead, or stop */
  range *queue;
  size_t queue_first, queue_count, queue_capacity;
  size_t read_ahead, consumed; /* input bytes read ahead; bytes the workers are done with */
  bool stop;
};

/* One command's tensor in flight. */
typedef struct job {
  tensor_plan plan;
  pthread_mutex_t lock;    /* guards output */
  unsigned char *output;   /* CUT_COLUMNS, CUT_WHOLE: the whole tensor's bytes, while in flight */
  atomic_size_t remaining; /* pieces not done yet */
} job;

typedef struct piece {
  size_t job, index;
} piece;

typedef struct batch {
  pipeline *pl;
  job *jobs;
  size_t job_count;
  piece *pieces;
  size_t piece_count;
  atomic_size_t next; /* the next piece to take */
  atomic_bool failed;
  size_t work_bytes, output_bytes, input_bytes; /* per thread */
  pthread_mutex_t lock;                         /* guards error and timing */
  rotq_error error;
  transform_timing timing;
} batch;

typedef struct worker_args {
  batch *b;
  slot *s;
} worker_args;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Reads the next step of queued input; called and returns with io_lock held. */
static void read_step(pipeline *pl) {
  range *r = &pl->queue[pl->queue_first];
  size_t step = r->size < READ_STEP ? r->size : READ_STEP;
  const unsigned char *data = r->data;
  r->data += step, r->size -= step;
  if (r->size == 0) pl->queue_first = (pl->queue_first + 1) % pl->queue_capacity, pl->queue_count--;
  pthread_mutex_unlock(&pl->io_lock);
  st_prefetch(data, step);
  pthread_mutex_lock(&pl->io_lock);
  pl->read_ahead += step;
}

static void *read_loop(void *arg) {
  pipeline *pl = arg;
  pthread_mutex_lock(&pl->io_lock);
  while (!pl->stop) {
    if (pl->queue_count > 0 && pl->read_ahead < pl->consumed + READ_WINDOW)
      read_step(pl);
    else
      pthread_cond_wait(&pl->wake, &pl->io_lock);
  }
  pthread_mutex_unlock(&pl->io_lock);
  return NULL;
}

/* The workers are done with size more input bytes: the reader may read further. */
static void consumed(pipeline *pl, size_t size) {
  pthread_mutex_lock(&pl->io_lock);
  pl->consumed += size;
  pthread_cond_signal(&pl->wake);
  pthread_mutex_unlock(&pl->io_lock);
}

void pipeline_prefetch(pipeline *pl, const rotate_command *const *commands, size_t count) {
  if (!pl->reading) return; /* no reader: in memory already, or the thread could not start */
  pthread_mutex_lock(&pl->io_lock);
  for (size_t i = 0; i < count; i++) {
    const st_tensor *t = checkpoint_find(pl->ctx->ck, commands[i]->source);
    if (!t || t->nbytes == 0) continue;
    if (pl->queue_count == pl->queue_capacity) { /* grow the ring, unwrapping it */
      size_t capacity = pl->queue_capacity ? 2 * pl->queue_capacity : 64;
      range *grown = malloc(capacity * sizeof *grown);
      if (!grown) break; /* reading ahead is an optimisation only */
      for (size_t k = 0; k < pl->queue_count; k++) grown[k] = pl->queue[(pl->queue_first + k) % pl->queue_capacity];
      free(pl->queue);
      pl->queue = grown, pl->queue_capacity = capacity, pl->queue_first = 0;
    }
    pl->queue[(pl->queue_first + pl->queue_count++) % pl->queue_capacity] = (range){t->data, t->nbytes};
  }
  pthread_cond_signal(&pl->wake);
  pthread_mutex_unlock(&pl->io_lock);
}

pipeline *pipeline_create(const transform_context *ctx, rotq_error *err) {
  pipeline *pl = calloc(1, sizeof *pl);
  int threads = ctx->threads < 1 ? 1 : ctx->threads > 64 ? 64 : ctx->threads;
  if (pl) pl->slots = calloc((size_t)threads, sizeof *pl->slots);
  if (!pl || !pl->slots) {
    free(pl);
    rotq_fail(err, "out of memory");
    return NULL;
  }
  pl->ctx = ctx;
  pl->threads = threads;
  pl->shard_fds = malloc((ctx->ck->shard_count ? ctx->ck->shard_count : 1) * sizeof *pl->shard_fds);
  bool in_memory = pl->shard_fds != NULL; /* every shard on tmpfs or ramfs: nothing to read ahead */
  for (size_t i = 0; pl->shard_fds && i < ctx->ck->shard_count; i++) { /* reading by pread is optional */
    pl->shard_fds[i] = open(ctx->ck->shards[i].path, O_RDONLY | O_CLOEXEC);
    in_memory = in_memory && pl->shard_fds[i] >= 0 && st_fd_in_memory(pl->shard_fds[i]);
  }
  pl->rows = malloc((size_t)threads * OUTPUT_BUFFERS * sizeof *pl->rows);
  pl->wholes = malloc((size_t)threads * sizeof *pl->wholes);
  if (!pl->rows || !pl->wholes) {
    free(pl->rows), free(pl->wholes);
    for (size_t i = 0; pl->shard_fds && i < ctx->ck->shard_count; i++)
      if (pl->shard_fds[i] >= 0) close(pl->shard_fds[i]);
    free(pl->shard_fds);
    free(pl->slots);
    free(pl);
    rotq_fail(err, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&pl->lock, NULL);
  pthread_mutex_init(&pl->write_lock, NULL);
  pthread_cond_init(&pl->written, NULL);
  pthread_mutex_init(&pl->io_lock, NULL);
  pthread_cond_init(&pl->wake, NULL);
  pl->reading = !in_memory && pthread_create(&pl->reader, NULL, read_loop, pl) == 0;
  return pl;
}

static void *check_loop(void *arg) {
  pipeline *pl = arg;
  checker *c = &pl->checking;
  rotation_scratch_recover(true); /* a failed scratch allocation fails the check, not the process */
  c->status = c->check(c->user, c->batch, &c->error);
  if (rotation_scratch_failed() && c->status == 0)
    c->status = rotq_fail(&c->error, "in-stream check: out of memory (rotation scratch)");
  rotation_scratch_recover(false);
  for (size_t i = 0; i < c->count; i++) { /* the batch's input and output leave the page cache */
    checkpoint_forget(pl->ctx->ck, c->sources[i], c->source_bytes[i]);
    if (c->outputs[i] & HELD_OUTPUT) /* a quantized weight's rotated values, checked: let go */
      quantize_stream_release(pl->ctx->quant, (long)(c->outputs[i] & ~HELD_OUTPUT));
    else
      st_writer_drop_tensor(pl->ctx->writer, c->outputs[i]);
  }
  return NULL;
}

/* Waits for the running check (if any); its status. */
static int wait_check(pipeline *pl, rotq_error *err) {
  checker *c = &pl->checking;
  if (!c->running) return 0;
  pthread_join(c->thread, NULL);
  c->running = false;
  if (c->status < 0) *err = c->error;
  return c->status < 0 ? -1 : 0;
}

int pipeline_finish(pipeline *pl, rotq_error *err) {
  int rc = wait_check(pl, err);
  st_writer_drop_cache(pl->ctx->writer); /* pages that were still being written when dropped */
  return rc;
}

void pipeline_stop_check(pipeline *pl) {
  rotq_error ignored;
  if (pl) wait_check(pl, &ignored);
}

void pipeline_free(pipeline *pl) {
  if (!pl) return;
  rotq_error ignored;
  wait_check(pl, &ignored);
  free(pl->checking.sources), free(pl->checking.source_bytes), free(pl->checking.outputs);
  pthread_mutex_lock(&pl->io_lock);
  pl->stop = true;
  pthread_cond_signal(&pl->wake);
  pthread_mutex_unlock(&pl->io_lock);
  if (pl->reading) pthread_join(pl->reader, NULL);
  pthread_cond_destroy(&pl->wake);
  pthread_mutex_destroy(&pl->io_lock);
  free(pl->queue);
  for (int t = 0; t < pl->threads; t++) {
    free(pl->slots[t].work), free(pl->slots[t].input);
    for (int k = 0; k < OUTPUT_BUFFERS; k++) free(pl->slots[t].output[k]);
  }
  free(pl->rows), free(pl->wholes);
  pthread_cond_destroy(&pl->written);
  pthread_mutex_destroy(&pl->write_lock);
  for (size_t i = 0; pl->shard_fds && i < pl->ctx->ck->shard_count; i++)
    if (pl->shard_fds[i] >= 0) close(pl->shard_fds[i]);
  free(pl->shard_fds);
  buffer_pool_free(&pl->buffers);
  free(pl->slots);
  pthread_mutex_destroy(&pl->lock);
  free(pl);
}

/* An idle staging buffer of at least size bytes (buffer_pool_take); NULL when out of memory. */
static unsigned char *staging_take(pipeline *pl, size_t size) {
  pthread_mutex_lock(&pl->lock);
  unsigned char *data = buffer_pool_take(&pl->buffers, size);
  pthread_mutex_unlock(&pl->lock);
  return data;
}

static void staging_give(pipeline *pl, unsigned char *data) {
  pthread_mutex_lock(&pl->lock);
  buffer_pool_give(&pl->buffers, data);
  pthread_mutex_unlock(&pl->lock);
}

/* The first error of the batch wins; the others stop taking pieces. */
static void fail(batch *b, const rotq_error *err) {
  pthread_mutex_lock(&b->lock);
  if (!atomic_exchange(&b->failed, true)) b->error = *err;
  pthread_mutex_unlock(&b->lock);
}

/* The job's whole-tensor output buffer, taken by the first of its pieces. */
static unsigned char *job_output(batch *b, job *j, rotq_error *err) {
  size_t size = st_numel(j->plan.source) * dtype_size(j->plan.out_dtype);
  if (!size) size = 1;
  pthread_mutex_lock(&j->lock);
  if (!j->output) j->output = staging_take(b->pl, size);
  unsigned char *output = j->output;
  pthread_mutex_unlock(&j->lock);
  if (!output) rotq_fail(err, "tensor '%s': out of memory (%zu bytes)", j->plan.command->name, size);
  return output;
}

/* Fails naming the shard and tensor if count elements of t from element `first` on hold a NaN or
 * an infinity (a rotation would spread it over every element it mixes); the elements are read from
 * `in`, from element in_first on: t itself, or a copy of some of its elements in memory. */
static int check_finite_in(const transform_context *ctx, const st_tensor *t, const st_tensor *in, size_t in_first,
                           size_t first, size_t count, rotq_error *err) {
  size_t at = st_first_non_finite(in, in_first, count);
  if (at == count) return 0;
  return rotq_fail(err, "%s: tensor '%s': element %zu is not finite (NaN or infinity)", checkpoint_path_of(ctx->ck, t),
                   t->name, first + at);
}

/* check_finite_in reading t itself. */
static int check_finite(const transform_context *ctx, const st_tensor *t, size_t first, size_t count, rotq_error *err) {
  return check_finite_in(ctx, t, t, first, first, count, err);
}

/* Fails naming the tensor if count written elements (of the tensor's dtype, from element `first`)
 * hold a NaN or an infinity: finite weights can overflow a 16-bit dtype once fused and rotated. */
static int check_output_finite(const tensor_plan *plan, const void *data, size_t first, size_t count, rotq_error *err) {
  size_t at = first_non_finite(plan->out_dtype, data, count);
  if (at == count) return 0;
  return rotq_fail(err,
                   "tensor '%s': element %zu is not finite once rotated and rounded to %s (the fused, rotated "
                   "weight overflows the dtype's range)",
                   plan->command->name, first + at, dtype_name(plan->out_dtype));
}

/* Row piece [begin, end) of plan's source read into s->input with pread, described by *rows (its
 * element 0 the piece's first): 1 when read, 0 when the piece is to be read through the mapping
 * (a scaled tensor, no descriptor, no buffer), -1 (and err) when the read fails. A read copies
 * from the page cache once; the mapping would map and unmap every page (3-4x the CPU time on
 * tmpfs) and its pages would count in this process's memory until released. */
static int read_rows(const pipeline *pl, const tensor_plan *plan, size_t begin, size_t end, const slot *s,
                     st_tensor *rows, rotq_error *err) {
  const st_tensor *t = plan->source;
  const checkpoint *ck = pl->ctx->ck;
  if (!pl->shard_fds || t->scaling != ST_SCALE_NONE || dtype_size(t->dtype) == 0) return 0;
  size_t first = begin * plan->cols, bytes = st_span(t, first, (end - begin) * plan->cols);
  uintptr_t at = (uintptr_t)st_address(t, first);
  if (bytes > s->input_size) return 0;
  for (size_t i = 0; i < ck->shard_count; i++) {
    uintptr_t map = (uintptr_t)ck->shards[i].map;
    if (at < map || at + bytes > map + ck->shards[i].size) continue;
    if (pl->shard_fds[i] < 0) return 0;
    size_t offset = at - map;
    for (size_t done = 0; done < bytes;) {
      ssize_t got = pread(pl->shard_fds[i], (unsigned char *)s->input + done, bytes - done, (off_t)(offset + done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0)
        return rotq_fail(err, "%s: tensor '%s': cannot read %zu bytes at offset %zu: %s", ck->shards[i].path, t->name,
                         bytes - done, offset + done, got < 0 ? strerror(errno) : "unexpected end of file");
      done += (size_t)got;
    }
    *rows = *t;
    rows->data = s->input;
    rows->nbytes = bytes;
    return 1;
  }
  return 0;
}

/* Writes rows [begin, end) of plan's output, given as bytes of plan->out_dtype: to the writer, or
 * (rotq rotate --quantize) to the quantizer, which writes them quantized into the output writer
 * (and holds them for the in-stream check, quantize_stream_keep_rows). */
static int write_rows(const transform_context *ctx, const tensor_plan *plan, size_t begin, size_t end,
                      const void *bytes, rotq_error *err) {
  const size_t row_bytes = plan->cols * dtype_size(plan->out_dtype);
  if (plan->quant_index < 0)
    return st_writer_write_part(ctx->writer, plan->output_index, begin * row_bytes, bytes, (end - begin) * row_bytes,
                                err);
  return quantize_stream_rows(ctx->quant, plan->quant_index, (int64_t)begin, (int64_t)(end - begin), bytes, err);
}

/* An idle output buffer of s (its index, now busy): waits for one of s's queued rows to be
 * written when all are. */
static int take_output(pipeline *pl, slot *s) {
  pthread_mutex_lock(&pl->write_lock);
  for (;;) {
    for (int k = 0; k < OUTPUT_BUFFERS; k++)
      if (!s->output_busy[k]) {
        s->output_busy[k] = true;
        pthread_mutex_unlock(&pl->write_lock);
        return k;
      }
    pthread_cond_wait(&pl->written, &pl->write_lock);
  }
}

/* Output buffer k of s is idle again; called with write_lock held. */
static void give_output(pipeline *pl, slot *s, int k) {
  s->output_busy[k] = false;
  pthread_cond_broadcast(&pl->written);
}

/* Bytes of a whole tensor written at a time: between two parts the writer writes the rows other
 * threads queued meanwhile (they wait for those; nothing waits for a whole tensor's part). */
#define WHOLE_PART_BYTES ((size_t)4 << 20)

/* Writes row item w and gives its output buffer back; called without write_lock. A failed
 * write fails w's batch. */
static void write_queued_rows(pipeline *pl, const pending_write *w) {
  rotq_error err;
  if (!atomic_load(&w->b->failed) && write_rows(pl->ctx, &w->j->plan, w->begin, w->end, w->data, &err) < 0)
    fail(w->b, &err);
  pthread_mutex_lock(&pl->write_lock);
  give_output(pl, w->owner, w->buffer);
  pthread_mutex_unlock(&pl->write_lock);
}

/* Writes bytes [at, at + n) of whole item w, called without write_lock; after its last part,
 * gives its staging buffer back (or releases the source's pages it was copied from). */
static void write_queued_part(pipeline *pl, const pending_write *w, size_t at, size_t n) {
  const tensor_plan *plan = &w->j->plan;
  rotq_error err;
  if (!atomic_load(&w->b->failed) &&
      st_writer_write_part(pl->ctx->writer, plan->output_index, at, (const unsigned char *)w->data + at, n, &err) < 0)
    fail(w->b, &err);
  if (at + n < w->size) return;
  if (w->data == plan->source->data) {
    st_release(plan->source->data, plan->source->nbytes);
  } else {
    pthread_mutex_lock(&w->j->lock);
    w->j->output = NULL;
    pthread_mutex_unlock(&w->j->lock);
    staging_give(pl, (unsigned char *)w->data);
  }
  pthread_mutex_lock(&pl->write_lock);
  w->owner->whole_busy = false;
  pthread_cond_broadcast(&pl->written);
  pthread_mutex_unlock(&pl->write_lock);
}

/* Queues w for writing; unless another thread is writing the queue, this one then writes it
 * until it is empty (w and what other threads queue meanwhile): rows first, since their threads
 * may be waiting for their buffers, whole tensors a part at a time between them. */
static void queue_write(batch *b, pending_write w, transform_timing *timing) {
  pipeline *pl = b->pl;
  const size_t row_capacity = (size_t)pl->threads * OUTPUT_BUFFERS, whole_capacity = (size_t)pl->threads;
  pthread_mutex_lock(&pl->write_lock);
  if (w.buffer >= 0) {
    pl->rows[(pl->rows_first + pl->rows_count++) % row_capacity] = w;
  } else {
    while (w.owner->whole_busy) /* its previous one: another thread is writing it */
      pthread_cond_wait(&pl->written, &pl->write_lock);
    w.owner->whole_busy = true;
    pl->wholes[(pl->wholes_first + pl->wholes_count++) % whole_capacity] = w;
  }
  if (pl->writing) {
    pthread_mutex_unlock(&pl->write_lock);
    return;
  }
  pl->writing = true;
  double t0 = now_seconds();
  while (pl->rows_count > 0 || pl->wholes_count > 0) {
    if (pl->rows_count > 0) {
      pending_write r = pl->rows[pl->rows_first];
      pl->rows_first = (pl->rows_first + 1) % row_capacity, pl->rows_count--;
      pthread_mutex_unlock(&pl->write_lock);
      write_queued_rows(pl, &r);
    } else { /* the next part of the first whole tensor; only the writer changes it */
      pending_write *h = &pl->wholes[pl->wholes_first];
      size_t at = h->done, n = h->size - at < WHOLE_PART_BYTES ? h->size - at : WHOLE_PART_BYTES;
      h->done += n;
      pending_write whole = *h;
      if (whole.done == whole.size) pl->wholes_first = (pl->wholes_first + 1) % whole_capacity, pl->wholes_count--;
      pthread_mutex_unlock(&pl->write_lock);
      write_queued_part(pl, &whole, at, n);
    }
    pthread_mutex_lock(&pl->write_lock);
  }
  pl->writing = false;
  pthread_mutex_unlock(&pl->write_lock);
  timing->write += now_seconds() - t0;
}

/* Piece p, from reading to writing, with this thread's buffers. */
static int run_piece(batch *b, const piece *p, slot *s, transform_timing *timing, rotq_error *err) {
  const transform_context *ctx = b->pl->ctx;
  job *j = &b->jobs[p->job];
  const tensor_plan *plan = &j->plan;
  const st_tensor *source = plan->source;
  if (plan->cut == CUT_COPY) {
    double t0 = now_seconds();
    int rc = check_finite(ctx, source, 0, st_numel(source), err);
    double t1 = now_seconds();
    timing->read += t1 - t0;
    consumed(b->pl, source->nbytes);
    if (rc == 0 && plan->quant_index < 0) { /* written (and released) by whichever thread writes the queue */
      queue_write(
          b, (pending_write){.b = b, .j = j, .data = source->data, .owner = s, .buffer = -1, .size = source->nbytes},
          timing);
      return 0;
    }
    if (rc == 0) rc = write_rows(ctx, plan, 0, plan->rows, source->data, err);
    timing->write += now_seconds() - t1;
    st_release(source->data, source->nbytes);
    return rc;
  }
  if (plan->cut == CUT_ROWS) {
    size_t begin, end;
    tensor_piece_range(plan, p->index, &begin, &end);
    double t_check = now_seconds();
    st_tensor rows;
    int read = read_rows(b->pl, plan, begin, end, s, &rows, err);
    if (read < 0) return -1;
    const st_tensor *in = read ? &rows : source;
    if (check_finite_in(ctx, source, in, read ? 0 : begin * plan->cols, begin * plan->cols, (end - begin) * plan->cols,
                        err) < 0)
      return -1;
    timing->read += now_seconds() - t_check;
    int k = take_output(b->pl, s);
    void *output = s->output[k];
    int rc = tensor_transform_piece_from(ctx, plan, p->index, read ? &rows : NULL, s->work, output, timing, err);
    if (rc == 0) rc = check_output_finite(plan, output, begin * plan->cols, (end - begin) * plan->cols, err);
    size_t read_bytes = st_span(source, begin * plan->cols, (end - begin) * plan->cols);
    if (!read) st_release(st_address(source, begin * plan->cols), read_bytes);
    consumed(b->pl, read_bytes);
    if (rc == 0 && plan->quant_index < 0) { /* written by whichever thread writes the queue */
      queue_write(b,
                  (pending_write){.b = b, .j = j, .begin = begin, .end = end, .data = output, .owner = s, .buffer = k},
                  timing);
      return 0;
    }
    double t0 = now_seconds();
    if (rc == 0) rc = write_rows(ctx, plan, begin, end, output, err);
    timing->write += now_seconds() - t0;
    pthread_mutex_lock(&b->pl->write_lock);
    give_output(b->pl, s, k);
    pthread_mutex_unlock(&b->pl->write_lock);
    return rc;
  }
  unsigned char *whole = job_output(b, j, err);
  if (!whole || tensor_transform_piece(ctx, plan, p->index, s->work, whole, timing, err) < 0) return -1;
  if (atomic_fetch_sub(&j->remaining, 1) != 1) return 0;
  double t0 = now_seconds();
  int rc = check_finite(ctx, source, 0, st_numel(source), err);
  if (rc == 0) rc = check_output_finite(plan, whole, 0, st_numel(source), err);
  double t1 = now_seconds();
  timing->read += t1 - t0;
  st_release(source->data, source->nbytes);
  consumed(b->pl, source->nbytes);
  if (rc == 0 && plan->quant_index < 0) { /* written by whichever thread writes the queue, then given back */
    queue_write(b,
                (pending_write){.b = b,
                                .j = j,
                                .data = whole,
                                .owner = s,
                                .buffer = -1,
                                .size = st_numel(source) * dtype_size(plan->out_dtype)},
                timing);
    return 0;
  }
  if (rc == 0) rc = write_rows(ctx, plan, 0, plan->rows, whole, err);
  timing->write += now_seconds() - t1;
  pthread_mutex_lock(&j->lock);
  j->output = NULL;
  pthread_mutex_unlock(&j->lock);
  staging_give(b->pl, whole);
  return rc;
}

static void *worker(void *arg) {
  worker_args *a = arg;
  batch *b = a->b;
  transform_timing timing = {0};
  rotq_error err = {{0}};
  for (;;) {
    size_t k = atomic_fetch_add(&b->next, 1);
    if (k >= b->piece_count || atomic_load(&b->failed)) break;
    if (run_piece(b, &b->pieces[k], a->s, &timing, &err) < 0) {
      fail(b, &err);
      break;
    }
  }
  pthread_mutex_lock(&b->lock);
  b->timing.read += timing.read, b->timing.compute += timing.compute;
  b->timing.convert += timing.convert, b->timing.write += timing.write;
  pthread_mutex_unlock(&b->lock);
  return NULL;
}

/* Plans every command and lists their pieces in command order. */
static int plan_batch(batch *b, const rotate_command *const *commands, size_t count, rotq_error *err) {
  b->jobs = calloc(count ? count : 1, sizeof *b->jobs);
  if (!b->jobs) return rotq_fail(err, "out of memory");
  for (size_t i = 0; i < count; i++) {
    job *j = &b->jobs[i];
    if (tensor_plan_make(b->pl->ctx, commands[i], &j->plan, err) < 0) return -1;
    pthread_mutex_init(&j->lock, NULL);
    atomic_init(&j->remaining, j->plan.pieces);
    b->job_count++;
    b->piece_count += j->plan.pieces;
    size_t work = tensor_piece_work_bytes(b->pl->ctx, &j->plan), output = tensor_piece_output_bytes(&j->plan);
    if (work > b->work_bytes) b->work_bytes = work;
    if (output > b->output_bytes) b->output_bytes = output;
    if (j->plan.cut == CUT_ROWS && j->plan.source->scaling == ST_SCALE_NONE) { /* read_rows's buffer */
      size_t input = st_span(j->plan.source, 0, j->plan.step * j->plan.cols);
      if (input > b->input_bytes) b->input_bytes = input;
    }
  }
  b->pieces = malloc((b->piece_count ? b->piece_count : 1) * sizeof *b->pieces);
  if (!b->pieces) return rotq_fail(err, "out of memory");
  size_t k = 0;
  for (size_t i = 0; i < b->job_count; i++)
    for (size_t p = 0; p < b->jobs[i].plan.pieces; p++) b->pieces[k++] = (piece){.job = i, .index = p};
  return 0;
}

/* Grows *buffer to at least size bytes (contents not kept). */
static int reserve(void **buffer, size_t *capacity, size_t size, rotq_error *err) {
  if (*capacity >= size) return 0;
  free(*buffer);
  *buffer = malloc(size);
  *capacity = *buffer ? size : 0;
  return *buffer ? 0 : rotq_fail(err, "out of memory for the transform buffers (%zu bytes)", size);
}

/* Grows every output buffer of s to at least size bytes (contents not kept). */
static int reserve_outputs(slot *s, size_t size, rotq_error *err) {
  if (s->output_size >= size) return 0;
  for (int k = 0; k < OUTPUT_BUFFERS; k++) {
    free(s->output[k]);
    s->output[k] = NULL;
  }
  s->output_size = 0;
  for (int k = 0; k < OUTPUT_BUFFERS; k++)
    if (!(s->output[k] = malloc(size)))
      return rotq_fail(err, "out of memory for the transform buffers (%zu bytes)", size);
  s->output_size = size;
  return 0;
}

static void free_batch(batch *b) {
  for (size_t i = 0; i < b->job_count; i++) {
    tensor_plan_free(&b->jobs[i].plan);
    if (b->jobs[i].output) staging_give(b->pl, b->jobs[i].output);
    pthread_mutex_destroy(&b->jobs[i].lock);
  }
  free(b->jobs);
  free(b->pieces);
  pthread_mutex_destroy(&b->lock);
}

/* Starts check of batch b beside the next batch (or runs it here when no thread can start); 0, or
 * -1 when out of memory (then nothing was started and the batch is evicted by the caller). */
static int start_check(pipeline *pl, const batch *b, pipeline_check check, void *user, int batch_id) {
  checker *c = &pl->checking;
  if (b->job_count > c->capacity) {
    size_t cap = b->job_count;
    const void **sources = realloc(c->sources, cap * sizeof *sources);
    if (sources) c->sources = sources;
    size_t *bytes = realloc(c->source_bytes, cap * sizeof *bytes);
    if (bytes) c->source_bytes = bytes;
    size_t *outputs = realloc(c->outputs, cap * sizeof *outputs);
    if (outputs) c->outputs = outputs;
    if (!sources || !bytes || !outputs) return -1;
    c->capacity = cap;
  }
  for (size_t i = 0; i < b->job_count; i++) {
    c->sources[i] = b->jobs[i].plan.source->data;
    c->source_bytes[i] = b->jobs[i].plan.source->nbytes;
    const tensor_plan *plan = &b->jobs[i].plan;
    c->outputs[i] = plan->quant_index >= 0 ? (size_t)plan->quant_index | HELD_OUTPUT : plan->output_index;
  }
  c->count = b->job_count;
  c->check = check, c->user = user, c->batch = batch_id, c->status = 0;
  c->running = pthread_create(&c->thread, NULL, check_loop, pl) == 0;
  if (!c->running) check_loop(pl);
  return 0;
}

int pipeline_run(pipeline *pl, const rotate_command *const *commands, size_t count, pipeline_check check,
                 void *check_user, int batch_id, transform_timing *timing, rotq_error *err) {
  batch b = {.pl = pl};
  pthread_mutex_init(&b.lock, NULL);
  atomic_init(&b.next, 0);
  atomic_init(&b.failed, false);
  int rc = plan_batch(&b, commands, count, err);
  for (int t = 0; rc == 0 && t < pl->threads; t++) {
    slot *s = &pl->slots[t];
    rc = reserve(&s->work, &s->work_size, b.work_bytes ? b.work_bytes : 1, err);
    if (rc == 0) rc = reserve_outputs(s, b.output_bytes ? b.output_bytes : 1, err);
    if (rc == 0) rc = reserve(&s->input, &s->input_size, b.input_bytes ? b.input_bytes : 1, err);
  }
  if (rc < 0) {
    free_batch(&b);
    return -1;
  }
  pthread_t ids[64];
  worker_args args[64];
  int threads = pl->threads, started[64] = {0};
  for (int t = 0; t < threads; t++) args[t] = (worker_args){.b = &b, .s = &pl->slots[t]};
  for (int t = 1; t < threads; t++) started[t] = pthread_create(&ids[t], NULL, worker, &args[t]) == 0;
  worker(&args[0]); /* threads that could not start leave their share to the others */
  for (int t = 1; t < threads; t++)
    if (started[t]) pthread_join(ids[t], NULL);
  rotq_error check_err = {{0}};
  bool check_failed = wait_check(pl, &check_err) < 0; /* the previous batch's */
  checkpoint_release(pl->ctx->ck); /* pages the kernel mapped around the pieces' own (fault-around) */
  /* a batch whose check cannot start is an error: the output would not be proven */
  bool start_failed =
      !atomic_load(&b.failed) && !check_failed && check && start_check(pl, &b, check, check_user, batch_id) != 0;
  bool checking = !atomic_load(&b.failed) && !check_failed && check && !start_failed;
  if (!checking) {
    for (size_t i = 0; i < b.job_count; i++) /* the batch's input and output leave the page cache */
      checkpoint_forget(pl->ctx->ck, b.jobs[i].plan.source->data, b.jobs[i].plan.source->nbytes);
    st_writer_drop_cache(pl->ctx->writer);
  }
  rc = atomic_load(&b.failed) || check_failed || start_failed ? -1 : 0;
  if (rc < 0) *err = check_failed ? check_err : b.error;
  if (start_failed && !check_failed && !atomic_load(&b.failed))
    rotq_fail(err, "batch %d: out of memory starting its in-stream check", batch_id);
  timing->read += b.timing.read, timing->compute += b.timing.compute;
  timing->convert += b.timing.convert, timing->write += b.timing.write;
  free_batch(&b);
  return rc;
}
