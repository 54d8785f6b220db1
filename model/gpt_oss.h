/* gpt-oss (GptOssForCausalLM) as transformers' modeling_gpt_oss computes it, on top of the LLaMA
 * layer (model/forward.h):
 *   - attention with q/k/v/o biases (attention_bias) and a learned sink per head
 *     (self_attn.sinks [heads]): softmax over [scores, sink], the sink's share dropped;
 *   - layer_types: "sliding_attention" layers see the last sliding_window positions, "full_attention"
 *     layers all (default: even layers sliding);
 *   - YaRN RoPE (rope_parameters rope_type "yarn": factor, beta_fast, beta_slow, truncate,
 *     original_max_position_embeddings, attention_factor), cos and sin times the attention factor;
 *   - every layer an MoE block: the router mlp.router (weight [experts, hidden], bias [experts]),
 *     softmax over the top num_experts_per_tok logits; the experts stored fused, in [experts, in, out]
 *     layout: mlp.experts.gate_up_proj [E, hidden, 2·inter] (gate and up in interleaved columns:
 *     gate = [..., ::2], up = [..., 1::2]) with gate_up_proj_bias [E, 2·inter], down_proj
 *     [E, inter, hidden] with down_proj_bias [E, hidden]; the clamped SwiGLU
 *     (clamp(up, ±limit) + 1)·g·sigmoid(alpha·g), g = min(gate, limit) (swiglu_alpha, swiglu_limit). */
#ifndef ROTQ_MODEL_GPT_OSS_H
#define ROTQ_MODEL_GPT_OSS_H

#include <stdbool.h>

#include "family/family.h"
#include "io/checkpoint.h"
#include "model/moe.h"

struct model;

/* Layer `layer`'s MoE block, the fused experts split into per-expert [out, in] weights; errors name
 * config.json or the tensor. */
int gpt_oss_read_moe(const checkpoint *ck, const family_descriptor *f, bool f32, int layer, moe_weights **out,
                     rotq_error *err);
/* The sinks of every layer, the layer windows and YaRN (m->inv_freq, m->rope_scale) from
 * config.json; m's layers are read. */
int gpt_oss_configure(const checkpoint *ck, const family_descriptor *f, struct model *m, rotq_error *err);

#endif
