/* The forward pass allocates its activation buffers on every call, and glibc hands blocks over
 * 128 KB back to the kernel when they are freed: on a small model the page faults of the next
 * call's fresh pages then cost as much as its arithmetic (half of a GPTQ calibration's time).
 * Commands that run thousands of forward passes keep freed blocks in the heap instead. */
#ifndef ROTQ_CLI_HEAP_H
#define ROTQ_CLI_HEAP_H

/* Keep freed blocks up to 32 MB for reuse (glibc; no-op elsewhere). */
void heap_keep_freed_blocks(void);

#endif
