/* Inside model/: the loaded weights of a decoder-only transformer and the state of a decoding
 * session, as the forward pass reads them. Weight and cache elements are doubles, or floats when
 * the model was loaded with options.f32 (`real` in forward.h). Shapes follow nn.Linear: [out, in]. */
#ifndef ROTQ_MODEL_TRANSFORMER_H
#define ROTQ_MODEL_TRANSFORMER_H

#include <stdint.h>

#include "model/model.h"

typedef struct layer_weights {
  void *attn_norm;        /* input_layernorm            [hidden] */
  void *wq, *bq;          /* self_attn.q_proj           [heads·head_dim, hidden], bias or NULL */
  void *wk, *bk;          /* self_attn.k_proj           [kv_heads·head_dim, hidden], bias or NULL */
  void *wv, *bv;          /* self_attn.v_proj           [kv_heads·head_dim, hidden], bias or NULL */
  void *q_norm, *k_norm;  /* self_attn.q_norm / k_norm  [head_dim] (Qwen3), else NULL */
  void *wo, *bo;          /* self_attn.o_proj           [hidden, heads·head_dim], bias or NULL */
  void *mlp_norm;         /* post_attention_layernorm   [hidden] */
  void *w_gate, *b_gate;  /* mlp.gate_proj              [intermediate, hidden], bias or NULL */
  void *w_up, *b_up;      /* mlp.up_proj                [intermediate, hidden], bias or NULL */
  void *w_down, *b_down;  /* mlp.down_proj              [hidden, intermediate], bias or NULL */
} layer_weights;

struct model {
  model_config config;
  bool f32;               /* elements are floats (else doubles) */
  int sliding_window;     /* a query sees this many most recent positions; 0 = all */
  void *embed;            /* model.embed_tokens         [vocab, hidden] */
  layer_weights *layers;  /* [num_hidden_layers] */
  void *final_norm;       /* model.norm                 [hidden] */
  void *lm_head;          /* lm_head                    [vocab, hidden]; == embed when tied */
  double *inv_freq;       /* RoPE inverse frequencies   [head_dim / 2], rope_scaling applied */
};

struct model_session {
  model *model;
  int max_tokens;         /* cache capacity in positions */
  int length;             /* positions filled */
  void *key_cache;        /* [layers, max_tokens, kv_heads·head_dim], RoPE applied */
  void *value_cache;      /* [layers, max_tokens, kv_heads·head_dim] */
};

/* The forward pass of n tokens (already bounds-checked) at positions s->length.. (room checked):
 * fills the caches and logits [n, vocab]; does not advance s->length. -1 only when out of memory. */
int forward_f64(model_session *s, const int32_t *tokens, int n, double *logits, rotq_error *err);
int forward_f32(model_session *s, const int32_t *tokens, int n, double *logits, rotq_error *err);

#endif
