/* `rotq quantize --method gptq`: the compressed-tensors checkpoint of rotate/quantize_command.h with
 * the codes and scales GPTQ chose (eval/gptq.h's gptq_quantize_format) instead of RTN's, for the int
 * schemes (W4A16 symmetric and asymmetric, W8A8). Layer by layer, memory bounded: the residual
 * stream of every calibration segment stays in memory (float64, segments × ctx × hidden); the
 * decoder layers are read from the checkpoint one at a time (model_load_layer). In each layer the
 * linears are quantized in the GPTQ reference's sequential order — q/k/v, then o, then gate/up,
 * then down — each group's Hessian H = Σ x·xᵀ taken over the calibration tokens at its input with
 * the earlier groups of the layer already quantized (activations in full precision); the segments
 * then run through the quantized layer to give the next layer's input. Peak memory ≈ the
 * calibration activations + one layer in float64 + the largest Hessian three times (H, its copy,
 * GPTQ's scratch) + one byte per weight of the layer's codes. The LLaMA-layout decoders only
 * (Llama, Mistral, Qwen2, Qwen3; model_options.layers_on_demand); online rotations recorded in
 * rotation.json are applied as in rotq eval. No act_order. */
#ifndef ROTQ_ROTATE_QUANTIZE_GPTQ_H
#define ROTQ_ROTATE_QUANTIZE_GPTQ_H

#include <stddef.h>

#include "rotate/quantize_command.h"

typedef struct gptq_settings {
  const char *calib_path; /* token file (uint16 ids, segments start at BOS) */
  size_t calib_n;         /* its last calib_n segments (0 = 128) */
  int ctx;                /* the first ctx tokens of each (0 = 512) */
  double damp;            /* relative damping of H (0 = 0.01) */
  /* After each decoder layer is quantized (may be NULL). */
  void (*progress)(int layers_done, int layers, void *user);
  void *user;
} gptq_settings;

/* quantize_compressed (o->source must be NULL) with GPTQ's weights. Refuses a scheme that is not
 * an int scheme, a missing or empty calibration file and an architecture it cannot run a layer at
 * a time, before any output is created. */
int quantize_compressed_gptq(const quantize_options *o, const gptq_settings *g, quantize_result *result,
                             rotq_error *err);

#endif
