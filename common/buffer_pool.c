#include "common/buffer_pool.h"

#include <stdlib.h>

unsigned char *buffer_pool_take(buffer_pool *p, size_t size) {
  pooled_buffer *best = NULL, *idle = NULL;
  for (size_t i = 0; i < p->count; i++) {
    pooled_buffer *b = &p->buffers[i];
    if (b->busy) continue;
    if (b->size >= size && (!best || b->size < best->size)) best = b;
    if (!idle || b->size > idle->size) idle = b;
  }
  if (!best && idle) { /* regrow the largest idle buffer */
    p->bytes -= idle->size;
    free(idle->data);
    idle->data = malloc(size);
    idle->size = idle->data ? size : 0;
    p->bytes += idle->size;
    best = idle->data ? idle : NULL;
  }
  if (!best) {
    pooled_buffer *grown = realloc(p->buffers, (p->count + 1) * sizeof *grown);
    unsigned char *data = grown ? malloc(size) : NULL;
    if (grown) p->buffers = grown;
    if (!data) return NULL;
    best = &p->buffers[p->count++];
    *best = (pooled_buffer){.data = data, .size = size};
    p->bytes += size;
  }
  best->busy = true;
  p->busy_bytes += best->size;
  return best->data;
}

void buffer_pool_give(buffer_pool *p, const unsigned char *data) {
  for (size_t i = 0; data && i < p->count; i++)
    if (p->buffers[i].data == data && p->buffers[i].busy) {
      p->buffers[i].busy = false;
      p->busy_bytes -= p->buffers[i].size;
    }
}

void buffer_pool_free(buffer_pool *p) {
  for (size_t i = 0; i < p->count; i++) free(p->buffers[i].data);
  free(p->buffers);
  *p = (buffer_pool){0};
}
