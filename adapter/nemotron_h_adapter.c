/* Nemotron-H (NemotronHForCausalLM): each layer is one RMSNorm (backbone.layers.{i}.norm) and one
 * mixer — a Mamba-2 mixer (in_proj reads the residual stream, out_proj writes it), attention
 * (q/k/v_proj read, o_proj writes) or an MLP (up_proj reads, down_proj writes). The norm is fused
 * into whichever readers the layer has; the Mamba-2 internals between in_proj and out_proj (conv1d,
 * the selective scan, D, dt, the gated RMSNorm mixer.norm) are not touched by R1. */
#include "adapter/adapter.h"

const model_adapter nemotron_h_adapter = {
    .family = "nemotron_h",
    .builtin_config = "nemotron_h",
    .architectures = {"NemotronHForCausalLM", NULL},
    .norm = NORM_RMS,
    .embed = "backbone.embeddings",
    .final_norm = "backbone.norm_f",
    .lm_head = "lm_head",
    .layer_prefix = "backbone.layers",
    .layer_fuse = {{"norm", "mixer.in_proj|mixer.q_proj|mixer.k_proj|mixer.v_proj|mixer.up_proj"}},
    .writers = "mixer.out_proj|mixer.o_proj|mixer.down_proj",
    .o_proj = "mixer.o_proj",
    .v_proj = "mixer.v_proj",
    .up_proj = "mixer.up_proj",
    .down_proj = "mixer.down_proj",
};
