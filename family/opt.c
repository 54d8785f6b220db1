/* OPT (OPTForCausalLM, do_layer_norm_before): pre-LayerNorm decoder layers with biases everywhere,
 * learned positional embeddings added to the token embeddings, ReLU MLP fc1/fc2.
 *
 * LayerNorm centres its input, which a rotation of the stream does not commute with unless the
 * stream is already centred and stays so: the means are baked into every residual writer
 * (out_proj, fc2, weights and biases) and both embeddings, each LayerNorm's γ is fused into the
 * linears it feeds and its β folded into their biases (lm_head has none: the final norm keeps
 * β/γ, rotated), and R1 is composed with a reflection that maps the ones direction to itself
 * (rotate/rotate_command.c, layer_norm_commands). */
#include "family/family.h"

family_synth_fn synth_opt;

const family_descriptor family_opt = {
    .family = "opt",
    .builtin_config = "opt",
    .variants = {{.architecture = "OPTForCausalLM",
                  .model_types = {"opt"},
                  .tie_default = true, /* OPTConfig keeps PretrainedConfig's default */
                  .no_head_dim_field = true,
                  .loader = {.silu_only = true},
                  .synth = synth_opt}},
    .forward = FORWARD_OPT,
    .norm = NORM_LAYER,
    .embed = "model.decoder.embed_tokens",
    .position_embed = "model.decoder.embed_positions",
    .final_norm = "model.decoder.final_layer_norm",
    .lm_head = "lm_head",
    .layer_prefix = "model.decoder.layers",
    .layer_fuse = {{"self_attn_layer_norm", "self_attn.q_proj|self_attn.k_proj|self_attn.v_proj"},
                   {"final_layer_norm", "fc1"}},
    .writers = "self_attn.out_proj|fc2",
    .o_proj = "self_attn.out_proj",
    .v_proj = "self_attn.v_proj",
    .up_proj = "fc1",
    .down_proj = "fc2",
    .names = {.attn_norm = "self_attn_layer_norm",
              .mlp_norm = "final_layer_norm",
              .q_proj = "self_attn.q_proj",
              .k_proj = "self_attn.k_proj",
              .v_proj = "self_attn.v_proj",
              .o_proj = "self_attn.out_proj",
              .up_proj = "fc1",
              .down_proj = "fc2"},
};
