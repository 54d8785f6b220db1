/* Phi-3 (Phi3ForCausalLM): the LLaMA layout with fused projections. self_attn.qkv_proj
 * [(heads + 2·kv_heads)·head_dim, hidden] holds the Q, K and V rows in that order; mlp.gate_up_proj
 * [2·intermediate, hidden] the gate rows, then the up rows. Both read the residual stream (R1 on the
 * input, norm fused); R2 acts on the V rows of qkv_proj only (v_rows_after_qk), paired with
 * o_proj's input. */
#include "family/family.h"

family_synth_fn synth_phi3;

const family_descriptor family_phi3 = {
    .family = "phi3",
    .builtin_config = "phi3",
    .variants = {{.architecture = "Phi3ForCausalLM",
                  .model_types = {"phi3"},
                  .no_head_dim_field = true,
                  .loader = {.sliding_window = true, .fused_projections = true, .silu_only = true},
                  .synth = synth_phi3}},
    .forward = FORWARD_DECODER,
    .norm = NORM_RMS,
    .embed = "model.embed_tokens",
    .final_norm = "model.norm",
    .lm_head = "lm_head",
    .layer_prefix = "model.layers",
    .layer_fuse = {{"input_layernorm", "self_attn.qkv_proj"}, {"post_attention_layernorm", "mlp.gate_up_proj"}},
    .writers = "self_attn.o_proj|mlp.down_proj",
    .o_proj = "self_attn.o_proj",
    .v_proj = "self_attn.qkv_proj",
    .v_rows_after_qk = true,
    .up_proj = "mlp.gate_up_proj",
    .down_proj = "mlp.down_proj",
    .names = {.attn_norm = "input_layernorm",
              .mlp_norm = "post_attention_layernorm",
              .qkv_proj = "self_attn.qkv_proj",
              .o_proj = "self_attn.o_proj",
              .gate_up_proj = "mlp.gate_up_proj",
              .down_proj = "mlp.down_proj"},
};
