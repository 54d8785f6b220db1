/* Token files for evaluation: little-endian uint16 token ids, documents delimited by BOS. */
#ifndef ROTQ_EVAL_TOKEN_FILE_H
#define ROTQ_EVAL_TOKEN_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define TOKEN_BOS 1

typedef struct token_segment {
  size_t start, length; /* tokens[start .. start+length) */
} token_segment;

/* Reads the whole file into *tokens (malloc'd, *count ids); errors name the file. An empty file
 * or an odd byte count is an error. */
int token_file_read(const char *path, int32_t **tokens, size_t *count, rotq_error *err);

/* Splits tokens into segments, each starting at a BOS token (and one at 0 if the first token is
 * not BOS): *segments malloc'd, *segment_count of them. */
int token_segments(const int32_t *tokens, size_t count, token_segment **segments, size_t *segment_count,
                   rotq_error *err);

#endif
