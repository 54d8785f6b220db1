/* OPT (OPTForCausalLM) as transformers computes it with do_layer_norm_before (every released size
 * but 350m): x = embed_tokens[t] + embed_positions[p + 2]; each layer x += out_proj(attn(LN(x))),
 * x += fc2(relu(fc1(LN(x)))) with LayerNorm (eps 1e-5) and biases on every linear; lm_head of the
 * final LayerNorm, tied to embed_tokens unless a lm_head.weight is present. No RoPE (the loader
 * zeroes the inverse frequencies, so rope() is the identity). */
#ifndef ROTQ_MODEL_OPT_H
#define ROTQ_MODEL_OPT_H

#include "family/family.h"
#include "io/checkpoint.h"
#include "model/transformer.h"

/* Fills config's generic fields from OPT's (ffn_dim → intermediate_size, LayerNorm's eps) and
 * refuses the variants it does not compute (post-LayerNorm, project_in/out, no biases). */
int opt_prepare_config(model_config *c, rotq_error *err);
/* Reads every weight of an OPT checkpoint into m (m->inv_freq is zeroed); the tensor names' layer
 * prefix, embeddings, final norm and lm_head are f's (family/opt.c). */
int opt_read_weights(const checkpoint *ck, const family_descriptor *f, model *m, rotq_error *err);

#endif
