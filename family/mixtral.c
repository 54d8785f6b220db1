/* Mixtral (MixtralForCausalLM): LLaMA attention; the MLP is a router block_sparse_moe.gate
 * [experts, hidden] and experts (SwiGLU MLPs w1 gate, w3 up, w2 down). The post-attention norm is
 * fused into the router and every expert's w1/w3, which take R1 on their input; every expert's w2
 * writes the residual stream (R1 on its output). Routing is unchanged: the router's logits
 * x·Gᵀ become (x·R1)·(G·R1)ᵀ. */
#include "family/family.h"

family_synth_fn synth_mixtral;

const family_descriptor family_mixtral = {
    .family = "mixtral",
    .builtin_config = "mixtral",
    .variants = {{.architecture = "MixtralForCausalLM",
                  .model_types = {"mixtral"},
                  .loader = {.sliding_window = true, .moe = MOE_MIXTRAL, .silu_only = true},
                  .synth = synth_mixtral}},
    .forward = FORWARD_DECODER,
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
    .names = {.attn_norm = "input_layernorm",
              .mlp_norm = "post_attention_layernorm",
              .q_proj = "self_attn.q_proj",
              .k_proj = "self_attn.k_proj",
              .v_proj = "self_attn.v_proj",
              .o_proj = "self_attn.o_proj",
              .router = "block_sparse_moe.gate",
              .experts = "block_sparse_moe.experts",
              .expert_proj = {"w1", "w3", "w2"}},
};
