/* Inside model/: reading one checkpoint tensor into memory in the compute type, its shape checked
 * against config.json (model/load.c). Shared by the per-family loaders (moe.c, ...). */
#ifndef ROTQ_MODEL_LOAD_WEIGHT_H
#define ROTQ_MODEL_LOAD_WEIGHT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "io/checkpoint.h"

/* Reads tensor name, which must have shape [rows, cols] (cols 0: a vector [rows]), as doubles or
 * floats (f32) into *out; the error names the tensor and both shapes. */
int model_read_weight(const checkpoint *ck, bool f32, const char *name, int64_t rows, int64_t cols, void **out,
                      rotq_error *err);

/* Reads the fused linear name [Σ rows, cols] and splits it into parts (copies): outs[i] gets the
 * next rows[i] rows. */
int model_read_split(const checkpoint *ck, bool f32, const char *name, int64_t cols, const int64_t *rows, int parts,
                     void **outs, rotq_error *err);

#endif
