/* The equivalence oracle of the tests: two checkpoints through the reference forward pass. */
#ifndef ROTQ_TESTS_EQUIVALENCE_H
#define ROTQ_TESTS_EQUIVALENCE_H

#include <stdbool.h>

#include "eval/logit_compare.h"
#include "rotq.h"

/* Runs both checkpoints on the same n tokens (a fixed pseudo-random sequence starting with BOS). */
logit_diff compare_checkpoints(const char *dir_a, const char *dir_b, int n);
/* Fails unless original and rotated agree on 24 tokens (relative < tolerance, argmax 100%);
 * prints the numbers under the label what. */
void check_equivalent_logits(const char *original, const char *rotated, double tolerance, const char *what);
/* Writes a YAML file: transformer_universal with every matrix in `mode` (and online if set). */
void write_config_with_mode(const char *path, const char *mode, bool online);
/* rotq_rotate with the given config path; fails the test on error. */
void rotate_or_fail(const char *in, const char *out, const char *config, unsigned long seed);
/* Overwrites the bytes of tensor `name` in the checkpoint at dir with those of the same tensor in
 * dir_from (same shape and dtype): a deliberately wrong rotation. */
void replace_tensor_bytes(const char *dir, const char *dir_from, const char *name);

#endif
