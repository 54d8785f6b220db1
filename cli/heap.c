#include "cli/heap.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

void heap_keep_freed_blocks(void) {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, 32 << 20); /* glibc's largest: blocks up to 32 MB come from the heap */
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}
