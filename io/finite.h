/* Finding NaN and infinity in raw tensor data by bit pattern (an all-ones exponent), without
 * converting: cheap enough to run over every tensor of a checkpoint. */
#ifndef ROTQ_IO_FINITE_H
#define ROTQ_IO_FINITE_H

#include <stddef.h>

#include "io/dtype.h"

/* Index of the first NaN or ±inf among n elements of type t at data, or n if all are finite. */
size_t first_non_finite(dtype t, const void *data, size_t n);

#endif
