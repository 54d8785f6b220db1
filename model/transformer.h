/* Inside model/: the loaded weights of a decoder-only transformer and the state of a decoding
 * session, as the forward pass reads them. Weight and cache elements are doubles, or floats when
 * the model was loaded with options.f32 (`real` in forward.h). Shapes follow nn.Linear: [out, in]. */
#ifndef ROTQ_MODEL_TRANSFORMER_H
#define ROTQ_MODEL_TRANSFORMER_H

#include <stdint.h>

#include "model/model.h"
#include "model/moe.h"
#include "model/mla.h"
#include "model/nemotron_h.h"
#include "model/qwen3_next.h"

/* The MLP's activation: act(gate)·up for the gated ones. */
typedef enum activation_kind {
  ACT_SILU,      /* LLaMA family: silu(gate)·up */
  ACT_GELU_TANH, /* Gemma: gelu_pytorch_tanh(gate)·up */
  ACT_GELU,      /* exact (erf) GELU(gate)·up */
  ACT_RELU,      /* OPT: relu(fc1(x)), no up projection */
} activation_kind;

typedef struct layer_weights { /* Nemotron-H: a layer has one of mamba, wq.., w_up.. (attn_norm its norm) */
  void *attn_norm;             /* input_layernorm            [hidden] */
  void *wq, *bq;               /* self_attn.q_proj           [heads·head_dim, hidden], bias or NULL */
  void *wk, *bk;               /* self_attn.k_proj           [kv_heads·head_dim, hidden], bias or NULL */
  void *wv, *bv;               /* self_attn.v_proj           [kv_heads·head_dim, hidden], bias or NULL */
  void *q_norm, *k_norm;       /* self_attn.q_norm / k_norm  [head_dim] (Qwen3), else NULL */
  void *wo, *bo;               /* self_attn.o_proj           [hidden, heads·head_dim], bias or NULL */
  void *mlp_norm;              /* post_attention_layernorm   [hidden] (Gemma-2/3: pre_feedforward_layernorm) */
  void *w_gate, *b_gate;       /* mlp.gate_proj              [intermediate, hidden], bias or NULL */
  void *w_up, *b_up;           /* mlp.up_proj                [intermediate, hidden], bias or NULL */
  void *w_down, *b_down;       /* mlp.down_proj              [hidden, intermediate], bias or NULL */
  moe_weights *moe;            /* sparse MoE block instead of the MLP (Mixtral, Qwen-MoE), else NULL */
  void *post_attn_norm;        /* Gemma-2/3 post_attention_layernorm on o_proj's output [hidden], else NULL */
  void *post_mlp_norm;         /* Gemma-2/3 post_feedforward_layernorm on down_proj's output [hidden], else NULL */
  void *attn_norm_bias, *mlp_norm_bias; /* OPT: the LayerNorms' β [hidden], else NULL */
  mamba_weights *mamba;                 /* Nemotron-H Mamba-2 layer (attn_norm is its norm), else NULL */
  mla_weights *mla;           /* DeepSeek-V3: latent attention instead of wq..wv (wo, bo: its o_proj), else NULL */
  void *wq_gate, *bq_gate;    /* Qwen3-Next full attention: q_proj's output-gate rows [heads·head_dim, hidden] */
  deltanet_weights *deltanet; /* Qwen3-Next gated DeltaNet instead of attention (no wq..wo), else NULL */
  void *sinks;                /* gpt-oss: self_attn.sinks [heads], each head's extra softmax logit, else NULL */
} layer_weights;

/* The activations entering the decoder linears, each shared by the linears it feeds. */
typedef enum linear_input {
  INPUT_QKV,       /* rmsnorm(x) → q_proj, k_proj, v_proj   [rows, hidden] */
  INPUT_O_PROJ,    /* attention output → o_proj             [rows, heads·head_dim] */
  INPUT_GATE_UP,   /* rmsnorm(x) → gate_proj, up_proj       [rows, hidden] */
  INPUT_DOWN_PROJ, /* silu(gate)·up → down_proj             [rows, intermediate] */
  LINEAR_INPUT_COUNT
} linear_input;

/* Sees x [rows, dim] (elements of the compute type) as it enters the linears of `input` in
 * `layer`, after any online rotation and before fake quantization. Returning true ends the
 * forward pass there: the logits are then left unset (calibration needs no more). */
typedef bool (*linear_input_observer)(void *user, int layer, linear_input input, const void *x, int rows, int dim);

struct model {
  model_config config;
  bool f32;              /* elements are floats (else doubles) */
  int sliding_window;    /* a query sees this many most recent positions; 0 = all */
  void *embed;           /* model.embed_tokens         [vocab, hidden] */
  layer_weights *layers; /* [num_hidden_layers] */
  void *final_norm;      /* model.norm                 [hidden] */
  void *lm_head;         /* lm_head                    [vocab, hidden]; == embed when tied */
  double *inv_freq;      /* RoPE inverse frequencies   [rotary dims / 2], rope_scaling applied */
  int mla_v_dim;         /* DeepSeek-V3 (model/mla.h): v_head_dim of the latent attention; 0 = not MLA */
  bool rope_interleave;  /* DeepSeek-V3: RoPE on interleaved pairs (rope_interleave) */
  int rotary_dim;        /* RoPE acts on the first rotary_dim dims of each head (GLM-4.5); 0 = head_dim */
  double rope_scale;     /* cos and sin times this (YaRN's attention factor, gpt-oss); 0 = 1 */
  /* Llama-4 text (model/llama4.h), all NULL/0 for other families: */
  bool rope_pairs;                /* RoPE on adjacent pairs (2i, 2i + 1) as complex numbers (Llama-4), not halves */
  bool *layer_nope;               /* [layers] no RoPE in this layer (no_rope_layers 0), else NULL */
  int *layer_chunk;               /* [layers] chunked attention: a query sees keys of its own chunk only; 0 = none */
  bool l2_qk_norm;                /* use_qk_norm: q and k of the RoPE layers L2-normalized per head (no weight) */
  double floor_scale, attn_scale; /* attention temperature tuning of the NoPE layers (0 = off) */
  /* Family features beyond the LLaMA family (all zero/NULL for it): */
  activation_kind activation; /* of the MLP: SiLU-gated unless set */
  double embed_scale;         /* Gemma: embeddings times √hidden (rounded to their dtype); 0 = none */
  double attention_scale;     /* Gemma-2/3: query_pre_attn_scalar^-½; 0 = 1/√head_dim */
  double attn_softcap;        /* Gemma-2: scores ← cap·tanh(scores/cap); 0 = none */
  double final_softcap;       /* Gemma-2: logits ← cap·tanh(logits/cap); 0 = none */
  int *layer_window;          /* [layers] Gemma-2/3: each layer's sliding window (0 = full); NULL = sliding_window */
  double *inv_freq_local;     /* Gemma-3: RoPE of the sliding layers (rope_local_base_freq), else NULL */
  bool layer_norm;            /* OPT: LayerNorm (centred, with β) instead of RMSNorm */
  void *final_norm_bias;      /* OPT: the final LayerNorm's β [hidden] */
  void *positions;        /* OPT: learned positions [max_position_embeddings + 2, hidden]; position p is row p + 2 */
  int delta_rule_chunk;   /* Qwen3-Next: tokens per chunk of the gated delta rule; 0 = 64 */
  bool hybrid;            /* Nemotron-H: each layer one mixer (Mamba-2, attention or MLP); model/nemotron_h.h */
  activation_quant quant; /* fake quantization, resolved: off is 16 bits, clips and group set */
  linear_input_observer observe; /* NULL, or called at each decoder linear's input */
  void *observe_user;
  struct online_hooks *online; /* activation halves of the online rotations, or NULL */
  /* model_options.layers_on_demand: the open checkpoint the layers are read from (model_load_layer),
   * its config moved to `config`; NULL when every weight was loaded. */
  struct checkpoint *source;
};

struct model_session {
  model *model;
  int max_tokens;    /* cache capacity in positions */
  int length;        /* positions filled */
  void *key_cache;   /* [layers, max_tokens, kv_heads·head_dim], RoPE applied */
  void *value_cache; /* [layers, max_tokens, kv_heads·head_dim] */
};

/* The forward pass of n tokens (already bounds-checked) at positions s->length.. (room checked):
 * fills the caches and logits [n, vocab]; does not advance s->length. -1 only when out of memory. */
int forward_f64(model_session *s, const int32_t *tokens, int n, double *logits, rotq_error *err);
int forward_f32(model_session *s, const int32_t *tokens, int n, double *logits, rotq_error *err);
/* Decoder layer `layer` alone on the residual stream hidden [n, hidden] (in place), positions
 * s->length..; does not advance s->length. An observer that ends the pass leaves hidden unset. */
int forward_layer_f64(model_session *s, int layer, double *hidden, int n, rotq_error *err);
int forward_layer_f32(model_session *s, int layer, float *hidden, int n, rotq_error *err);

#endif
