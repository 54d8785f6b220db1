"""Tiny random checkpoints of every family rotq supports, built with transformers' own model classes.

Each family is a transformers config (hidden 64, head_dim 16, 2-4 layers, vocab 256; intermediate
128, or 192 = 12·16 (Mistral, Gemma-2: vLLM's R4 blocks of 64) and 172 = 4·43 (Phi-3: R4 is one
Williamson H_172, vLLM's blocks of 4)) whose model is
made by from_config in float64; every norm weight is moved off its init (w += 0.3·randn: RMSNorm
weights ≈ 1 ± 0.3, Gemma's (1 + w) offsets ≈ ±0.3) and every bias drawn (0.1·randn), so that rotq's
norm fusion and bias handling are exercised (gpt-oss: the fused experts' *_proj_bias too, and its
attention sinks drawn randn) (and, where the family says so, the MoE routers'
e_score_correction_bias buffers drawn, 0.1·randn, so that grouped routing depends on them), then saved with save_pretrained (safetensors).
"""
import dataclasses
import json
import os

import torch
import transformers

COMMON = dict(vocab_size=256, hidden_size=64, initializer_range=0.1)
ATTN = dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16)


@dataclasses.dataclass
class Family:
    name: str          # short name used in test ids
    architecture: str  # config.json "architectures"
    make_config: object  # () -> transformers.PretrainedConfig
    config: str        # rotq's built-in config for the family (what `rotq rotate` uses by default)
    online: str = "all"  # rotq's online rotations: "all", "no_r4" (MoE: down_proj_online_layers: []), "none"
    edit_config: object = None  # (config.json dict) -> None, applied after save_pretrained
    draw_router_bias: bool = False  # draw the routers' e_score_correction_bias buffers (zero at init)


def _llama():
    return transformers.LlamaConfig(**COMMON, **ATTN, intermediate_size=128, num_hidden_layers=2,
                                    attention_bias=True, mlp_bias=True)


def _mistral():
    return transformers.MistralConfig(**COMMON, **ATTN, intermediate_size=192, num_hidden_layers=2, sliding_window=8)


def _qwen2():
    return transformers.Qwen2Config(**COMMON, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                                    num_hidden_layers=2, tie_word_embeddings=True)


def _qwen3():
    return transformers.Qwen3Config(**COMMON, **ATTN, intermediate_size=128, num_hidden_layers=2)


def _mixtral():
    return transformers.MixtralConfig(**COMMON, **ATTN, intermediate_size=64, num_hidden_layers=2,
                                      num_local_experts=4, num_experts_per_tok=2)


def _qwen2_moe():
    return transformers.Qwen2MoeConfig(**COMMON, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                                       moe_intermediate_size=32, shared_expert_intermediate_size=64,
                                       num_hidden_layers=3, num_experts=4, num_experts_per_tok=2, mlp_only_layers=[1])


def _qwen3_moe():
    return transformers.Qwen3MoeConfig(**COMMON, **ATTN, intermediate_size=128, moe_intermediate_size=32,
                                       num_hidden_layers=2, num_experts=4, num_experts_per_tok=2, norm_topk_prob=True)


def _phi3():
    return transformers.Phi3Config(**COMMON, num_attention_heads=4, num_key_value_heads=2, intermediate_size=172,
                                   num_hidden_layers=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _gemma():
    return transformers.GemmaConfig(**COMMON, **ATTN, intermediate_size=128, num_hidden_layers=2)


def _gemma2():
    return transformers.Gemma2Config(**COMMON, **ATTN, intermediate_size=192, num_hidden_layers=2, sliding_window=8)


def _gemma3():
    return transformers.Gemma3TextConfig(**COMMON, **ATTN, intermediate_size=128, num_hidden_layers=2, sliding_window=8,
                                         layer_types=["sliding_attention", "full_attention"])


def _opt():
    return transformers.OPTConfig(vocab_size=256, hidden_size=64, ffn_dim=128, num_hidden_layers=2,
                                  num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=64,
                                  init_std=0.1)


def _nemotron_h():
    return transformers.NemotronHConfig(**COMMON, **ATTN, num_hidden_layers=4,
                                        layers_block_type=["mamba", "attention", "mamba", "mlp"],
                                        intermediate_size=128, mamba_num_heads=8, mamba_head_dim=16,
                                        ssm_state_size=16, n_groups=2, conv_kernel=4, chunk_size=8)


def _nemotron_h_moe():
    """Nemotron-3 style: Mamba, MoE ('E': routed relu² experts with grouped sigmoid routing and a
    correction bias, plus a shared expert), attention and MLP layers."""
    return transformers.NemotronHConfig(**COMMON, **ATTN, num_hidden_layers=5,
                                        layers_block_type=["mamba", "moe", "attention", "mlp", "moe"],
                                        intermediate_size=128, mamba_num_heads=8, mamba_head_dim=16,
                                        ssm_state_size=16, n_groups=2, conv_kernel=4, chunk_size=8,
                                        n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=48,
                                        moe_shared_expert_intermediate_size=40, n_group=2, topk_group=1,
                                        routed_scaling_factor=1.5)


def _glm4_moe():
    """GLM-4.5/4.6: dense layer 0 (first_k_dense_replace), then MoE layers with 8 routed experts in 4
    groups (2 kept), top-2 by sigmoid score + e_score_correction_bias (randomized by build),
    routed_scaling_factor, two shared experts fused in one MLP; q/k/v biases, q_norm/k_norm and
    RoPE on half of each head (partial_rotary_factor 0.5, Glm4MoeConfig's default)."""
    return transformers.Glm4MoeConfig(**COMMON, **ATTN, intermediate_size=128, moe_intermediate_size=32,
                                      num_hidden_layers=3, n_routed_experts=8, num_experts_per_tok=2, n_group=4,
                                      topk_group=2, first_k_dense_replace=1, n_shared_experts=2,
                                      routed_scaling_factor=2.5, attention_bias=True, use_qk_norm=True)


def _deepseek_v3():
    """DeepSeek-V3: MLA (q_lora_rank 32: q_a_proj → q_a_layernorm → q_b_proj; kv_lora_rank 32; no-RoPE
    head dims 16, RoPE 8 interleaved, value 16) with biases (attention_bias), a dense layer 0, then MoE
    layers as GLM-4.5's (8 experts in 4 groups, 2 kept, top-2, a drawn correction bias)."""
    return transformers.DeepseekV3Config(**COMMON, num_attention_heads=4, num_key_value_heads=4, intermediate_size=128,
                                         moe_intermediate_size=32, num_hidden_layers=3, n_routed_experts=8,
                                         num_experts_per_tok=2, n_group=4, topk_group=2, first_k_dense_replace=1,
                                         n_shared_experts=2, routed_scaling_factor=2.5, q_lora_rank=32,
                                         kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
                                         attention_bias=True)


def _deepseek_v3_q_proj():
    """DeepSeek-V3 without the query latent (q_lora_rank null: q_proj, as DeepSeek-V2-Lite) and with
    rotate_half RoPE (rope_interleave false), no biases."""
    return transformers.DeepseekV3Config(**COMMON, num_attention_heads=4, num_key_value_heads=4, intermediate_size=128,
                                         moe_intermediate_size=32, num_hidden_layers=2, n_routed_experts=4,
                                         num_experts_per_tok=2, n_group=2, topk_group=1, first_k_dense_replace=1,
                                         q_lora_rank=None, kv_lora_rank=24, qk_nope_head_dim=12, qk_rope_head_dim=8,
                                         v_head_dim=20, rope_interleave=False)


def _gpt_oss():
    """gpt-oss: sliding (window 8) and full layers, attention sinks (drawn by build), YaRN RoPE (the
    config's default), q/k/v/o biases, every layer an MoE block (router with bias, 4 experts, top-2)
    whose experts are stored fused in [experts, in, out] layout with biases (drawn by build)."""
    return transformers.GptOssConfig(**COMMON, **ATTN, intermediate_size=32, num_hidden_layers=2,
                                     num_local_experts=4, num_experts_per_tok=2, sliding_window=8)


def _llama4():
    """Llama-4 text: dense layers 0 and 2 (intermediate_size_mlp 96), MoE layers 1 and 3 (4 experts,
    top-1, the sigmoid score scaling the expert's input, experts fused [experts, in, out], a shared
    expert); NoPE layers 1 and 3 with temperature tuning (floor_scale 4, so 40 tokens exercise it),
    RoPE layers 0 and 2 chunked (8) with L2 qk-norm."""
    return transformers.Llama4TextConfig(**COMMON, **ATTN, intermediate_size=32, intermediate_size_mlp=96,
                                         num_hidden_layers=4, num_local_experts=4, num_experts_per_tok=1,
                                         interleave_moe_layer_step=2, attention_chunk_size=8,
                                         no_rope_layer_interval=2, floor_scale=4)


def _qwen3_next():
    """Qwen3-Next: gated DeltaNet layers (2 key heads of 16, 4 value heads of 8, conv kernel 4) and gated
    full attention (q_proj with the output gate's rows, q_norm/k_norm, RoPE on a quarter of each head;
    no biases, as the released configs, so the vLLM export is compared too), MoE blocks (softmax top-2
    of 4, norm_topk_prob, a shared expert with its sigmoid gate) and a dense MLP on layer 2
    (mlp_only_layers); every RMSNorm but the gated one scales by (1 + w)."""
    return transformers.Qwen3NextConfig(**COMMON, **ATTN, intermediate_size=128, num_hidden_layers=4,
                                        layer_types=["linear_attention", "full_attention", "linear_attention",
                                                     "full_attention"],
                                        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16,
                                        linear_value_head_dim=8, linear_conv_kernel_dim=4, moe_intermediate_size=32,
                                        shared_expert_intermediate_size=48, num_experts=4, num_experts_per_tok=2,
                                        mlp_only_layers=[2])


def _nemotron_h_hub_form(config):
    """transformers 5 saves Nemotron-H's layer kinds as layers_block_type and no num_hidden_layers;
    NVIDIA's published checkpoints (which transformers' loader converts) use hybrid_override_pattern
    and num_hidden_layers. The suite rotates both forms (nemotron_h, nemotron_h5)."""
    kinds = {"mamba": "M", "linear_attention": "M", "attention": "*", "full_attention": "*", "mlp": "-", "moe": "E"}
    pattern = "".join(kinds[k] for k in config.pop("layers_block_type"))
    config["hybrid_override_pattern"] = pattern
    config["num_hidden_layers"] = len(pattern)


FAMILIES = [
    Family("llama", "LlamaForCausalLM", _llama, "transformer_universal"),
    Family("mistral", "MistralForCausalLM", _mistral, "transformer_universal"),
    Family("qwen2", "Qwen2ForCausalLM", _qwen2, "transformer_universal"),
    Family("qwen3", "Qwen3ForCausalLM", _qwen3, "transformer_universal"),
    Family("mixtral", "MixtralForCausalLM", _mixtral, "mixtral", "no_r4"),
    Family("qwen2_moe", "Qwen2MoeForCausalLM", _qwen2_moe, "qwen_moe", "no_r4"),
    Family("qwen3_moe", "Qwen3MoeForCausalLM", _qwen3_moe, "qwen_moe", "no_r4"),
    Family("phi3", "Phi3ForCausalLM", _phi3, "phi3"),
    Family("gemma", "GemmaForCausalLM", _gemma, "transformer_universal"),
    Family("gemma2", "Gemma2ForCausalLM", _gemma2, "gemma2"),
    Family("gemma3", "Gemma3ForCausalLM", _gemma3, "gemma2"),
    Family("opt", "OPTForCausalLM", _opt, "opt", "none"),
    # Nemotron-H: R4 on the MLP layers' down_proj, the heads rotation and R3 on the attention layers
    Family("nemotron_h", "NemotronHForCausalLM", _nemotron_h, "nemotron_h", "all", _nemotron_h_hub_form),
    Family("nemotron_h5", "NemotronHForCausalLM", _nemotron_h, "nemotron_h", "all"),  # as transformers 5 saves it
    Family("nemotron_h_moe", "NemotronHForCausalLM", _nemotron_h_moe, "nemotron_h", "all", _nemotron_h_hub_form),
    Family("glm4_moe", "Glm4MoeForCausalLM", _glm4_moe, "qwen_moe", "no_r4", draw_router_bias=True),
    # MLA: R1 + R2 (each head's value rows of kv_b_proj); online rotations refused (no site under MLA)
    Family("deepseek_v3", "DeepseekV3ForCausalLM", _deepseek_v3, "deepseek_v3", "none", draw_router_bias=True),
    Family("deepseek_v3_q_proj", "DeepseekV3ForCausalLM", _deepseek_v3_q_proj, "deepseek_v3", "none",
           draw_router_bias=True),
    # fused [experts, in, out] experts: no R4 (no single down_proj per layer); vLLM: o_proj has a bias
    Family("gpt_oss", "GptOssForCausalLM", _gpt_oss, "gpt_oss", "no_r4"),
    Family("llama4", "Llama4ForCausalLM", _llama4, "llama4", "no_r4"),
    # Qwen3-Next: R1 only (R2 refused: the output gate); online: the heads rotation and R3 on the full-attention
    # layers, no R4 (MoE)
    Family("qwen3_next", "Qwen3NextForCausalLM", _qwen3_next, "qwen3_next", "no_r4"),
]


def build(family, directory, seed=0):
    """Makes the family's random float64 model with from_config, randomizes norms and biases, saves it."""
    torch.manual_seed(seed)
    config = family.make_config()
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float64)
    assert type(model).__name__ == family.architecture, type(model).__name__
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or name.endswith("_proj_bias"):  # gpt-oss: fused experts' biases
                p.copy_(0.1 * torch.randn_like(p))
            elif name.endswith(".sinks"):  # gpt-oss: each head's sink logit, a real share of the softmax
                p.copy_(torch.randn_like(p))
            elif p.dim() == 1 and "norm" in name.lower():
                p.add_(0.3 * torch.randn_like(p))
        for name, b in model.named_buffers():  # DeepSeek-V3 routing's bias (a buffer), zero at init
            if family.draw_router_bias and name.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn_like(b))
    model.save_pretrained(directory)
    if family.edit_config:
        path = os.path.join(directory, "config.json")
        with open(path) as f:
            config = json.load(f)
        family.edit_config(config)
        with open(path, "w") as f:
            json.dump(config, f, indent=2)
    return model
