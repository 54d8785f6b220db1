/* Llama-4 text (Llama4ForCausalLM, model_type llama4_text; model/llama4.h): LLaMA attention (RoPE
 * on adjacent pairs, NoPE layers, L2 qk-norm, chunked attention and temperature tuning act on Q/K
 * only, which R1 and R2 leave unchanged); the layers of moe_layers have an MoE block: the router
 * feed_forward.router [experts, hidden], the experts stored fused in [experts, in, out] layout
 * (in_out_layout): feed_forward.experts.gate_up_proj [E, hidden, 2·inter] and
 * feed_forward.experts.down_proj [E, inter, hidden], and a shared expert
 * feed_forward.shared_expert.gate/up/down_proj; the other layers a dense MLP
 * feed_forward.gate/up/down_proj. The router, gate_up_proj, the shared expert's and the dense MLP's
 * gate/up_proj read the post-attention norm's output: the norm is fused into all of them (gate_up_proj:
 * its rows, axis 1) and they take R1 on their input; the router's sigmoid score scales the expert's
 * input by a scalar, which commutes with R1. down_proj (experts: W_e ← W_e·R1 on axis 2), the shared
 * expert's and the dense down_proj write the stream. */
#include "family/family.h"

family_synth_fn synth_llama4;

const family_descriptor family_llama4 = {
    .family = "llama4",
    .builtin_config = "llama4",
    .variants = {{.architecture = "Llama4ForCausalLM",
                  .model_types = {"llama4_text"},
                  .loader = {.attention_bias = true, .moe = MOE_LLAMA4, .llama4 = true, .silu_only = true},
                  .synth = synth_llama4}},
    .forward = FORWARD_DECODER,
    .norm = NORM_RMS,
    .embed = "model.embed_tokens",
    .final_norm = "model.norm",
    .lm_head = "lm_head",
    .layer_prefix = "model.layers",
    .layer_fuse = {{"input_layernorm", "self_attn.q_proj|self_attn.k_proj|self_attn.v_proj"},
                   {"post_attention_layernorm",
                    "feed_forward.router|feed_forward.experts.gate_up_proj|feed_forward.shared_expert.gate_proj|"
                    "feed_forward.shared_expert.up_proj|feed_forward.gate_proj|feed_forward.up_proj"}},
    .writers = "self_attn.o_proj|feed_forward.experts.down_proj|feed_forward.shared_expert.down_proj|"
               "feed_forward.down_proj",
    .o_proj = "self_attn.o_proj",
    .v_proj = "self_attn.v_proj",
    .up_proj = "feed_forward.experts.gate_up_proj|feed_forward.shared_expert.up_proj|feed_forward.up_proj",
    .down_proj = "feed_forward.experts.down_proj|feed_forward.shared_expert.down_proj|feed_forward.down_proj",
    .in_out_layout = "feed_forward.experts.gate_up_proj|feed_forward.experts.down_proj",
    .names = {.attn_norm = "input_layernorm",
              .mlp_norm = "post_attention_layernorm",
              .q_proj = "self_attn.q_proj",
              .k_proj = "self_attn.k_proj",
              .v_proj = "self_attn.v_proj",
              .o_proj = "self_attn.o_proj",
              .router = "feed_forward.router",
              .experts = "feed_forward.experts",
              .shared_expert = "feed_forward.shared_expert"},
};
