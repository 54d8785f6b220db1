/* Massive activations in a synthetic checkpoint. Real LLMs carry a few residual-stream channels
 * 100–1000× larger than the median (Sun et al., "Massive activations in LLMs"); after RMSNorm
 * they are the outliers that ruin per-token activation quantization, and what a rotation spreads
 * over all channels. Random weights have none, so the effect of rotation cannot be seen on them;
 * planting them makes it visible on a model small enough for CI: the embed_tokens columns and
 * every down_proj's rows of the outlier channels are scaled by spec->outlier_scale, so every
 * token enters with them and every MLP writes to them. */
#ifndef ROTQ_MODEL_SYNTH_OUTLIERS_H
#define ROTQ_MODEL_SYNTH_OUTLIERS_H

#include "model/synth_internal.h"

/* Channel k (0 ≤ k < count) of the count outlier channels of a hidden-wide stream, spread evenly. */
int synth_outlier_channel(int k, int count, int hidden);

/* Scales the outlier channels' entries of tensor t's drawn values: values holds rows
 * [first_row, first_row + rows) of t (no-op for other tensors or when spec->outlier_channels is 0). */
void synth_plant_outliers(const synth_spec *spec, const synth_tensor *t, int64_t first_row, int64_t rows,
                          double *values);

#endif
