/* ModelAdapter: what an architecture family looks like to the rotation processor. It answers the
 * seed's questions — the norm fuse map (pre-run and per layer), the names whose mean is baked,
 * the residual-stream writers, the per-layer o/v and up/down pairs, heads and head_dim — from the
 * family's descriptor (family/family.h, one file per family in family/), not from tables of its own.
 *
 * Module names are tensor names without ".weight"/".bias"; per-layer names are relative to the
 * layer prefix ("model.layers.{i}"). Lists of names are '|'-separated globs. */
#ifndef ROTQ_ROTATE_ADAPTER_H
#define ROTQ_ROTATE_ADAPTER_H

#include <stdbool.h>

#include "common/error.h"
#include "family/family.h"
#include "io/model_config.h"

/* The rotation processor's view of a family descriptor (family/family.h). */
typedef family_descriptor model_adapter;

/* The adapter for config's architecture; error naming it and listing the supported ones. */
const model_adapter *adapter_for(const model_config *config, rotq_error *err);
/* Every supported architecture, comma-separated (for `rotq info` and messages). */
const char *adapter_supported_list(void);

int adapter_num_attention_heads(const model_config *config);
int adapter_num_key_value_heads(const model_config *config);
int adapter_head_dim(const model_config *config);

/* "<layer_prefix>.<layer>.<relative>" into out. */
void adapter_layer_module(const model_adapter *a, int layer, const char *relative, char *out, size_t cap);
/* 1 if module (absolute) is a residual-stream writer of some layer. */
int adapter_is_writer(const model_adapter *a, const char *module);
/* The norm (relative to the layer, e.g. "input_layernorm") through which module (absolute, a
 * decoder-layer linear) reads the residual stream by the adapter's own fuse map, or NULL when the
 * module does not read the stream. Independent of any user config. */
const char *adapter_reader_norm(const model_adapter *a, const char *module);
/* The relative name of a decoder-layer module ("self_attn.o_proj"), or NULL for pre-run modules. */
const char *adapter_relative_name(const model_adapter *a, const char *module);
/* The layer a module belongs to, or -1 for pre-run modules (embedding, final norm, lm_head). */
int adapter_layer_of(const model_adapter *a, const char *module);

#endif
