/* Trained-like structure in a synthetic checkpoint: a feature subspace. A trained model's residual
 * stream is anisotropic — its layers read and write a limited set of feature directions — while
 * quantization noise, once a rotation has spread it, is isotropic and mostly falls where nothing
 * reads it. Random weights have no such structure: every direction matters, so 4-bit noise costs
 * as much as losing the signal. With spec->feature_rank = r > 0, the token embeddings, every
 * reader of the residual stream (q/k/v/gate/up_proj, lm_head) and every writer (o_proj,
 * down_proj) are confined to one random r-dimensional subspace S of the residual stream, orthogonal
 * to the outlier channels (synth/synth_outliers.h), with the output scales of isotropic random
 * weights: a reader's row g·Pᵀ and a writer's column P·b, P a basis of S. The basis is sparse —
 * each non-outlier channel mixes 4 random features with random signs — so each row is
 * computed from its own draws, without whole-tensor products, and no two rows are proportional
 * (RTN, which scales each row, would round proportional rows alike and keep its error inside S). */
#ifndef ROTQ_SYNTH_SYNTH_FEATURES_H
#define ROTQ_SYNTH_SYNTH_FEATURES_H

#include "synth/synth_internal.h"

/* Replaces rows [first_row, first_row + rows) of tensor t's drawn values by their structured
 * versions (no-op when spec->feature_rank is 0 or t is not a reader, writer or embedding of a
 * LLaMA-family decoder). Embedding rows get unit rms per channel; the outlier channels' columns are
 * left to synth_plant_outliers. */
void synth_shape_features(const synth_spec *spec, const synth_tensor *t, int64_t first_row, int64_t rows,
                          double *values);

#endif
