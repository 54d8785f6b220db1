/* Calibration tokens for GPTQ in `rotq eval` and `rotq report`: the last n segments of a token
 * file, so that evaluating the first segments of the same file never sees them. */
#ifndef ROTQ_EVAL_CALIBRATION_H
#define ROTQ_EVAL_CALIBRATION_H

#include <stddef.h>
#include <stdint.h>

#include "eval/quantize_model.h"

typedef struct calibration_data {
  int32_t *tokens;
  size_t count;
  token_segment *segments;
  size_t first;        /* index of the first calibration segment in the file */
  calibration_set set; /* the last n segments, ctx tokens of each */
} calibration_data;

/* Reads path and takes its last n segments (all if it has fewer). */
int calibration_load(const char *path, size_t n, int ctx, calibration_data *out, rotq_error *err);
void calibration_free(calibration_data *c);

/* How many segments, from the first, to evaluate in tokens_path: *limit = wanted (0 = all). When
 * tokens_path is the calibration file (c not NULL), the evaluation must end before the
 * calibration segments: wanted 0 becomes c->first, a larger wanted is an error. */
int evaluation_segments(const char *tokens_path, const char *calibration_path, const calibration_data *c, size_t wanted,
                        size_t *limit, rotq_error *err);

#endif
