/* ModelAdapter: what an architecture family looks like to the rotation processor. It answers the
 * seed's questions — the norm fuse map (pre-run and per layer), the names whose mean is baked,
 * the residual-stream writers, the per-layer o/v and up/down pairs, heads and head_dim — from a
 * small table of module names per family. Adding a family means adding one table (a file in family/),
 * not editing the processor.
 *
 * Module names are tensor names without ".weight"/".bias"; per-layer names are relative to the
 * layer prefix ("model.layers.{i}"). Lists of names are '|'-separated globs. */
#ifndef ROTQ_FAMILY_ADAPTER_H
#define ROTQ_FAMILY_ADAPTER_H

#include <stdbool.h>

#include "common/error.h"
#include "io/model_config.h"

typedef enum norm_kind {
  NORM_RMS,          /* x·rsqrt(mean(x²)+eps)·w: fuse w, set w = 1 */
  NORM_RMS_PLUS_ONE, /* Gemma: x·rsqrt(mean(x²)+eps)·(1 + w): fuse (1 + w), set w = 0 */
  NORM_LAYER,        /* LayerNorm with weight and bias: fuse both, bake means into writers */
} norm_kind;

typedef struct norm_fuse {
  const char *norm;    /* the norm module */
  const char *linears; /* the linears it feeds, '|'-separated globs */
} norm_fuse;

typedef struct model_adapter {
  const char *family;            /* e.g. "llama" */
  const char *builtin_config;    /* the built-in config written for the family, e.g. "mixtral" */
  const char *architectures[12]; /* config.json architectures it handles, NULL-terminated */
  norm_kind norm;
  const char *embed;               /* "model.embed_tokens" */
  const char *position_embed;      /* learned positions added to the stream (OPT), or NULL: like the
                                      embedding, R1 on the input side (and the mean baked) */
  const char *final_norm;          /* "model.norm" */
  const char *lm_head;             /* "lm_head" */
  const char *layer_prefix;        /* "model.layers" (layer i is "<prefix>.<i>") */
  norm_fuse layer_fuse[4];         /* default per-layer fuse map, used when the config has none */
  const char *writers;             /* per-layer residual writers, e.g. "self_attn.o_proj|mlp.down_proj" */
  const char *writer_output_norms; /* per-layer norms applied to a writer's output before the residual
                                      add (Gemma-2/3), or NULL: they forbid R1 and cannot be fused */
  const char *o_proj, *v_proj;     /* per-layer o/v pair */
  bool v_rows_after_qk;            /* v_proj is a fused qkv_proj [(heads + 2·kv_heads)·head_dim, hidden]:
                                      its output rotation acts on the V rows only, the last
                                      kv_heads·head_dim (Phi-3) */
  const char *up_proj, *down_proj; /* per-layer up/down pair */
  bool hybrid_layers;              /* layers of different kinds (Nemotron-H: Mamba-2, attention, MLP, MoE):
                                      a layer without o_proj / down_proj has no online rotation there */
} model_adapter;

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
