/* Nemotron-H (NemotronHForCausalLM) as its modeling file computes it: a hybrid whose layers are
 * given by hybrid_override_pattern — M: a Mamba-2 mixer, *: attention (GQA, no positional
 * encoding), -: an MLP down(relu(up(x))²) — each as x += mixer(rmsnorm(x)); embeddings
 * backbone.embeddings, final norm backbone.norm_f, lm_head.
 *
 * The Mamba-2 mixer of h [n, hidden]: in_proj(h) splits into z [inter], xBC [conv_dim] and dt [heads]
 * (inter = mamba_num_heads·mamba_head_dim, conv_dim = inter + 2·n_groups·ssm_state_size); xBC goes
 * through the causal depthwise conv1d (kernel conv_kernel, bias) and SiLU and splits into x [heads,
 * head_dim], B and C [n_groups, state]; with dt ← softplus(dt + dt_bias) (clamped to
 * time_step_limit) and A = −exp(A_log), each head h (group h / (heads / n_groups)) runs
 *   S_t = exp(dt_t·A)·S_{t−1} + dt_t·x_t ⊗ B_t,  y_t = S_t·C_t + D·x_t;
 * then y ← RMSNorm over groups of inter / n_groups of y·silu(z), times norm.weight (gated RMSNorm,
 * norm_before_gate false), and out_proj(y). transformers' chunked scan computes the same
 * recurrence. Only fresh sequences are supported (no incremental Mamba state). */
#ifndef ROTQ_MODEL_NEMOTRON_H_H
#define ROTQ_MODEL_NEMOTRON_H_H

#include <stdbool.h>

#include "family/family.h"
#include "io/checkpoint.h"

struct model;
struct layer_weights;

typedef struct mamba_weights {
  int heads, head_dim, state, groups,
      kernel;                     /* mamba_num_heads, mamba_head_dim, ssm_state_size, n_groups, conv_kernel */
  double dt_min, dt_max;          /* time_step_limit */
  void *in_proj, *in_proj_bias;   /* [inter + conv_dim + heads, hidden], bias or NULL */
  void *conv_weight, *conv_bias;  /* conv1d [conv_dim, 1, kernel], bias [conv_dim] or NULL */
  void *dt_bias, *a_log, *d;      /* [heads] */
  void *norm;                     /* gated RMSNorm weight [inter] */
  void *out_proj, *out_proj_bias; /* [hidden, inter], bias or NULL */
} mamba_weights;

/* Checks config.json's hybrid fields and sets intermediate_size's use; sets m->hybrid. */
int nemotron_h_configure(const checkpoint *ck, struct model *m, rotq_error *err);
/* Reads every weight of a Nemotron-H checkpoint into m (m->inv_freq is zeroed: no RoPE); the
 * tensor names' layer prefix, embedding, final norm and lm_head are f's (family/nemotron_h.c). */
int nemotron_h_read_weights(const checkpoint *ck, const family_descriptor *f, struct model *m, rotq_error *err);
void mamba_free(mamba_weights *mamba);

#endif
