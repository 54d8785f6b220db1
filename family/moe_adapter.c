/* Mixture-of-experts families: Mixtral, Qwen2-MoE, Qwen3-MoE. Their attention is the LLaMA
 * family's; the MLP is a router (a linear [experts, hidden]) and experts (SwiGLU MLPs), plus for
 * Qwen2-MoE a shared expert with its sigmoid gate [1, hidden]. Every one of them reads the
 * post-attention norm's output, so that norm is fused into the router, every expert's and the
 * shared expert's gate/up projections and the shared-expert gate, and all of them take R1 on
 * their input; every expert's down projection writes the residual stream (R1 on its output).
 * Qwen2/Qwen3-MoE layers outside decoder_sparse_step / mlp_only_layers keep a dense mlp.*_proj,
 * listed too (the globs of a layer that lacks them match nothing there). */
#include "family/adapter.h"

const model_adapter mixtral_adapter = {
    .family = "mixtral",
    .builtin_config = "mixtral",
    .architectures = {"MixtralForCausalLM", NULL},
    .norm = NORM_RMS,
    .embed = "model.embed_tokens",
    .final_norm = "model.norm",
    .lm_head = "lm_head",
    .layer_prefix = "model.layers",
    .layer_fuse = {{"input_layernorm", "self_attn.q_proj|self_attn.k_proj|self_attn.v_proj"},
                   {"post_attention_layernorm",
                    "block_sparse_moe.gate|block_sparse_moe.experts.*.w1|block_sparse_moe.experts.*.w3"}},
    .writers = "self_attn.o_proj|block_sparse_moe.experts.*.w2",
    .o_proj = "self_attn.o_proj",
    .v_proj = "self_attn.v_proj",
    .up_proj = "block_sparse_moe.experts.*.w3",
    .down_proj = "block_sparse_moe.experts.*.w2",
};

const model_adapter qwen_moe_adapter = {
    .family = "qwen_moe",
    .builtin_config = "qwen_moe",
    .architectures = {"Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", NULL},
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
};
