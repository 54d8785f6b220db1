/* Synthetic checkpoints: random weights in the exact HF layout (tensor names, config.json fields)
 * of every architecture of the family registry (family/family.h: each variant names its generator;
 * synth.c writes the LLaMA family, synth_families.c MoE, Phi-3, Gemma, OPT, Nemotron-H), for tests
 * and `rotq synth`. Scales are realistic: linear weights N(0, 1/in), embeddings N(0, 1/hidden), norm
 * weights 1 + 0.2·N(0, 1) (not ones, so norm fusion matters), biases 0.1·N(0, 1). Each tensor is
 * drawn from its own stream (seed and tensor name), so the output is a function of the spec. */
#ifndef ROTQ_SYNTH_SYNTH_H
#define ROTQ_SYNTH_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "io/dtype.h"

typedef struct synth_spec {
  const char *architecture; /* e.g. "LlamaForCausalLM" */
  int hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads;
  int head_dim; /* 0 = hidden / heads (Qwen2 must use that) */
  int vocab_size;
  bool tie_word_embeddings;
  dtype dtype; /* of every tensor; config torch_dtype follows */
  uint64_t seed;
  double rope_theta;              /* 0 = 10000 */
  bool llama3_rope_scaling;       /* rope_scaling llama3: factor 32, low 1, high 4, original 8192 */
  double llama3_rope_factor;      /* its factor instead of 32 (Llama-3.1: 8); 0 = 32 */
  int max_position_embeddings;    /* 0 = 2048 */
  double rms_norm_eps;            /* 0 = 1e-6 */
  int bos_token_id, eos_token_id; /* 0 = 1 and 2 */
  bool attention_bias;            /* q/k/v/o_proj biases (Llama, Qwen3; Qwen2's q/k/v always have them) */
  bool mlp_bias;                  /* gate/up/down_proj biases (Llama) */
  size_t max_shard_bytes;         /* 0 = default (5 GB) */
  /* Mixture of experts (MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM): */
  int num_experts;                     /* 0 = 4 */
  int num_experts_per_tok;             /* 0 = 2 */
  int moe_intermediate_size;           /* Qwen-MoE routed experts; 0 = intermediate_size (Mixtral: always) */
  int shared_expert_intermediate_size; /* Qwen2-MoE; 0 = intermediate_size */
  bool norm_topk_prob;                 /* Qwen-MoE (Mixtral always renormalizes) */
  int decoder_sparse_step;             /* Qwen-MoE: 0 = 1 (every layer sparse); 2 = odd layers dense */
  /* Gemma-2/3 (Gemma2ForCausalLM, Gemma3ForCausalLM): */
  int sliding_window;         /* 0 = 4096 */
  int sliding_window_pattern; /* Gemma-3: every n-th layer global; 0 = 6 */
  int query_pre_attn_scalar;  /* 0 = head_dim */
  /* Nemotron-H (NemotronHForCausalLM): */
  const char *hybrid_override_pattern; /* a layer type per layer: M Mamba-2, * attention, - MLP, E MoE; NULL = "M*M-"
                                          cut/repeated */
  int mamba_num_heads, mamba_head_dim, ssm_state_size, n_groups, conv_kernel; /* 0 = 8, 8, 16, 2, 4 */
  /* Massive activations (synth/synth_outliers.h): this many residual-stream channels hold
   * ±outlier_scale × the other channels' rms in every token's embedding, as in real LLMs; the
   * embeddings then have unit rms per channel. */
  int outlier_channels; /* 0 = none */
  double outlier_scale; /* 0 = SYNTH_DEFAULT_OUTLIER_SCALE (28) */
  /* Trained-like structure (synth/synth_features.h): embeddings and every reader and writer of the
   * residual stream confined to a random subspace of this dimension, orthogonal to the outliers. */
  int feature_rank; /* 0 = isotropic random weights */
  /* Peaked predictions (synth/synth_outliers.h): lm_head.weight times this, so the logits are this
   * many times larger and the next-token distribution has a trained model's entropy. */
  double logit_scale; /* 0 = 1 */
} synth_spec;

/* Writes config.json and the safetensors shards into dir (created if absent; it must not already
 * hold a config.json). */
int synth_write(const synth_spec *spec, const char *dir, rotq_error *err);

/* The dtype names of `rotq synth --dtype`: bf16, f16, f32, f64, fp8 (FP8 E4M3 linear weights with
 * 128×128 block scales). 0 and *t, or -1 for another name. */
int synth_dtype_parse(const char *name, dtype *t);

#endif
