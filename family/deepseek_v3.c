/* DeepSeek-V3 / R1 / Kimi-K2 (DeepseekV3ForCausalLM): multi-head latent attention (model/mla.h:
 * q_a_proj → q_a_layernorm → q_b_proj, or q_proj when q_lora_rank is null; kv_a_proj_with_mqa →
 * its latent (kv_a_layernorm → kv_b_proj: per head the no-RoPE key and the value) and the shared
 * RoPE key; o_proj), the first first_k_dense_replace layers with a dense SwiGLU MLP, the others the
 * DeepSeek-V3 MoE block (as GLM-4.5's: router with correction bias, grouped top-k, SwiGLU experts,
 * ungated shared experts mlp.shared_experts).
 * R1: q_a_proj / q_proj, kv_a_proj_with_mqa, the router and every gate/up_proj read the stream
 * through a norm (fused in, R1 on the input); o_proj and every down_proj write it (R1 on the
 * output). The latent path (q_a_layernorm, q_b_proj, kv_a_layernorm, kv_b_proj) sees only
 * projections of the stream, unchanged by R1. R2: kv_b_proj is the value projection (v_rows_mla):
 * per head h its rows [h·(nope + v), h·(nope + v) + nope) make the no-RoPE key, the next v rows the
 * value; R2 (order v_head_dim) rotates each head's value rows and o_proj's input columns of that
 * head, exactly as v_proj/o_proj in LLaMA (attention mixes each head's values with scalar
 * weights); the key rows are untouched. */
#include "family/family.h"

family_synth_fn synth_deepseek_v3;

const family_descriptor family_deepseek_v3 = {
    .family = "deepseek_v3",
    .builtin_config = "deepseek_v3",
    .variants = {{.architecture = "DeepseekV3ForCausalLM",
                  .model_types = {"deepseek_v3"},
                  .loader = {.mla = true, .moe = MOE_DEEPSEEK_V3, .silu_only = true},
                  .synth = synth_deepseek_v3}},
    .forward = FORWARD_DECODER,
    .norm = NORM_RMS,
    .embed = "model.embed_tokens",
    .final_norm = "model.norm",
    .lm_head = "lm_head",
    .layer_prefix = "model.layers",
    .layer_fuse = {{"input_layernorm", "self_attn.q_a_proj|self_attn.q_proj|self_attn.kv_a_proj_with_mqa"},
                   {"post_attention_layernorm",
                    "mlp.gate|mlp.experts.*.gate_proj|mlp.experts.*.up_proj|mlp.shared_experts.gate_proj|"
                    "mlp.shared_experts.up_proj|mlp.gate_proj|mlp.up_proj"}},
    .writers = "self_attn.o_proj|mlp.experts.*.down_proj|mlp.shared_experts.down_proj|mlp.down_proj",
    .o_proj = "self_attn.o_proj",
    .v_proj = "self_attn.kv_b_proj",
    .v_rows_mla = true,
    .up_proj = "mlp.experts.*.up_proj|mlp.shared_experts.up_proj|mlp.up_proj",
    .down_proj = "mlp.experts.*.down_proj|mlp.shared_experts.down_proj|mlp.down_proj",
    .untouched = "self_attn.q_a_layernorm|self_attn.q_b_proj|self_attn.kv_a_layernorm|"
                 "mlp.gate.e_score_correction_bias",
    .names = {.attn_norm = "input_layernorm",
              .mlp_norm = "post_attention_layernorm",
              .o_proj = "self_attn.o_proj",
              .gate_proj = "mlp.gate_proj",
              .up_proj = "mlp.up_proj",
              .down_proj = "mlp.down_proj",
              .router = "mlp.gate",
              .experts = "mlp.experts",
              .expert_proj = {"gate_proj", "up_proj", "down_proj"},
              .shared_expert = "mlp.shared_experts"},
};
