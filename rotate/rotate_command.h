/* RotateCommand: what the processor does to one output tensor. The seed's pre_run turns the
 * adapter's fuse map, bake names and rotate pairs into one command per tensor; preprocess(layer)
 * filters the commands of "model.layers.{i}" and executes them. A command composes, in order:
 *
 *   fuse norm      W[:, j] *= g[j]             (g: the RMSNorm weight feeding this linear)
 *   bake mean      W ← W − mean over rows      (residual writers of LayerNorm models)
 *   rotate         W ← Routᵀ · W · Rin         (Rin per length-n segment of each row,
 *                                               Rout per group of n rows; a bias b ← Routᵀ·b)
 *   online         W ← W · Ronline             (the weight half of an online rotation)
 *
 * or resets a fused norm's weight to its identity value. Everything else is copied bit for bit. */
#ifndef ROTQ_ROTATE_ROTATE_COMMAND_H
#define ROTQ_ROTATE_ROTATE_COMMAND_H

#include <stdbool.h>
#include <stddef.h>

#include "rotate/adapter.h"
#include "config/rotation_config.h"
#include "io/checkpoint.h"
#include "linalg/rotation.h"
#include "rotate/rotation_set.h"

#define TENSOR_NAME_MAX 256

typedef enum online_kind {
  ONLINE_NONE,
  ONLINE_INPUT,       /* W ← W·R (R4 on down_proj: a Kronecker R_m ⊗ R_n) */
  ONLINE_INPUT_HEADS, /* W ← W·(R_heads ⊗ I_head_dim) (o_proj input) */
} online_kind;

typedef struct rotate_command {
  char name[TENSOR_NAME_MAX];      /* output tensor */
  char source[TENSOR_NAME_MAX];    /* input tensor it is computed from (lm_head of a tied model: the embedding) */
  int layer;                       /* decoder layer, -1 for pre-run tensors */
  bool is_bias;                    /* a linear's bias [out] (or a fused experts' "<module>_bias" [experts, out]):
                                      only the output side acts on it */
  bool in_out;                     /* a 3-D [experts, in, out] weight (the adapter's in_out_layout): Rin acts
                                      as W_e ← Rinᵀ·W_e on each expert's rows, Rout as W_e ← W_e·Rout on each
                                      row, a fused norm scales rows */
  bool out_in_source;              /* an in_out weight whose source is stored [experts, out, in] (gpt-oss's
                                      MXFP4 release: P_blocks/P_scales per output row): each expert is
                                      transformed as an [out, in] weight and written transposed, so the
                                      output is [experts, in, out] as transformers' bf16 layout */
  bool reset_norm;                 /* a fused norm weight: becomes the identity (1, or 0 for 1+w norms) */
  char fuse_norm[TENSOR_NAME_MAX]; /* norm weight multiplied into this weight's columns, "" = none */
  bool bake_mean;
  /* LayerNorm families (NORM_LAYER): */
  char fold_norm_bias[TENSOR_NAME_MAX]; /* a reader's bias b ← b + W·β: β (the norm's bias), "" = none */
  char fold_weight[TENSOR_NAME_MAX];    /*   and W, the reader's original weight */
  bool keep_norm_bias;                  /* a norm bias whose readers have no bias (lm_head): kept as
                                           β ← (β / γ)·R1, fuse_norm naming γ */
  const double *reflection;             /* unit w: R1 is used as R1·(I − 2wwᵀ), which maps the ones
                                           direction to itself (LayerNorm's centring stays a no-op);
                                           on the input and/or output side, as reflect_* say */
  bool reflect_input, reflect_output;
  const rotation *input;                   /* Rin, or NULL */
  const rotation *output;                  /* Rout, or NULL */
  long output_row_begin, output_row_count; /* Rout acts on these rows only (count 0: all rows): the V rows of a
                                              fused qkv_proj */
  long output_row_stride;                  /* > 0: on rows [k·stride + begin, k·stride + begin + count) for every
                                              k < rows / stride instead (each head's value rows of MLA's kv_b_proj) */
  char input_name[CONFIG_NAME_MAX], output_name[CONFIG_NAME_MAX]; /* matrix names, for the record */
  online_kind online;
  const rotation *online_rotation;
} rotate_command;

typedef struct command_list {
  rotate_command *items;
  size_t count, capacity;
  double *reflection; /* owned: the LayerNorm families' w (see rotate_command) */
  int warning_count;
  char warnings[16][512]; /* rules that matched nothing, ... (also printed) */
} command_list;

/* get_rotate_command, in two steps around the online processor's plan (rotate/online_processor.h):
 * commands_build makes one command per output tensor, from the adapter, the config and the
 * matrices (each rule's matrices resolved, their dims dividing the tensor sizes); once every
 * rotation of the plan is attached (the online ones too), commands_complete checks the sizes
 * (online rotations included), builds the fuse map (and the LayerNorm families' commands) and
 * checks the equivalence invariants (one R1 on every residual reader, writer and the embedding;
 * every fused norm's readers rotated alike; each v_proj output rotation equal to its o_proj input
 * rotation; online rotations only on the inputs of down_proj and o_proj weights), failing naming
 * the tensor if broken. Both free *out on failure. */
int commands_build(const checkpoint *ck, const model_adapter *adapter, const rotation_config *config,
                   const rotation_set *set, command_list *out, rotq_error *err);
int commands_complete(command_list *list, const checkpoint *ck, const model_adapter *adapter,
                      const rotation_config *config, rotq_error *err);
void commands_free(command_list *list);
rotate_command *commands_find(const command_list *list, const char *name);
/* The module of a tensor, its name without ".weight" / ".bias", into module; *is_bias for a bias.
 * A fused experts' bias "<x>_proj_bias" (gpt-oss: mlp.experts.down_proj_bias) is the bias of module
 * "<x>_proj" (a 3-D weight named without a suffix). False (module = the name) when the name has
 * none of these suffixes. */
bool tensor_module(const char *tensor, char *module, size_t cap, bool *is_bias);
/* The equivalence invariants of the plan (commands_complete's last step). */
int commands_check(const command_list *list, const model_adapter *adapter, rotq_error *err);

#endif
