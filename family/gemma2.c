/* Gemma-2 (Gemma2ForCausalLM) and Gemma-3 text (Gemma3ForCausalLM): Gemma's norms (1 + w), plus
 * post_attention_layernorm and post_feedforward_layernorm on o_proj's and down_proj's outputs
 * before the residual add, and the MLP's input from pre_feedforward_layernorm. A norm on a writer's
 * output does not commute with a rotation of the residual stream (its (1 + w) scales coordinates
 * one by one), so R1 is impossible there: only what stays exact applies (R2 on v_proj/o_proj; the
 * `gemma2` config). Gemma-3 adds q_norm/k_norm. */
#include "family/family.h"

family_synth_fn synth_gemma;

const family_descriptor family_gemma2 = {
    .family = "gemma2",
    .builtin_config = "gemma2",
    .variants = {{.architecture = "Gemma2ForCausalLM",
                  .model_types = {"gemma2"},
                  .tie_default = true,
                  .loader = {.attention_bias = true, .gemma = 2},
                  .synth = synth_gemma},
                 {.architecture = "Gemma3ForCausalLM",
                  .model_types = {"gemma3_text", "gemma3"},
                  .tie_default = true,
                  .loader = {.attention_bias = true, .qk_norm = true, .gemma = 3},
                  .synth = synth_gemma}},
    .forward = FORWARD_DECODER,
    .norm = NORM_RMS_PLUS_ONE,
    .embed = "model.embed_tokens",
    .final_norm = "model.norm",
    .lm_head = "lm_head",
    .layer_prefix = "model.layers",
    .layer_fuse = {{"input_layernorm", "self_attn.q_proj|self_attn.k_proj|self_attn.v_proj"},
                   {"pre_feedforward_layernorm", "mlp.gate_proj|mlp.up_proj"}},
    .writers = "self_attn.o_proj|mlp.down_proj",
    .writer_output_norms = "post_attention_layernorm|post_feedforward_layernorm",
    .o_proj = "self_attn.o_proj",
    .v_proj = "self_attn.v_proj",
    .up_proj = "mlp.up_proj",
    .down_proj = "mlp.down_proj",
    .untouched = "self_attn.q_norm|self_attn.k_norm",
    .names = {.attn_norm = "input_layernorm",
              .mlp_norm = "pre_feedforward_layernorm",
              .q_proj = "self_attn.q_proj",
              .k_proj = "self_attn.k_proj",
              .v_proj = "self_attn.v_proj",
              .o_proj = "self_attn.o_proj",
              .q_norm = "self_attn.q_norm",
              .k_norm = "self_attn.k_norm",
              .gate_proj = "mlp.gate_proj",
              .up_proj = "mlp.up_proj",
              .down_proj = "mlp.down_proj",
              .post_attn_norm = "post_attention_layernorm",
              .post_mlp_norm = "post_feedforward_layernorm"},
};
