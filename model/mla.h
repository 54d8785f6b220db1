/* Multi-head latent attention (DeepSeek-V3, DeepseekV3Attention in transformers) as transformers
 * computes it, for a fresh sequence:
 *   q      = q_b_proj(rmsnorm(q_a_proj(x)) · q_a_layernorm)   [heads, nope + rope]  (q_lora_rank set)
 *          = q_proj(x)                                                              (q_lora_rank null)
 *   c | kr = kv_a_proj_with_mqa(x)                            [kv_lora | rope]
 *   k_nope | v = kv_b_proj(rmsnorm(c) · kv_a_layernorm)       [heads, nope + v_dim]
 *   query  = q_nope | rope(q_rope), key = k_nope | rope(kr) (kr shared by every head)
 *   out    = softmax(query·keyᵀ · (nope + rope)^-½, causal) · v  [heads, v_dim] → o_proj.
 * RoPE on the rope dims: rotate_half, or with rope_interleave (config default true) on the pairs
 * (x0, x1), (x2, x3), ... written de-interleaved (x_even·cos − x_odd·sin | x_odd·cos + x_even·sin),
 * as apply_rotary_pos_emb_interleave. The latent norms use eps 1e-6 (DeepseekV3RMSNorm's default,
 * not rms_norm_eps). Biases on q_a_proj / kv_a_proj_with_mqa / o_proj when attention_bias.
 *
 * Tensor names (relative to model.layers.{i}): self_attn.q_a_proj [q_lora, hidden],
 * self_attn.q_a_layernorm [q_lora], self_attn.q_b_proj [heads·(nope+rope), q_lora] or
 * self_attn.q_proj [heads·(nope+rope), hidden]; self_attn.kv_a_proj_with_mqa [kv_lora + rope,
 * hidden], self_attn.kv_a_layernorm [kv_lora], self_attn.kv_b_proj [heads·(nope+v), kv_lora];
 * self_attn.o_proj [hidden, heads·v] (read into layer_weights wo/bo). */
#ifndef ROTQ_MODEL_MLA_H
#define ROTQ_MODEL_MLA_H

#include <stdbool.h>

#include "common/error.h"
#include "family/family.h"
#include "io/checkpoint.h"

typedef struct mla_weights {
  int q_lora, kv_lora, nope, rope, v_dim; /* q_lora 0: q_proj */
  void *wq, *wq_a, *bq_a, *q_a_norm, *wq_b;
  void *wkv_a, *bkv_a, *kv_a_norm, *wkv_b;
} mla_weights;

/* The model-wide MLA settings from config.json (checked: num_key_value_heads = heads, head_dim =
 * qk_rope_head_dim, RoPE type default): *interleave the rope_interleave flag. */
int mla_configure(const model_config *c, bool *interleave, rotq_error *err);
/* config.json's qk_nope_head_dim and v_head_dim (DeepseekV3Config's defaults, 128 and 128, when
 * absent or null); fails naming the field when one is not an integer in [1, 2^20]. The one reader
 * of MLA's per-head sizes: the forward pass, the rotation's value-row plan and its in-stream check. */
int mla_head_dims(const model_config *c, long *nope, long *v_dim, rotq_error *err);
/* Layer l's attention weights (o_proj excepted) in the compute type; errors name the tensor. */
int mla_read_layer(const checkpoint *ck, const family_descriptor *f, bool f32, int l, mla_weights **out,
                   rotq_error *err);
void mla_free(mla_weights *w);

#endif
