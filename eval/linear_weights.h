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

/* Element i of a weight, widened to double. */
static inline double linear_weight_at(const model *m, const linear_weight *w, size_t i) {
  return m->f32 ? ((const float *)w->weight)[i] : ((const double *)w->weight)[i];
}

#endif
