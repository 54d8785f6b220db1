#include "common/parallel.h"

#include <pthread.h>
#include <unistd.h>

typedef struct task {
  void (*body)(void *, size_t, size_t);
  void *ctx;
  size_t begin, end;
} task;

static void *run_task(void *arg) {
  task *t = arg;
  t->body(t->ctx, t->begin, t->end);
  return NULL;
}

int cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

void parallel_for(size_t count, size_t align, int threads, void (*body)(void *ctx, size_t begin, size_t end),
                  void *ctx) {
  if (align == 0) align = 1;
  size_t units = (count + align - 1) / align;
  if (threads > 64) threads = 64;
  if (threads <= 1 || units <= 1) {
    if (count) body(ctx, 0, count);
    return;
  }
  if ((size_t)threads > units) threads = (int)units;
  task tasks[64];
  pthread_t ids[64];
  int started[64] = {0};
  for (int i = 0; i < threads; i++) {
    size_t b = units * (size_t)i / (size_t)threads * align, e = units * (size_t)(i + 1) / (size_t)threads * align;
    tasks[i] = (task){body, ctx, b, e < count ? e : count};
  }
  for (int i = 1; i < threads; i++) started[i] = pthread_create(&ids[i], NULL, run_task, &tasks[i]) == 0;
  run_task(&tasks[0]);
  for (int i = 1; i < threads; i++) {
    if (started[i])
      pthread_join(ids[i], NULL);
    else
      run_task(&tasks[i]); /* could not start a thread: do its share here */
  }
}
