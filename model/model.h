/* The reference forward pass of HF decoder-only causal LMs — LlamaForCausalLM, MistralForCausalLM,
 * Qwen2ForCausalLM, Qwen3ForCausalLM — computed as transformers computes them, in float64 (or
 * float32 on request). It is the yardstick of rotq: a rotated checkpoint must give the same
 * logits as the original.
 *
 * Mistral's sliding_window is honoured (a query attends to the last sliding_window positions);
 * Qwen2/Qwen3 checkpoints with use_sliding_window true are rejected. RoPE frequencies and cos/sin
 * are computed in float64 (transformers computes them in float32; the difference is ~1e-7 of a
 * logit). */
#ifndef ROTQ_MODEL_MODEL_H
#define ROTQ_MODEL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "io/model_config.h"

struct cJSON;

/* Fake quantization of the forward pass's activations (see linalg/quantize.h): what a W·A·KV
 * serving engine computes. Bits 2..8; 16 or 0 = off, so zero-initialised settings are exact. */
typedef struct activation_quant {
  int abits;      /* input of every decoder linear, per token, symmetric (after any online rotation) */
  double a_clip;  /* share of a token's max |x| given the largest code; 0 = 0.9 */
  int kvbits;     /* K (after RoPE) and V as written to the cache, asymmetric per group */
  double kv_clip; /* 0 = 0.95 */
  int kv_group;   /* elements per K/V group; 0 = head_dim (per head); must divide head_dim */
  int aformat;    /* quant_format (linalg/quantize.h) of the linears' inputs: 0 = int (abits); fp8,
                     mxfp4 or nvfp4 quantize them in that format (abits then ignored) */
  int a_group;    /* int: values per activation scale, consecutive along a token (the last group may
                     be shorter); 0 = one scale per token */
} activation_quant;

typedef struct model_options {
  bool f32; /* compute in float32 (default float64) */
  activation_quant quant;
  bool no_online_hooks; /* ignore rotation.json's online rotations (model/online_hooks.h) */
  /* The online section to apply instead of dir/rotation.json's (a rotation whose record is not
   * written yet: rotq rotate's whole-model check); NULL = read dir/rotation.json. */
  const struct cJSON *online_section;
  /* Qwen3-Next: tokens per chunk of the gated delta rule (model/qwen3_next.h); 0 = 64, as
   * transformers' prefill; 1 = the token recurrence. The forms agree to rounding. */
  int delta_rule_chunk;
  /* Load no weights but the configuration (and online rotations): the decoder layers are read one at
   * a time with model_load_layer, the embeddings with model_embed (rotq quantize --method gptq).
   * The LLaMA-layout decoders only (Llama, Mistral, Qwen2, Qwen3: model_forward's plain layer);
   * other architectures are refused, named. model_forward cannot run such a model. */
  bool layers_on_demand;
} model_options;

typedef struct model model;

/* The architectures model_load accepts, as one comma-separated line. */
const char *model_supported_architectures(void);

/* Loads the checkpoint in dir (config.json + safetensors) into memory, converted to the compute
 * type. Every tensor's shape is checked against config.json; errors name the file or tensor.
 * options NULL = defaults. */
int model_load(const char *dir, const model_options *options, model **out, rotq_error *err);
void model_free(model *m);
const model_config *model_get_config(const model *m);
/* out ← in with defaults filled in (bits 0 → 16, clips 0 → 0.9 / 0.95, kv_group 0 → head_dim);
 * in NULL = all off. Fails on bits outside 2..8/16, a clip outside (0, 1], or a kv_group that
 * does not divide head_dim. */
int activation_quant_resolve(const activation_quant *in, int head_dim, activation_quant *out, rotq_error *err);
/* Replaces the activation quantization settings of a loaded model (checked as model_load does). */
int model_set_activation_quant(model *m, const activation_quant *quant, rotq_error *err);

/* logits [n, vocab] (row-major doubles) of tokens[0..n) at positions 0..n-1, fresh sequence. */
int model_forward(model *m, const int32_t *tokens, int n, double *logits, rotq_error *err);

/* A model loaded with layers_on_demand: reads decoder layer `layer`'s weights from the checkpoint
 * (releasing the checkpoint's mapped pages afterwards) / frees them again. */
int model_load_layer(model *m, int layer, rotq_error *err);
void model_free_layer(model *m, int layer);
/* x [n, hidden] ← the embeddings of tokens (in the compute type: doubles, or floats with f32), read
 * from the checkpoint of a layers_on_demand model or from the loaded table. */
int model_embed(const model *m, const int32_t *tokens, int n, void *x, rotq_error *err);

/* Incremental decoding with a KV cache of max_tokens positions. */
typedef struct model_session model_session;
model_session *model_session_new(model *m, int max_tokens, rotq_error *err);
/* Appends n tokens at the next positions; logits [n, vocab] of those positions. Fails, leaving
 * the session unchanged, on an out-of-vocabulary token or when the cache would overflow. */
int model_session_forward(model_session *s, const int32_t *tokens, int n, double *logits, rotq_error *err);
/* model_session_forward of one token; logits [vocab]. */
int model_session_step(model_session *s, int32_t token, double *logits, rotq_error *err);
/* Decoder layer `layer` alone (its weights loaded) on the residual stream x [n, hidden] of the
 * compute type, in place, at positions length..length+n−1 of the session; the session's length is
 * not advanced (length 0: a fresh sequence). An observer that ends the pass leaves x unchanged. */
int model_session_layer(model_session *s, int layer, void *x, int n, rotq_error *err);
/* Number of tokens in the cache. */
int model_session_length(const model_session *s);
void model_session_free(model_session *s);

#endif
