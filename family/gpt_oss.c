/* gpt-oss (GptOssForCausalLM, model/gpt_oss.h): LLaMA-style attention with q/k/v/o biases and a
 * learned sink per head (self_attn.sinks [heads]: a per-head softmax logit, untouched by R1 and by
 * R2, which rotates within the value heads the sinks weigh as a whole), sliding and full layers;
 * every layer an MoE block: the router mlp.router (weight [experts, hidden] and bias) and the
 * experts stored fused in [experts, in, out] layout (in_out_layout): mlp.experts.gate_up_proj
 * [E, hidden, 2·inter] (+ gate_up_proj_bias [E, 2·inter]) and mlp.experts.down_proj [E, inter, hidden]
 * (+ down_proj_bias [E, hidden]). The router and gate_up_proj read the post-attention norm's output:
 * the norm is fused into both (for gate_up_proj: into its rows, axis 1) and both take R1 on their input
 * (gate_up_proj: W_e ← R1ᵀ·W_e per expert); down_proj writes the stream (W_e ← W_e·R1, and its bias
 * b_e ← b_e·R1). The router's bias and gate_up_proj_bias act after the rotation is undone: untouched. */
#include "family/family.h"

family_synth_fn synth_gpt_oss;

const family_descriptor family_gpt_oss = {
    .family = "gpt_oss",
    .builtin_config = "gpt_oss",
    .variants = {{.architecture = "GptOssForCausalLM",
                  .model_types = {"gpt_oss"},
                  .loader = {.attention_bias = true, .moe = MOE_GPT_OSS, .gpt_oss = true},
                  .synth = synth_gpt_oss}},
    .forward = FORWARD_DECODER,
    .norm = NORM_RMS,
    .embed = "model.embed_tokens",
    .final_norm = "model.norm",
    .lm_head = "lm_head",
    .layer_prefix = "model.layers",
    .layer_fuse = {{"input_layernorm", "self_attn.q_proj|self_attn.k_proj|self_attn.v_proj"},
                   {"post_attention_layernorm", "mlp.router|mlp.experts.gate_up_proj"}},
    .writers = "self_attn.o_proj|mlp.experts.down_proj",
    .o_proj = "self_attn.o_proj",
    .v_proj = "self_attn.v_proj",
    .up_proj = "mlp.experts.gate_up_proj",
    .down_proj = "mlp.experts.down_proj",
    .untouched = "self_attn.sinks",
    .in_out_layout = "mlp.experts.gate_up_proj|mlp.experts.down_proj",
    .names = {.attn_norm = "input_layernorm",
              .mlp_norm = "post_attention_layernorm",
              .q_proj = "self_attn.q_proj",
              .k_proj = "self_attn.k_proj",
              .v_proj = "self_attn.v_proj",
              .o_proj = "self_attn.o_proj",
              .router = "mlp.router",
              .experts = "mlp.experts"},
};
