/* Qwen3-Next / Qwen3.5 hybrids (Qwen3NextForCausalLM): every layer is input_layernorm, a token mixer,
 * post_attention_layernorm and a sparse MoE block (or a dense MLP: mlp_only_layers,
 * decoder_sparse_step). The mixer is, by layer_types, a gated DeltaNet (linear_attn: in_proj_qkvz
 * and in_proj_ba read the stream, out_proj writes it; its conv1d, A_log, dt_bias and gated RMSNorm
 * act between them) or gated full attention (q_proj, with the output gate's rows, k_proj and v_proj
 * read; o_proj writes). The MoE block is Qwen2-MoE's: the router mlp.gate, every expert's
 * gate/up_proj, the shared expert's and its sigmoid gate mlp.shared_expert_gate read the
 * post-attention norm's output; every expert's and the shared expert's down_proj write the stream.
 * Every RMSNorm but the DeltaNet's gated one computes x·rsqrt(mean(x²)+eps)·(1 + w) (NORM_RMS_PLUS_ONE:
 * fuse 1 + w, set w = 0); q_norm/k_norm act per head and are untouched.
 *
 * R2 is not exact here (r2_refused): full attention multiplies its output by
 * sigmoid(gate) channel by channel before o_proj, and the DeltaNet's values pass a per-channel
 * depthwise conv1d and a per-channel gated norm (docs/architectures.md). */
#include "family/family.h"

family_synth_fn synth_qwen3_next;

const family_descriptor family_qwen3_next = {
    .family = "qwen3_next",
    .builtin_config = "qwen3_next",
    .variants = {{.architecture = "Qwen3NextForCausalLM",
                  .model_types = {"qwen3_next"},
                  .loader = {.attention_bias = true,
                             .qk_norm = true,
                             .moe = MOE_QWEN3_NEXT,
                             .silu_only = true,
                             .partial_rotary = true,
                             .qwen3_next = true},
                  .synth = synth_qwen3_next}},
    .forward = FORWARD_DECODER,
    .norm = NORM_RMS_PLUS_ONE,
    .embed = "model.embed_tokens",
    .final_norm = "model.norm",
    .lm_head = "lm_head",
    .layer_prefix = "model.layers",
    .layer_fuse =
        {{"input_layernorm",
          "self_attn.q_proj|self_attn.k_proj|self_attn.v_proj|linear_attn.in_proj_qkvz|linear_attn.in_proj_ba"},
         {"post_attention_layernorm",
          "mlp.gate|mlp.experts.*.gate_proj|mlp.experts.*.up_proj|mlp.shared_expert.gate_proj|"
          "mlp.shared_expert.up_proj|mlp.shared_expert_gate|mlp.gate_proj|mlp.up_proj"}},
    .writers = "self_attn.o_proj|linear_attn.out_proj|mlp.experts.*.down_proj|mlp.shared_expert.down_proj|"
               "mlp.down_proj",
    .o_proj = "self_attn.o_proj",
    .v_proj = "self_attn.v_proj",
    .up_proj = "mlp.experts.*.up_proj|mlp.shared_expert.up_proj|mlp.up_proj",
    .down_proj = "mlp.experts.*.down_proj|mlp.shared_expert.down_proj|mlp.down_proj",
    .hybrid_layers = true,
    .r2_refused =
        "full attention multiplies its output by sigmoid(gate) channel by channel before o_proj, which a rotation of "
        "the value heads does not commute with (and the DeltaNet layers' values pass a per-channel conv1d and gated "
        "norm)",
    .refused_tensors = "mtp.*",
    .untouched = "self_attn.q_norm|self_attn.k_norm|linear_attn.conv1d|linear_attn.A_log|linear_attn.dt_bias|"
                 "linear_attn.norm",
    .names = {.attn_norm = "input_layernorm",
              .mlp_norm = "post_attention_layernorm",
              .q_proj = "self_attn.q_proj",
              .k_proj = "self_attn.k_proj",
              .v_proj = "self_attn.v_proj",
              .o_proj = "self_attn.o_proj",
              .q_norm = "self_attn.q_norm",
              .k_norm = "self_attn.k_norm",
              .gate_proj = "mlp.gate_proj",
              .up_proj = "mlp.up_proj",
              .down_proj = "mlp.down_proj",
              .router = "mlp.gate",
              .experts = "mlp.experts",
              .expert_proj = {"gate_proj", "up_proj", "down_proj"},
              .shared_expert = "mlp.shared_expert",
              .shared_expert_gate = "mlp.shared_expert_gate",
              .linear_attn = "linear_attn"},
};
