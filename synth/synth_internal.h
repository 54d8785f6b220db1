/* Inside synth/: what synth.c and synth_families.c share — the tensor plan of a synthetic
 * checkpoint and its writer. synth.c writes the LLaMA family; synth_families.c plans the other
 * families (MoE, Phi-3, Gemma, OPT, Nemotron-H) and hands the plan back to the same writer.
 * synth_write finds the generator in the family registry (family/family.h). */
#ifndef ROTQ_SYNTH_SYNTH_INTERNAL_H
#define ROTQ_SYNTH_SYNTH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "family/family.h"
#include "synth/synth.h"

typedef enum weight_kind {
  KIND_EMBEDDING,  /* N(0, 1/hidden) */
  KIND_LINEAR,     /* N(0, 1/in), in = the last dimension */
  KIND_NORM,       /* 1 + 0.2·N(0, 1) */
  KIND_BIAS,       /* 0.1·N(0, 1) */
  KIND_A_LOG,      /* Mamba A_log: log of U(1, 16) */
  KIND_DT_BIAS,    /* Mamba dt_bias: softplus⁻¹ of a step in [0.001, 0.1] (log-uniform) */
  KIND_SKIP,       /* Mamba D: 1 + 0.2·N(0, 1) */
  KIND_NORM_DELTA, /* Gemma's norm weights w (the norm scales by 1 + w): 0.2·N(0, 1) */
} weight_kind;

/* One tensor to write: its layout and how its values are drawn. */
typedef struct synth_tensor {
  char name[96];
  weight_kind kind;
  int ndim;
  int64_t shape[3]; /* [out, in], [n], or a conv1d's [channels, 1, kernel] */
} synth_tensor;

static inline size_t synth_numel(const synth_tensor *t) {
  size_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
  return n;
}

/* config.json's torch_dtype for a checkpoint written as t (FP8: its unquantized tensors' bfloat16). */
const char *synth_torch_dtype(dtype t);
/* The spec's head_dim, or hidden / heads when it leaves it 0. */
static inline int synth_head_dim(const synth_spec *s) {
  return s->head_dim ? s->head_dim : s->hidden_size / s->num_heads;
}
/* The spec's number of experts, or 4 when it leaves it 0. */
static inline int synth_experts(const synth_spec *s) { return s->num_experts ? s->num_experts : 4; }

/* Writes the tensors (values drawn from spec->seed and each name) as spec->dtype into dir. */
int synth_write_tensors(const synth_spec *spec, const synth_tensor *tensors, size_t count, const char *dir,
                        rotq_error *err);

/* The generators the family descriptors name (family/<family>.c): each checks the spec, creates
 * dir and writes config.json and the shards of variant v. synth.c: the LLaMA family;
 * synth_families.c: the others. */
family_synth_fn synth_llama, synth_mixtral, synth_qwen_moe, synth_phi3, synth_gemma, synth_opt, synth_nemotron_h,
    synth_glm4_moe, synth_deepseek_v3;

#endif
