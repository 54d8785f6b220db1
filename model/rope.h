/* Rotary position embedding (RoPE) in transformers' rotate_half convention: a head vector x of
 * size d is split in halves (x1, x2) and becomes (x1·cos − x2·sin, x2·cos + x1·sin), with angle
 * position · inv_freq[i] for element i and i + d/2. */
#ifndef ROTQ_MODEL_ROPE_H
#define ROTQ_MODEL_ROPE_H

#include <stdbool.h>

#include "common/error.h"
#include "io/model_config.h"

/* inv_freq [head_dim / 2]: theta^(−2i/head_dim), with config rope_scaling applied exactly as
 * transformers' rope init functions do: none/"default", "linear" (divide by factor), "llama3"
 * (_compute_llama3_parameters). Other scaling types are an error naming config.json. */
int rope_inv_freq(const model_config *c, double *inv_freq, rotq_error *err);
/* rope_inv_freq for RoPE on the first dim dims of a head (partial_rotary_factor: dim =
 * int(head_dim · factor), as transformers' default rope init): inv_freq [dim / 2] = theta^(−2i/dim). */
int rope_inv_freq_dim(const model_config *c, int dim, double *inv_freq, rotq_error *err);
/* Whether rope_inv_freq knows c's rope_scaling type (its parameters are checked there). */
bool rope_type_supported(const model_config *c);

/* cos/sin [n, half] of positions first..first+n−1: cos_table[p·half + i] = cos((first+p)·inv_freq[i]). */
void rope_tables(const double *inv_freq, int half, int first, int n, double *cos_table, double *sin_table);

#endif
