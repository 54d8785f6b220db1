/* Rotations read from a safetensors file: a square [dim, dim] tensor, row-major, in the row-vector
 * convention (x becomes x·R). */
#ifndef ROTQ_LINALG_ROTATION_FILE_H
#define ROTQ_LINALG_ROTATION_FILE_H

#include "common/error.h"
#include "linalg/rotation.h"

/* The tensor `tensor` of the safetensors file `path` as a dense rotation of order dim. It must be
 * [dim, dim] and orthogonal to its stored precision: max |RᵀR - I| below 1e-9 for F64, 1e-5 for
 * F32, 1e-2 for F16, 5e-2 for BF16. A matrix that is not orthogonal to double precision (every
 * rounded one) is replaced by its nearest orthogonal matrix, so that W·R and Rᵀ·W stay exact
 * inverses. NULL with the file and tensor named in err on failure. */
rotation *rotation_load_file(const char *path, const char *tensor, int dim, rotq_error *err);

#endif
