/* Quantizing a loaded model as QuaRot does: the activation settings of its forward pass
 * (model_options.quant, model_set_activation_quant), and the weights of its decoder linears by
 * RTN or GPTQ, fake-quantized in place. Embeddings and lm_head stay in full precision. */
#ifndef ROTQ_EVAL_QUANTIZE_MODEL_H
#define ROTQ_EVAL_QUANTIZE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "eval/token_file.h"

typedef enum weight_method { WEIGHT_RTN, WEIGHT_GPTQ } weight_method;

typedef struct weight_quant {
  int bits; /* 2..8; 16 (or 0) = off */
  weight_method method;
  int group;      /* input columns per scale; 0 = per output channel */
  bool act_order; /* GPTQ: columns of largest Hessian diagonal first */
  double damp;    /* GPTQ: relative damping of the Hessian; 0 = 0.01 */
  int format;     /* quant_format: 0 = int (bits); fp8, mxfp4, nvfp4 (RTN only; bits ignored) */
} weight_quant;

/* GPTQ's calibration tokens: each segment of tokens, its first ctx tokens. */
typedef struct calibration_set {
  const int32_t *tokens;
  const token_segment *segments;
  size_t segment_count;
  int ctx;
} calibration_set;

/* Called after each decoder layer is quantized. */
typedef void (*quantize_progress)(int done, int layers, void *user);

/* Fake-quantizes every decoder Linear in place (routers and shared-expert gates excepted): the
 * dense q/k/v/o/gate/up/down_proj by RTN or GPTQ, the others (MoE experts, MLA, Mamba, DeltaNet:
 * other_linears_visit) by RTN always, before GPTQ starts. GPTQ goes layer by layer and,
 * within a layer, in the reference's order (q/k/v, o, gate/up, down): each group's Hessian comes
 * from its inputs on the calibration set, computed with everything before it already quantized
 * and with activation quantization off. calibration is needed for GPTQ only; progress may be
 * NULL. */
int model_quantize_weights(model *m, const weight_quant *quant, const calibration_set *calibration,
                           quantize_progress progress, void *user, rotq_error *err);

#endif
