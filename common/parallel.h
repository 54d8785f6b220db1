/* A minimal parallel-for over [0, count) with POSIX threads: each of `threads` workers takes
 * one contiguous range, so results never depend on scheduling (deterministic). */
#ifndef ROTQ_COMMON_PARALLEL_H
#define ROTQ_COMMON_PARALLEL_H

#include <stddef.h>

/* body(ctx, begin, end) is called on disjoint ranges covering [0, count); ranges start at
 * multiples of `align` (except the first). threads <= 1 runs inline. */
void parallel_for(size_t count, size_t align, int threads, void (*body)(void *ctx, size_t begin, size_t end),
                  void *ctx);
/* Number of online CPUs (at least 1). */
int cpu_count(void);

#endif
