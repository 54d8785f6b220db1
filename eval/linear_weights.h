/* Inside model/: the decoder linears that read each linear input (model/transformer.h), for the
 * code that quantizes or measures weights by the activation they multiply. */
#ifndef ROTQ_EVAL_LINEAR_WEIGHTS_H
#define ROTQ_EVAL_LINEAR_WEIGHTS_H

#include "model/transformer.h"

/* A decoder linear's weight [out_dim, in_dim], in the model's element type. */
typedef struct linear_weight {
  void *weight;
  int out_dim, in_dim;
  const char *name; /* "q_proj", ... */
} linear_weight;

#define MAX_LINEARS_PER_INPUT 3

/* The dense linears reading `input` in layer l, into out[MAX_LINEARS_PER_INPUT]; returns how many
 * (0 where the layer has none: the MLP inputs of a MoE layer, the attention inputs of a Mamba
 * layer). MoE experts and Mamba projections are not listed. */
int linears_of(const model *m, int l, linear_input input, linear_weight *out);

/* Called with each of a layer's other linears. */
typedef void (*linear_visitor)(const linear_weight *w, void *user);

/* Every decoder Linear of layer l that linears_of does not list, in a fixed order: each routed
 * expert's gate/up/down and the shared expert's (MoE: Mixtral, Qwen-MoE, GLM-4.5, DeepSeek-V3,
 * Nemotron-H, gpt-oss and Llama-4 experts, held per expert as [out, in]); MLA's q_proj or
 * q_a_proj/q_b_proj, kv_a_proj_with_mqa, kv_b_proj; Mamba-2's in_proj/out_proj; the gated
 * DeltaNet's in_proj_qkvz/in_proj_ba/out_proj; Qwen3-Next's q_proj output-gate rows. The MoE
 * routers and the shared-expert gate are not visited (vLLM never quantizes them). */
void other_linears_visit(const model *m, int l, linear_visitor visit, void *user);

/* Every decoder Linear of layer l: linears_of's for each input, then other_linears_visit's. */
void decoder_linears_visit(const model *m, int l, linear_visitor visit, void *user);

/* Element i of a weight, widened to double. */
static inline double linear_weight_at(const model *m, const linear_weight *w, size_t i) {
  return m->f32 ? ((const float *)w->weight)[i] : ((const double *)w->weight)[i];
}

#endif
