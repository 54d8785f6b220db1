/* Massive activations in a synthetic checkpoint. Real LLMs carry a few residual-stream channels
 * far larger than the median on every token (Sun et al., "Massive activations in LLMs"; after
 * RMSNorm, the 20–100× outlier features of LLM.int8()), nearly constant, of a fixed sign; they
 * ruin per-token activation quantization — the scale follows the outlier and rounds every other
 * channel to zero — and they are what a rotation spreads over all channels. Random weights have
 * none; with spec->outlier_channels = k > 0 the token embeddings get unit rms per channel (the
 * residual stream's scale, of the same order as the layers' updates) and in each of the k outlier
 * channels the value ±outlier_scale·(1 + 0.1·N(0, 1)) (sign alternating by channel), so every token
 * enters with them. With a feature subspace (synth/synth_features.h) the layers neither read nor
 * write them, as trained layers barely use their massive channels (they act as biases); without
 * one the random weights read them like any channel. */
#ifndef ROTQ_SYNTH_SYNTH_OUTLIERS_H
#define ROTQ_SYNTH_SYNTH_OUTLIERS_H

#include "synth/synth_internal.h"

/* The outlier magnitude when spec->outlier_scale is 0: × the rms of the other channels. */
#define SYNTH_DEFAULT_OUTLIER_SCALE 28.0

/* Channel k (0 ≤ k < count) of the count outlier channels of a hidden-wide stream, spread evenly. */
int synth_outlier_channel(int k, int count, int hidden);

/* Plants the outliers in tensor t's drawn values (rows [first_row, first_row + rows) of t): only
 * embed_tokens changes (no-op when spec->outlier_channels is 0). Runs after synth_shape_features. */
void synth_plant_outliers(const synth_spec *spec, const synth_tensor *t, int64_t first_row, int64_t rows,
                          double *values);

#endif
