/* The family registry: one descriptor per architecture family (family/<family>.c), the single owner
 * of what rotq knows about a family. Everything that used to be a table of its own is derived from
 * it:
 *   - the adapter the rotation processor asks (rotate/adapter.h: fuse map, writers, o/v and up/down
 *     pairs, norm kind; adapter_for picks the descriptor by config.json's architectures[0]);
 *   - the reference forward pass's loader (model/load.c: the variant's loader flags, the tensor
 *     names and layer prefix below, which forward pass runs);
 *   - synthetic checkpoints (synth/: the variant's generator and its model_type);
 *   - the supported-architecture lists (`rotq info`, error messages);
 *   - config.json's tie_word_embeddings default (io/model_config.c, by model_type);
 *   - the built-in rotation config a family is rotated with by default.
 * Adding a family: write family/<family>.c (one family_descriptor) and add it to registry.c's list;
 * a new forward pass (model/) and synthetic generator (synth/) if the layout is new.
 * tests/test_family_registry.c checks every descriptor against its built-in config, its synthetic
 * checkpoint and its forward pass.
 *
 * Module names are tensor names without ".weight"/".bias"; per-layer names are relative to the
 * layer prefix ("model.layers.{i}"). Lists of names are '|'-separated globs. */
#ifndef ROTQ_FAMILY_FAMILY_H
#define ROTQ_FAMILY_FAMILY_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

struct synth_spec;
struct family_variant;

typedef enum norm_kind {
  NORM_RMS,          /* x·rsqrt(mean(x²)+eps)·w: fuse w, set w = 1 */
  NORM_RMS_PLUS_ONE, /* Gemma: x·rsqrt(mean(x²)+eps)·(1 + w): fuse (1 + w), set w = 0 */
  NORM_LAYER,        /* LayerNorm with weight and bias: fuse both, bake means into writers */
} norm_kind;

typedef struct norm_fuse {
  const char *norm;    /* the norm module */
  const char *linears; /* the linears it feeds, '|'-separated globs */
} norm_fuse;

/* Which reference forward pass reads the family (model/). */
typedef enum family_forward {
  FORWARD_DECODER,    /* model/load.c's pre-norm decoder: LLaMA, MoE, Phi-3, Gemma (the names below) */
  FORWARD_OPT,        /* model/opt.c */
  FORWARD_NEMOTRON_H, /* model/nemotron_h.c */
} family_forward;

/* The sparse MoE block a decoder layer has instead of its MLP (model/moe.h). */
typedef enum moe_kind {
  MOE_NONE,
  MOE_MIXTRAL,
  MOE_QWEN2,
  MOE_QWEN3,
  MOE_NEMOTRON_H,
  MOE_GLM4,        /* GLM-4.5/4.6: DeepSeek-V3 routing (sigmoid, correction bias, groups), SwiGLU experts,
                      an ungated shared expert, the first first_k_dense_replace layers dense */
  MOE_DEEPSEEK_V3, /* DeepSeek-V3: the same block (DeepseekV3Config's defaults) */
  MOE_LLAMA4,      /* Llama-4 text: sigmoid of the top-k router logits scales each expert's input, fused
                      experts [E, in, out] (gate | up halves), a shared expert; dense layers between
                      (interleave_moe_layer_step; model/llama4.h) */
  MOE_GPT_OSS,     /* gpt-oss: router with bias, softmax over the top-k logits, fused experts [E, in, out]
                      with biases and the clamped SwiGLU (model/gpt_oss.h) */
  MOE_QWEN3_NEXT,  /* Qwen3-Next: Qwen2-MoE's block (softmax top-k, a shared expert with its sigmoid gate),
                      Qwen3NextConfig's defaults (norm_topk_prob true) */
} moe_kind;

/* What distinguishes an architecture in the decoder forward pass (as its transformers modeling file). */
typedef struct family_loader {
  bool qkv_bias;             /* q/k/v_proj always have a bias (Qwen2) */
  bool attention_bias;       /* config attention_bias puts a bias on q/k/v/o_proj (Llama, Qwen3) */
  bool mlp_bias;             /* config mlp_bias puts a bias on gate/up/down_proj (Llama) */
  bool qk_norm;              /* q_norm / k_norm on each head before RoPE (Qwen3) */
  bool sliding_window;       /* config sliding_window limits attention (Mistral) */
  moe_kind moe;              /* sparse MoE blocks instead of the MLP */
  bool fused_projections;    /* qkv_proj and gate_up_proj, split at load (Phi-3) */
  int gemma;                 /* Gemma generation 1, 2 or 3 (model/gemma.h), 0 = not Gemma */
  bool silu_only;            /* hidden_act must be "silu" when given */
  bool qkv_bias_from_config; /* config attention_bias puts a bias on q/k/v_proj only, not o_proj (GLM-4.5) */
  bool qk_norm_from_config;  /* q_norm / k_norm exist when config use_qk_norm is true (GLM-4.5) */
  bool partial_rotary;       /* RoPE on the first partial_rotary_factor·head_dim dims of each head (top level
                                or in rope_parameters), the rest passes (GLM-4.5); else a factor ≠ 1 is refused */
  bool mla;                  /* DeepSeek-V3's multi-head latent attention (model/mla.h) instead of q/k/v_proj */
  bool gpt_oss;              /* gpt-oss (model/gpt_oss.h): attention sinks, sliding / full layer_types, YaRN RoPE */
  bool llama4;               /* Llama-4 text (model/llama4.h): interleaved RoPE, NoPE layers, L2 qk-norm, chunked
                                attention, attention temperature tuning */
  bool qwen3_next;           /* Qwen3-Next (model/qwen3_next.h): layer_types' linear_attention layers are gated
                                DeltaNet, full attention has an output gate (q_proj's rows doubled per head) */
} family_loader;

/* Writes a synthetic checkpoint of variant v in its transformers layout (config.json and shards)
 * into dir; defined in synth/. */
typedef int family_synth_fn(const struct synth_spec *spec, const struct family_variant *v, const char *dir,
                            rotq_error *err);

/* One architecture (config.json architectures[0]) of a family. */
typedef struct family_variant {
  const char *architecture;   /* "LlamaForCausalLM" */
  const char *model_types[3]; /* config.json model_type values, NULL-terminated; [0] is what synth writes */
  bool tie_default;           /* tie_word_embeddings when config.json omits it (the config class's default) */
  bool no_head_dim_field;     /* the config class has no head_dim: head_dim = hidden / heads (Qwen2, Phi-3, OPT) */
  family_loader loader;
  family_synth_fn *synth; /* the synthetic checkpoint generator */
} family_variant;

/* The per-layer module names the forward pass reads (model/load.c, model/moe.c, model/opt.c,
 * model/nemotron_h.c), relative to the layer prefix; NULL where the family has none. */
typedef struct family_layer_names {
  const char *attn_norm, *mlp_norm;               /* "input_layernorm", "post_attention_layernorm" */
  const char *q_proj, *k_proj, *v_proj, *o_proj;  /* "self_attn.q_proj", ... */
  const char *qkv_proj;                           /* fused Q, K, V rows (Phi-3) */
  const char *q_norm, *k_norm;                    /* per-head norms (qk_norm variants) */
  const char *gate_proj, *up_proj, *down_proj;    /* the MLP */
  const char *gate_up_proj;                       /* fused gate, up rows (Phi-3) */
  const char *post_attn_norm, *post_mlp_norm;     /* norms on the writers' outputs (Gemma-2/3) */
  const char *router;                             /* MoE: "block_sparse_moe.gate" [experts, hidden] */
  const char *experts;                            /* MoE: "block_sparse_moe.experts" (expert e: ".<e>") */
  const char *expert_proj[3];                     /* an expert's gate, up, down: {"w1", "w3", "w2"} */
  const char *shared_expert, *shared_expert_gate; /* Qwen2-MoE (the experts' projection names) */
  const char *mamba;                              /* Nemotron-H: the Mamba-2 mixer (in_proj, conv1d, ...) */
  const char *linear_attn;                        /* Qwen3-Next: the gated DeltaNet (in_proj_qkvz, conv1d, ...) */
} family_layer_names;

/* A family: everything rotq knows about it. (The rotation processor calls it a model_adapter.) */
typedef struct family_descriptor {
  const char *family;         /* e.g. "llama" */
  const char *builtin_config; /* the built-in rotation config written for it (config/builtin/<name>.yaml) */
  family_variant variants[6]; /* the architectures it claims, terminated by a NULL architecture */
  family_forward forward;
  norm_kind norm;
  const char *embed;               /* "model.embed_tokens" */
  const char *position_embed;      /* learned positions added to the stream (OPT), or NULL: like the
                                      embedding, R1 on the input side (and the mean baked) */
  const char *final_norm;          /* "model.norm" */
  const char *lm_head;             /* "lm_head" */
  const char *layer_prefix;        /* "model.layers" (layer i is "<prefix>.<i>") */
  norm_fuse layer_fuse[4];         /* default per-layer fuse map, used when the config has none */
  const char *writers;             /* per-layer residual writers, e.g. "self_attn.o_proj|mlp.down_proj" */
  const char *writer_output_norms; /* per-layer norms applied to a writer's output before the residual
                                      add (Gemma-2/3), or NULL: they forbid R1 and cannot be fused */
  const char *o_proj, *v_proj;     /* per-layer o/v pair */
  bool v_rows_after_qk;            /* v_proj is a fused qkv_proj [(heads + 2·kv_heads)·head_dim, hidden]:
                                      its output rotation acts on the V rows only, the last
                                      kv_heads·head_dim (Phi-3) */
  bool v_rows_mla;                 /* v_proj is MLA's kv_b_proj [heads·(qk_nope_head_dim + v_head_dim), kv_lora_rank]:
                                      per head its no-RoPE key rows, then its value rows; the output rotation
                                      acts on each head's value rows only, o_proj's input is heads·v_head_dim
                                      (DeepSeek-V3) */
  const char *up_proj, *down_proj; /* per-layer up/down pair */
  bool hybrid_layers;              /* layers of different kinds (Nemotron-H: Mamba-2, attention, MLP, MoE):
                                      a layer without o_proj / down_proj has no online rotation there */
  const char *r2_refused;          /* why no rotation of the value heads (R2 on v_proj's output and
                                      o_proj's input) is exact in this family, or NULL: a config with one
                                      is refused with this reason (Qwen3-Next's output gate) */
  const char *refused_tensors;     /* tensors (globs over whole names) rotq cannot rotate exactly, or
                                      NULL: a checkpoint holding one is refused (Qwen3-Next's mtp.*) */
  const char *untouched;           /* per-layer modules no rotation touches (q_norm, Mamba internals, ...):
                                      with the names above they cover every tensor of the family */
  const char *in_out_layout;       /* per-layer modules stored as 3-D [experts, in, out] tensors (y = x·W_e,
                                      the transpose of nn.Linear's [out, in]; gpt-oss, Llama-4 fused
                                      experts), or NULL: an input rotation acts on axis 1 (W_e ← Rᵀ·W_e),
                                      an output rotation on axis 2 (W_e ← W_e·R), a fused norm scales
                                      axis 1; their biases "<module>_bias" [experts, out] take the output
                                      rotation per expert (rotate/rotate_command.h) */
  family_layer_names names;        /* what the forward pass reads */
} family_descriptor;

/* The number of families, and the i-th in registry order (the order of every list). */
size_t family_count(void);
const family_descriptor *family_at(size_t i);
/* The family claiming architecture, or NULL; *variant (if given) is set to its entry. */
const family_descriptor *family_find(const char *architecture, const family_variant **variant);
/* Every supported architecture, comma-separated, in registry order (for `rotq info` and messages). */
const char *family_supported_list(void);
/* tie_word_embeddings' default for a config.json of this model_type (false for unknown ones). */
bool family_tie_default(const char *model_type);
/* "<prefix>.<layer>.<relative>" (relative NULL or "": "<prefix>.<layer>") into out. */
void family_layer_module(const family_descriptor *f, int layer, const char *relative, char *out, size_t cap);

#endif
