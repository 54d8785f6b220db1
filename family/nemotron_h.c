/* Nemotron-H (NemotronHForCausalLM): each layer is one RMSNorm (backbone.layers.{i}.norm) and one
 * mixer — a Mamba-2 mixer (in_proj reads the residual stream, out_proj writes it), attention
 * (q/k/v_proj read, o_proj writes), an MLP (up_proj reads, down_proj writes) or, in Nemotron-3
 * style MoE layers ('E'), a mixture of experts: the router (mixer.gate [experts, hidden]; its
 * e_score_correction_bias is not a linear and stays as it is), every routed expert's up_proj and
 * the shared expert's up_proj read the stream; every expert's and the shared expert's down_proj
 * write it. The norm is fused into whichever readers the layer has; the Mamba-2 internals between
 * in_proj and out_proj (conv1d, the selective scan, D, dt, the gated RMSNorm mixer.norm) are not
 * touched by R1. Layers of different kinds have different readers: hybrid_layers. */
#include "family/family.h"

family_synth_fn synth_nemotron_h;

const family_descriptor family_nemotron_h = {
    .family = "nemotron_h",
    .builtin_config = "nemotron_h",
    .variants = {{.architecture = "NemotronHForCausalLM", .model_types = {"nemotron_h"}, .synth = synth_nemotron_h}},
    .forward = FORWARD_NEMOTRON_H,
    .norm = NORM_RMS,
    .embed = "backbone.embeddings",
    .final_norm = "backbone.norm_f",
    .lm_head = "lm_head",
    .layer_prefix = "backbone.layers",
    .layer_fuse = {{"norm", "mixer.in_proj|mixer.q_proj|mixer.k_proj|mixer.v_proj|mixer.up_proj|mixer.gate|"
                            "mixer.experts.*.up_proj|mixer.shared_experts.up_proj"}},
    .writers = "mixer.out_proj|mixer.o_proj|mixer.down_proj|mixer.experts.*.down_proj|mixer.shared_experts.down_proj",
    .o_proj = "mixer.o_proj",
    .v_proj = "mixer.v_proj",
    .up_proj = "mixer.up_proj",
    .down_proj = "mixer.down_proj",
    .hybrid_layers = true,
    .untouched = "mixer.A_log|mixer.D|mixer.conv1d|mixer.dt_bias|mixer.norm|mixer.gate.e_score_correction_bias",
    .names = {.attn_norm = "norm",
              .q_proj = "mixer.q_proj",
              .k_proj = "mixer.k_proj",
              .v_proj = "mixer.v_proj",
              .o_proj = "mixer.o_proj",
              .up_proj = "mixer.up_proj",
              .down_proj = "mixer.down_proj",
              .router = "mixer.gate",
              .experts = "mixer.experts",
              .expert_proj = {NULL, "up_proj", "down_proj"}, /* relu² experts: no gate */
              .shared_expert = "mixer.shared_experts",
              .mamba = "mixer"},
};
