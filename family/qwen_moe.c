/* Qwen2-MoE and Qwen3-MoE: LLaMA attention (Qwen2: q/k/v biases; Qwen3: q_norm/k_norm); the MLP is
 * a router mlp.gate [experts, hidden] and experts (SwiGLU gate/up/down_proj), plus for Qwen2-MoE a
 * shared expert with its sigmoid gate mlp.shared_expert_gate [1, hidden]. Every one of them reads
 * the post-attention norm's output, so that norm is fused into all of them and they take R1 on
 * their input; every expert's down projection writes the residual stream (R1 on its output).
 * Layers outside decoder_sparse_step / mlp_only_layers keep a dense mlp.*_proj, listed too (the
 * globs of a layer that lacks them match nothing there). */
#include "family/family.h"

family_synth_fn synth_qwen_moe;

const family_descriptor family_qwen_moe = {
    .family = "qwen_moe",
    .builtin_config = "qwen_moe",
    .variants = {{.architecture = "Qwen2MoeForCausalLM",
                  .model_types = {"qwen2_moe"},
                  .no_head_dim_field = true,
                  .loader = {.qkv_bias = true, .moe = MOE_QWEN2, .silu_only = true},
                  .synth = synth_qwen_moe},
                 {.architecture = "Qwen3MoeForCausalLM",
                  .model_types = {"qwen3_moe"},
                  .loader = {.attention_bias = true, .qk_norm = true, .moe = MOE_QWEN3, .silu_only = true},
                  .synth = synth_qwen_moe}},
    .forward = FORWARD_DECODER,
    .norm = NORM_RMS,
    .embed = "model.embed_tokens",
    .final_norm = "model.norm",
    .lm_head = "lm_head",
    .layer_prefix = "model.layers",
    .layer_fuse = {{"input_layernorm", "self_attn.q_proj|self_attn.k_proj|self_attn.v_proj"},
                   {"post_attention_layernorm",
                    "mlp.gate|mlp.experts.*.gate_proj|mlp.experts.*.up_proj|mlp.shared_expert.gate_proj|"
                    "mlp.shared_expert.up_proj|mlp.shared_expert_gate|mlp.gate_proj|mlp.up_proj"}},
    .writers = "self_attn.o_proj|mlp.experts.*.down_proj|mlp.shared_expert.down_proj|mlp.down_proj",
    .o_proj = "self_attn.o_proj",
    .v_proj = "self_attn.v_proj",
    .up_proj = "mlp.experts.*.up_proj|mlp.shared_expert.up_proj|mlp.up_proj",
    .down_proj = "mlp.experts.*.down_proj|mlp.shared_expert.down_proj|mlp.down_proj",
    .untouched = "self_attn.q_norm|self_attn.k_norm",
    .names = {.attn_norm = "input_layernorm",
              .mlp_norm = "post_attention_layernorm",
              .q_proj = "self_attn.q_proj",
              .k_proj = "self_attn.k_proj",
              .v_proj = "self_attn.v_proj",
              .o_proj = "self_attn.o_proj",
              .q_norm = "self_attn.q_norm",
              .k_norm = "self_attn.k_norm",
              .gate_proj = "mlp.gate_proj",
              .up_proj = "mlp.up_proj",
              .down_proj = "mlp.down_proj",
              .router = "mlp.gate",
              .experts = "mlp.experts",
              .expert_proj = {"gate_proj", "up_proj", "down_proj"},
              .shared_expert = "mlp.shared_expert",
              .shared_expert_gate = "mlp.shared_expert_gate"},
};
