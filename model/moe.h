/* Sparse mixture-of-experts MLPs (Mixtral, Qwen2-MoE, Qwen3-MoE) as transformers computes them:
 * router logits = x·routerᵀ; p = softmax(logits) (over all experts); the top_k experts by p are
 * run, each a SwiGLU MLP down(silu(gate(x))·up(x)), and summed weighted by p — renormalized over
 * the top k when normalize_top_k (Mixtral always; Qwen when norm_topk_prob). Qwen2-MoE adds a
 * shared expert on every token, scaled by sigmoid(x·shared_gateᵀ).
 *
 * Tensor names (relative to model.layers.{i}):
 *   Mixtral   block_sparse_moe.gate [experts, hidden]; block_sparse_moe.experts.{e}.w1 (gate),
 *             .w3 (up) [inter, hidden], .w2 (down) [hidden, inter]
 *   Qwen-MoE  mlp.gate [experts, hidden]; mlp.experts.{e}.gate_proj/up_proj/down_proj;
 *             Qwen2-MoE also mlp.shared_expert.gate_proj/up_proj/down_proj, mlp.shared_expert_gate [1, hidden]
 *   GLM-4.5   mlp.gate [experts, hidden], mlp.gate.e_score_correction_bias [experts];
 *             mlp.experts.{e}.gate_proj/up_proj/down_proj; mlp.shared_experts.gate_proj/up_proj/down_proj;
 *             layers below first_k_dense_replace are dense (mlp.gate_proj/up_proj/down_proj)
 *   Nemotron-H backbone.layers.{i}.mixer.gate [experts, hidden], .gate.e_score_correction_bias [experts];
 *             mixer.experts.{e}.up_proj [inter, hidden], .down_proj [hidden, inter];
 *             mixer.shared_experts.up_proj / .down_proj (read by model/nemotron_h.c) */
#ifndef ROTQ_MODEL_MOE_H
#define ROTQ_MODEL_MOE_H

#include <stdbool.h>

#include "common/error.h"
#include "family/family.h"
#include "io/checkpoint.h"

/* moe_kind: family/family.h (a variant's loader flag). */

typedef struct expert_weights {
  void *w_gate;                 /* gate_proj / w1  [intermediate, hidden] */
  void *w_up;                   /* up_proj / w3    [intermediate, hidden] */
  void *w_down;                 /* down_proj / w2  [hidden, intermediate] */
  void *b_gate, *b_up, *b_down; /* gpt-oss: their biases, else NULL */
} expert_weights;

typedef struct moe_weights {
  int experts, top_k;
  int intermediate;        /* of each routed expert */
  bool normalize_top_k;    /* renormalize the top-k probabilities to sum 1 */
  void *router;            /* [experts, hidden] */
  expert_weights *expert;  /* [experts] */
  int shared_intermediate; /* Qwen2-MoE's shared expert, 0 = none */
  expert_weights shared;
  void *shared_gate; /* [1, hidden] */
  /* Nemotron-H MoE layers ('E', model/nemotron_h.h): DeepSeek-V3 routing — sigmoid scores, the
   * top_k by score + correction_bias within the topk_group best of n_group groups, weights the
   * scores renormalized (normalize_top_k) and times routed_scaling; experts and the shared expert
   * are relu² MLPs down(relu(up(x))²) (w_gate NULL); the shared expert is not gated. */
  bool nemotron;
  /* GLM-4.5 (MOE_GLM4): the same routing, SwiGLU experts and an ungated SwiGLU shared expert
   * (shared_gate NULL) of moe_intermediate_size · n_shared_experts. */
  bool grouped_sigmoid;
  void *correction_bias; /* gate.e_score_correction_bias [experts] */
  int n_group, topk_group;
  double routed_scaling;
  /* gpt-oss (MOE_GPT_OSS, model/gpt_oss.h): logits = x·routerᵀ + router_bias, the top_k logits'
   * softmax weighs their experts; each expert (with biases) computes
   * down(((clamp(up, ±limit) + 1)·g·sigmoid(alpha·g)), g = min(gate, limit). */
  bool gpt_oss;
  void *router_bias; /* [experts] */
  /* Llama-4 (MOE_LLAMA4, model/llama4.h): the top_k experts by router logit take s = sigmoid(logit)
   * and run on x·s (not weighted after); the shared expert (shared_gate NULL) is added. A dense layer
   * is a block of 0 experts whose shared expert is its MLP. */
  bool llama4;
  double swiglu_alpha, swiglu_limit;
} moe_weights;

/* The layer's MoE block, or *out = NULL for a dense layer (Qwen's mlp_only_layers and
 * decoder_sparse_step), read from the checkpoint in the compute type. Config fields are
 * checked; errors name config.json or the tensor. The tensor names are f's (router, experts,
 * expert_proj, shared_expert, shared_expert_gate of family_layer_names). */
int moe_read_layer(const checkpoint *ck, const family_descriptor *f, moe_kind kind, bool f32, int layer,
                   moe_weights **out, rotq_error *err);
void moe_free(moe_weights *moe);

#endif
