/* Buffers kept for reuse: a run's large buffers (a tensor's staged output, a weight's held rows)
 * come back in the same few sizes, layer after layer, and a fresh allocation of that size is mapped
 * anew, every page faulted in and zeroed. Not thread-safe: the owner locks around the calls. */
#ifndef ROTQ_COMMON_BUFFER_POOL_H
#define ROTQ_COMMON_BUFFER_POOL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct pooled_buffer {
  unsigned char *data;
  size_t size;
  bool busy;
} pooled_buffer;

typedef struct buffer_pool {
  pooled_buffer *buffers; /* every buffer, busy or idle */
  size_t count;
  size_t bytes;      /* of all the buffers */
  size_t busy_bytes; /* of the busy ones */
} buffer_pool;

/* An idle buffer of at least size bytes (the smallest that fits, else the largest idle one
 * regrown, else a new one), marked busy; NULL when out of memory. */
unsigned char *buffer_pool_take(buffer_pool *p, size_t size);
/* Marks the buffer at data idle (data NULL or not the pool's: nothing). */
void buffer_pool_give(buffer_pool *p, const unsigned char *data);
/* Frees every buffer; the pool is empty afterwards. */
void buffer_pool_free(buffer_pool *p);

#endif
