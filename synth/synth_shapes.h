/* Named shapes for `rotq synth`: the tensor layout and config.json of real checkpoints
 * (Llama-3-8B, Llama-3.2-1B, Llama-2-7B, Qwen2.5-7B, Mistral-7B, Qwen3-8B) and "tiny", a small
 * model of the same layout for tests. Only the values are synthetic. */
#ifndef ROTQ_SYNTH_SYNTH_SHAPES_H
#define ROTQ_SYNTH_SYNTH_SHAPES_H

#include <stddef.h>

#include "synth/synth.h"

/* Fills spec's architecture, sizes and config fields for the shape called name (dtype, seed and
 * the rest are left as they are); -1 if no shape has that name. */
int synth_shape(const char *name, synth_spec *spec);
/* The i-th shape's name and a one-line description, or NULL past the last. */
const char *synth_shape_name(size_t i, const char **description);

#endif
