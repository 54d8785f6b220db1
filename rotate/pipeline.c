#include "rotate/pipeline.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One command's tensor in flight. */
typedef struct job {
  tensor_plan plan;
  pthread_mutex_t lock;     /* guards the allocation of output */
  unsigned char *output;    /* CUT_COLUMNS, CUT_WHOLE: the whole tensor's bytes, while in flight */
  atomic_size_t remaining;  /* pieces not done yet */
} job;

typedef struct piece {
  size_t job, index;
} piece;

typedef struct batch {
  const transform_context *ctx;
  job *jobs;
  size_t job_count;
  piece *pieces;
  size_t piece_count;
  atomic_size_t next;       /* the next piece to take */
  atomic_bool failed;
  size_t work_bytes, output_bytes; /* per thread */
  pthread_mutex_t lock;     /* guards error and timing */
  rotq_error error;
  transform_timing timing;
} batch;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The first error of the batch wins; the others stop taking pieces. */
static void fail(batch *b, const rotq_error *err) {
  pthread_mutex_lock(&b->lock);
  if (!atomic_exchange(&b->failed, true)) b->error = *err;
  pthread_mutex_unlock(&b->lock);
}

/* The job's whole-tensor output buffer, allocated by the first of its pieces. */
static unsigned char *job_output(job *j, rotq_error *err) {
  pthread_mutex_lock(&j->lock);
  if (!j->output) j->output = malloc(j->plan.source->nbytes ? j->plan.source->nbytes : 1);
  unsigned char *output = j->output;
  pthread_mutex_unlock(&j->lock);
  if (!output) rotq_fail(err, "tensor '%s': out of memory (%zu bytes)", j->plan.command->name, j->plan.source->nbytes);
  return output;
}

/* Piece p, from reading to writing, with this thread's buffers. */
static int run_piece(batch *b, const piece *p, void *work, void *output, transform_timing *timing, rotq_error *err) {
  const transform_context *ctx = b->ctx;
  job *j = &b->jobs[p->job];
  const tensor_plan *plan = &j->plan;
  const st_tensor *source = plan->source;
  if (plan->cut == CUT_COPY) {
    double t0 = now_seconds();
    int rc = st_writer_write(ctx->writer, plan->output_index, source->data, err);
    timing->write += now_seconds() - t0;
    st_release(source->data, source->nbytes);
    return rc;
  }
  if (plan->cut == CUT_ROWS) {
    size_t begin, end, row_bytes = plan->cols * dtype_size(source->dtype);
    tensor_piece_range(plan, p->index, &begin, &end);
    if (tensor_transform_piece(ctx, plan, p->index, work, output, timing, err) < 0) return -1;
    double t0 = now_seconds();
    int rc = st_writer_write_part(ctx->writer, plan->output_index, begin * row_bytes, output, (end - begin) * row_bytes, err);
    timing->write += now_seconds() - t0;
    st_release((const unsigned char *)source->data + begin * row_bytes, (end - begin) * row_bytes);
    return rc;
  }
  unsigned char *whole = job_output(j, err);
  if (!whole || tensor_transform_piece(ctx, plan, p->index, work, whole, timing, err) < 0) return -1;
  if (atomic_fetch_sub(&j->remaining, 1) != 1) return 0;
  double t0 = now_seconds();
  int rc = st_writer_write(ctx->writer, plan->output_index, whole, err);
  timing->write += now_seconds() - t0;
  st_release(source->data, source->nbytes);
  pthread_mutex_lock(&j->lock);
  free(j->output);
  j->output = NULL;
  pthread_mutex_unlock(&j->lock);
  return rc;
}

static void *worker(void *arg) {
  batch *b = arg;
  transform_timing timing = {0};
  void *work = malloc(b->work_bytes ? b->work_bytes : 1), *output = malloc(b->output_bytes ? b->output_bytes : 1);
  rotq_error err = {{0}};
  if (!work || !output) {
    rotq_fail(&err, "out of memory for the transform buffers (%zu bytes)", b->work_bytes + b->output_bytes);
    fail(b, &err);
  }
  for (;;) {
    size_t k = atomic_fetch_add(&b->next, 1);
    if (k >= b->piece_count || atomic_load(&b->failed)) break;
    if (run_piece(b, &b->pieces[k], work, output, &timing, &err) < 0) {
      fail(b, &err);
      break;
    }
  }
  free(work);
  free(output);
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
    if (tensor_plan_make(b->ctx, commands[i], &j->plan, err) < 0) return -1;
    pthread_mutex_init(&j->lock, NULL);
    atomic_init(&j->remaining, j->plan.pieces);
    b->job_count++;
    b->piece_count += j->plan.pieces;
    size_t work = tensor_piece_work_bytes(b->ctx, &j->plan), output = tensor_piece_output_bytes(&j->plan);
    if (work > b->work_bytes) b->work_bytes = work;
    if (output > b->output_bytes) b->output_bytes = output;
  }
  b->pieces = malloc((b->piece_count ? b->piece_count : 1) * sizeof *b->pieces);
  if (!b->pieces) return rotq_fail(err, "out of memory");
  size_t k = 0;
  for (size_t i = 0; i < b->job_count; i++)
    for (size_t p = 0; p < b->jobs[i].plan.pieces; p++) b->pieces[k++] = (piece){.job = i, .index = p};
  return 0;
}

static void free_batch(batch *b) {
  for (size_t i = 0; i < b->job_count; i++) {
    tensor_plan_free(&b->jobs[i].plan);
    free(b->jobs[i].output);
    pthread_mutex_destroy(&b->jobs[i].lock);
  }
  free(b->jobs);
  free(b->pieces);
  pthread_mutex_destroy(&b->lock);
}

int pipeline_run(const transform_context *ctx, const rotate_command *const *commands, size_t count,
                 transform_timing *timing, rotq_error *err) {
  batch b = {.ctx = ctx};
  pthread_mutex_init(&b.lock, NULL);
  atomic_init(&b.next, 0);
  atomic_init(&b.failed, false);
  if (plan_batch(&b, commands, count, err) < 0) {
    free_batch(&b);
    return -1;
  }
  int threads = ctx->threads > 1 ? ctx->threads : 1;
  pthread_t *ids = calloc((size_t)threads, sizeof *ids);
  int *started = calloc((size_t)threads, sizeof *started);
  if (!ids || !started) {
    free(ids), free(started), free_batch(&b);
    return rotq_fail(err, "out of memory");
  }
  for (int t = 1; t < threads; t++) started[t] = pthread_create(&ids[t], NULL, worker, &b) == 0;
  worker(&b); /* threads that could not start leave their share to the others */
  for (int t = 1; t < threads; t++)
    if (started[t]) pthread_join(ids[t], NULL);
  free(ids);
  free(started);
  int rc = atomic_load(&b.failed) ? -1 : 0;
  if (rc < 0) *err = b.error;
  timing->read += b.timing.read, timing->compute += b.timing.compute;
  timing->convert += b.timing.convert, timing->write += b.timing.write;
  free_batch(&b);
  return rc;
}

void pipeline_prefetch(const transform_context *ctx, const rotate_command *const *commands, size_t count) {
  for (size_t i = 0; i < count; i++) {
    const st_tensor *t = checkpoint_find(ctx->ck, commands[i]->source);
    if (t) st_prefetch(t->data, t->nbytes);
  }
}
