/* Llama-4 text (Llama4ForCausalLM, model_type llama4_text) as transformers' modeling_llama4
 * computes it, on top of the LLaMA layer (model/forward.h):
 *   - RoPE on adjacent pairs (2i, 2i + 1) as complex numbers (freqs_cis), rope_parameters default or
 *     llama3; the NoPE layers (no_rope_layers[l] == 0) take none;
 *   - use_qk_norm: on the RoPE layers, q and k L2-normalized per head after RoPE (x·rsqrt(mean(x²) +
 *     rms_norm_eps), no weight);
 *   - attn_temperature_tuning: on the NoPE layers, q times log1p(floor((pos + 1) / floor_scale))·
 *     attn_scale + 1 (pos the absolute position);
 *   - layer_types "chunked_attention" (default: the RoPE layers): a query sees the keys of its own
 *     attention_chunk_size chunk only (causal within it);
 *   - the layers of moe_layers (default every interleave_moe_layer_step-th) are MoE blocks: the router
 *     feed_forward.router [E, hidden] (no bias), the top num_experts_per_tok logits' sigmoid s scales
 *     the expert's input (x·s), the experts stored fused in [experts, in, out] layout,
 *     feed_forward.experts.gate_up_proj [E, hidden, 2·inter] (gate = the first inter columns, up = the
 *     rest) and down_proj [E, inter, hidden], silu(gate)·up; plus the shared expert
 *     feed_forward.shared_expert.gate/up/down_proj (intermediate_size); the other layers a dense
 *     SwiGLU MLP feed_forward.gate/up/down_proj of intermediate_size_mlp. */
#ifndef ROTQ_MODEL_LLAMA4_H
#define ROTQ_MODEL_LLAMA4_H

#include <stdbool.h>

#include "family/family.h"
#include "io/checkpoint.h"
#include "model/moe.h"

struct model;

/* Layer `layer`'s feed-forward block: an MoE block, or for a dense layer a block of 0 experts whose
 * shared expert is the dense MLP; errors name config.json or the tensor. */
int llama4_read_moe(const checkpoint *ck, const family_descriptor *f, bool f32, int layer, moe_weights **out,
                    rotq_error *err);
/* The NoPE layers, chunked layers, qk-norm, temperature tuning and RoPE (pairs; llama3 scaling in
 * rope_parameters) from config.json. */
int llama4_configure(const checkpoint *ck, struct model *m, rotq_error *err);

#endif
