/* Gemma (GemmaForCausalLM): the LLaMA layout with RMSNorm x·rsqrt(mean(x²)+eps)·(1 + w) — fusion
 * moves (1 + w) into the linears and sets w = 0 (NORM_RMS_PLUS_ONE) — and embeddings scaled by
 * √hidden, a scalar that commutes with R1. GemmaConfig ties the embeddings by default. */
#include "family/family.h"

family_synth_fn synth_gemma;

const family_descriptor family_gemma = {
    .family = "gemma",
    .builtin_config = "transformer_universal",
    .variants = {{.architecture = "GemmaForCausalLM",
                  .model_types = {"gemma"},
                  .tie_default = true,
                  .loader = {.attention_bias = true, .gemma = 1},
                  .synth = synth_gemma}},
    .forward = FORWARD_DECODER,
    .norm = NORM_RMS_PLUS_ONE,
    .embed = "model.embed_tokens",
    .final_norm = "model.norm",
    .lm_head = "lm_head",
    .layer_prefix = "model.layers",
    .layer_fuse = {{"input_layernorm", "self_attn.q_proj|self_attn.k_proj|self_attn.v_proj"},
                   {"post_attention_layernorm", "mlp.gate_proj|mlp.up_proj"}},
    .writers = "self_attn.o_proj|mlp.down_proj",
    .o_proj = "self_attn.o_proj",
    .v_proj = "self_attn.v_proj",
    .up_proj = "mlp.up_proj",
    .down_proj = "mlp.down_proj",
    .names = {.attn_norm = "input_layernorm",
              .mlp_norm = "post_attention_layernorm",
              .q_proj = "self_attn.q_proj",
              .k_proj = "self_attn.k_proj",
              .v_proj = "self_attn.v_proj",
              .o_proj = "self_attn.o_proj",
              .gate_proj = "mlp.gate_proj",
              .up_proj = "mlp.up_proj",
              .down_proj = "mlp.down_proj"},
};
