/* GLM-4.5 / GLM-4.6 MoE (Glm4MoeForCausalLM): LLaMA-style attention with q/k/v biases
 * (attention_bias; o_proj has none), optional q_norm/k_norm (use_qk_norm) and RoPE on the first
 * partial_rotary_factor·head_dim dims of each head; the first first_k_dense_replace layers have a
 * dense SwiGLU MLP (mlp.gate/up/down_proj), the others an MoE block: the router mlp.gate
 * [n_routed_experts, hidden] with DeepSeek-V3 routing (sigmoid scores, e_score_correction_bias,
 * grouped top-k, routed_scaling_factor), SwiGLU experts mlp.experts.{e}.gate/up/down_proj and one
 * ungated shared expert mlp.shared_experts.gate/up/down_proj (n_shared_experts fused in one MLP).
 * The router, every expert's and the shared expert's gate/up_proj read the post-attention norm's
 * output: the norm is fused into all of them and they take R1 on their input (the router's
 * logits x·Gᵀ are unchanged, so routing is). Every down_proj writes the stream (R1 on its output).
 * The correction bias is added to sigmoid scores, not to the stream: untouched. The built-in
 * qwen_moe config's rules cover every one of these names. */
#include "family/family.h"

family_synth_fn synth_glm4_moe;

const family_descriptor family_glm4_moe = {
    .family = "glm4_moe",
    .builtin_config = "qwen_moe",
    .variants = {{.architecture = "Glm4MoeForCausalLM",
                  .model_types = {"glm4_moe"},
                  .loader = {.qkv_bias_from_config = true,
                             .qk_norm_from_config = true,
                             .partial_rotary = true,
                             .moe = MOE_GLM4,
                             .silu_only = true},
                  .synth = synth_glm4_moe}},
    .forward = FORWARD_DECODER,
    .norm = NORM_RMS,
    .embed = "model.embed_tokens",
    .final_norm = "model.norm",
    .lm_head = "lm_head",
    .layer_prefix = "model.layers",
    .layer_fuse = {{"input_layernorm", "self_attn.q_proj|self_attn.k_proj|self_attn.v_proj"},
                   {"post_attention_layernorm",
                    "mlp.gate|mlp.experts.*.gate_proj|mlp.experts.*.up_proj|mlp.shared_experts.gate_proj|"
                    "mlp.shared_experts.up_proj|mlp.gate_proj|mlp.up_proj"}},
    .writers = "self_attn.o_proj|mlp.experts.*.down_proj|mlp.shared_experts.down_proj|mlp.down_proj",
    .o_proj = "self_attn.o_proj",
    .v_proj = "self_attn.v_proj",
    .up_proj = "mlp.experts.*.up_proj|mlp.shared_experts.up_proj|mlp.up_proj",
    .down_proj = "mlp.experts.*.down_proj|mlp.shared_experts.down_proj|mlp.down_proj",
    .untouched = "self_attn.q_norm|self_attn.k_norm|mlp.gate.e_score_correction_bias",
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
              .shared_expert = "mlp.shared_experts"},
};
