/* The activation quantization settings of the forward pass (model/model.h): defaults and checks. */
#include "linalg/quantize.h"
#include "model/transformer.h"

int activation_quant_resolve(const activation_quant *in, int head_dim, activation_quant *out, rotq_error *err) {
  activation_quant q = in ? *in : (activation_quant){0};
  if (q.abits == 0) q.abits = QUANT_OFF;
  if (q.kvbits == 0) q.kvbits = QUANT_OFF;
  if (q.a_clip == 0) q.a_clip = 0.9;
  if (q.kv_clip == 0) q.kv_clip = 0.95;
  if (q.kv_group == 0) q.kv_group = head_dim;
  if (q.aformat < QUANT_INT || q.aformat > QUANT_NVFP4)
    return rotq_fail(err, "activation format %d is unknown", q.aformat);
  if (!quant_bits_valid(q.abits) || !quant_bits_valid(q.kvbits))
    return rotq_fail(err, "activation bits %d / KV bits %d: each must be 2..8, or 16 for off", q.abits, q.kvbits);
  if (!(q.a_clip > 0 && q.a_clip <= 1) || !(q.kv_clip > 0 && q.kv_clip <= 1))
    return rotq_fail(err, "clip ratios must be in (0, 1] (activations %g, KV %g)", q.a_clip, q.kv_clip);
  if (q.a_group < 0) return rotq_fail(err, "activation group %d is negative", q.a_group);
  if (q.kv_group < 1 || head_dim % q.kv_group != 0)
    return rotq_fail(err, "KV group %d does not divide head_dim %d", q.kv_group, head_dim);
  *out = q;
  return 0;
}

int model_set_activation_quant(model *m, const activation_quant *quant, rotq_error *err) {
  return activation_quant_resolve(quant, m->config.head_dim, &m->quant, err);
}
