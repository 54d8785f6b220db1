/* The LLaMA family: pre-norm decoder layers with RMSNorm, q/k/v/o attention (GQA), SwiGLU MLP.
 * Llama, Mistral, Qwen2 (q/k/v biases) and Qwen3 (q_norm/k_norm act on Q/K outputs, which no
 * fusible rotation touches). */
#include "family/adapter.h"

const model_adapter llama_adapter = {
    .family = "llama",
    .builtin_config = "transformer_universal",
    .architectures = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", NULL},
    .norm = NORM_RMS,
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
