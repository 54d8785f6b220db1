/* Gemma (GemmaForCausalLM), Gemma-2 (Gemma2ForCausalLM) and Gemma-3 text (Gemma3ForCausalLM) as
 * transformers computes them, on top of the LLaMA layer (model/forward.h):
 *   - RMSNorm x·rsqrt(mean(x²)+eps)·(1 + w): the loader adds 1 to every norm weight once;
 *   - embeddings times √hidden, the factor rounded to the embedding's dtype;
 *   - gated GELU (hidden_activation, else hidden_act; gelu_pytorch_tanh in every released config);
 *   - Gemma-2/3: post_attention_layernorm and post_feedforward_layernorm on o_proj's and
 *     down_proj's outputs, pre_feedforward_layernorm before the MLP; attention scaled by
 *     query_pre_attn_scalar^-½; a sliding window on some layers (layer_types when given, else
 *     Gemma-2: even layers; Gemma-3: all but every sliding_window_pattern-th);
 *   - Gemma-2: attention-score and final-logit soft-capping cap·tanh(x/cap);
 *   - Gemma-3: q_norm/k_norm, and RoPE with rope_local_base_freq (no scaling) on sliding layers. */
#ifndef ROTQ_MODEL_GEMMA_H
#define ROTQ_MODEL_GEMMA_H

#include "family/family.h"
#include "io/checkpoint.h"
#include "model/transformer.h"

/* Sets m's Gemma features (generation 1, 2 or 3) from config.json; m->inv_freq is already set;
 * f: the family's descriptor (its embedding's name). (The loader reads the Gemma-2/3 post-norms by
 * the descriptor's names.) */
int gemma_configure(const checkpoint *ck, const family_descriptor *f, int generation, model *m, rotq_error *err);
/* Adds 1 to every norm weight of m (the (1 + w) of Gemma's RMSNorm); c: its config.json. */
void gemma_shift_norms(model *m, const model_config *c);

#endif
