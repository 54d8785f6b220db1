/* Gemma (GemmaForCausalLM): the LLaMA layout with RMSNorm x·rsqrt(mean(x²)+eps)·(1 + w) — fusion
 * moves (1 + w) into the linears and sets w = 0 (NORM_RMS_PLUS_ONE) — and embeddings scaled by
 * √hidden, a scalar that commutes with R1.
 *
 * Gemma-2 (Gemma2ForCausalLM) and Gemma-3 text (Gemma3ForCausalLM) add post_attention_layernorm
 * and post_feedforward_layernorm on o_proj's and down_proj's outputs before the residual add, and
 * take the MLP's input from pre_feedforward_layernorm. A norm on a writer's output does not commute
 * with a rotation of the residual stream (its (1 + w) scales coordinates one by one), so R1 is
 * impossible there: only what stays exact applies (R2 on v_proj/o_proj; the `gemma2` config). */
#include "family/adapter.h"

const model_adapter gemma_adapter = {
    .family = "gemma",
    .builtin_config = "transformer_universal",
    .architectures = {"GemmaForCausalLM", NULL},
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
};

const model_adapter gemma2_adapter = {
    .family = "gemma2",
    .builtin_config = "gemma2",
    .architectures = {"Gemma2ForCausalLM", "Gemma3ForCausalLM", NULL},
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
};
