/* gpt-oss's MoE block, sinks, layer windows and YaRN (see gpt_oss.h). */
#include "model/gpt_oss.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/transformer.h"

/* A number field of object (config.json or rope_parameters), fallback when absent or null. */
static int number_in(const model_config *c, const cJSON *object, const char *key, double fallback, double *value,
                     rotq_error *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
  if (!item || cJSON_IsNull(item)) {
    *value = fallback;
    return 0;
  }
  if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
    return rotq_fail(err, "%s: field '%s' is not a finite number", c->path, key);
  *value = item->valuedouble;
  return 0;
}

/* Tensor "<prefix>.<layer>.<relative>" of shape [d0, d1, d2] (trailing zeros drop dimensions) as
 * doubles. */
static int read_tensor(const checkpoint *ck, const family_descriptor *f, int layer, const char *relative, int64_t d0,
                       int64_t d1, int64_t d2, double **out, rotq_error *err) {
  char name[320];
  family_layer_module(f, layer, relative, name, sizeof name);
  const st_tensor *t = checkpoint_find(ck, name);
  if (!t) return rotq_fail(err, "%s: tensor '%s' is missing", ck->dir, name);
  /* MXFP4 experts (the release checkpoints) are stored per output row: [E, out, in] */
  const bool transposed = d2 && t->scaling == ST_SCALE_MXFP4;
  const int64_t want[3] = {d0, transposed ? d2 : d1, transposed ? d1 : d2};
  int ndim = d2 ? 3 : d1 ? 2 : 1;
  bool ok = t->ndim == ndim;
  for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == want[i];
  if (!ok)
    return rotq_fail(err,
                     "%s: tensor '%s' does not have the shape config.json gives ([%lld, %lld, %lld] without zeros)",
                     ck->dir, name, (long long)want[0], (long long)want[1], (long long)want[2]);
  size_t count = (size_t)d0 * (size_t)(d1 ? d1 : 1) * (size_t)(d2 ? d2 : 1);
  if (checkpoint_read_f64(ck, name, count, out, err) != 0) return -1;
  if (!transposed) return 0;
  double *t_out = malloc(sizeof(double) * count);
  if (!t_out) return rotq_fail(err, "out of memory");
  for (int64_t e = 0; e < d0; e++) /* [d2, d1] → [d1, d2] per expert */
    for (int64_t i = 0; i < d1; i++)
      for (int64_t j = 0; j < d2; j++) t_out[(e * d1 + i) * d2 + j] = (*out)[(e * d2 + j) * d1 + i];
  free(*out);
  *out = t_out;
  return 0;
}

/* values [count] as the compute type (a copy, or values itself for doubles). */
static void *compute_copy(double *values, size_t count, bool f32) {
  if (!f32) return values;
  float *out = malloc(sizeof(float) * (count ? count : 1));
  for (size_t i = 0; out && i < count; i++) out[i] = (float)values[i];
  free(values);
  return out;
}

/* An [rows, cols] matrix of the compute type, element (r, c) = src[r·stride_r + c·stride_c]. */
static void *gather(const double *src, size_t rows, size_t cols, size_t stride_r, size_t stride_c, bool f32) {
  double *out = malloc(sizeof(double) * rows * cols);
  for (size_t r = 0; out && r < rows; r++)
    for (size_t c = 0; c < cols; c++) out[r * cols + c] = src[r * stride_r + c * stride_c];
  return out ? compute_copy(out, rows * cols, f32) : NULL;
}

/* Expert e of the fused tensors: gate/up rows from gate_up [E, hidden, 2·inter]'s even/odd columns
 * (transposed to [inter, hidden]), down from down [E, inter, hidden] (transposed to [hidden, inter]). */
static int split_expert(const double *gate_up, const double *gate_up_bias, const double *down, const double *down_bias,
                        size_t e, size_t hidden, size_t inter, bool f32, expert_weights *x) {
  const double *gu = gate_up + e * hidden * 2 * inter, *gub = gate_up_bias + e * 2 * inter;
  x->w_gate = gather(gu, inter, hidden, 2, 2 * inter, f32);
  x->w_up = gather(gu + 1, inter, hidden, 2, 2 * inter, f32);
  x->b_gate = gather(gub, inter, 1, 2, 1, f32);
  x->b_up = gather(gub + 1, inter, 1, 2, 1, f32);
  x->w_down = gather(down + e * inter * hidden, hidden, inter, 1, hidden, f32);
  x->b_down = gather(down_bias + e * hidden, hidden, 1, 1, 1, f32);
  return x->w_gate && x->w_up && x->b_gate && x->b_up && x->w_down && x->b_down ? 0 : -1;
}

static int read_sizes(const model_config *c, moe_weights *moe, rotq_error *err) {
  long experts = 128, top_k = 4;
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(c->json, "num_local_experts");
  const cJSON *k = cJSON_GetObjectItemCaseSensitive(c->json, "num_experts_per_tok");
  if ((e && !cJSON_IsNull(e) && model_config_int(c, "num_local_experts", &experts, err) != 0) ||
      (k && !cJSON_IsNull(k) && model_config_int(c, "num_experts_per_tok", &top_k, err) != 0))
    return -1;
  if (experts < 1 || top_k < 1 || top_k > experts)
    return rotq_fail(err, "%s: num_experts_per_tok %ld of num_local_experts %ld", c->path, top_k, experts);
  if (number_in(c, c->json, "swiglu_alpha", 1.702, &moe->swiglu_alpha, err) != 0 ||
      number_in(c, c->json, "swiglu_limit", 7.0, &moe->swiglu_limit, err) != 0)
    return -1;
  moe->experts = (int)experts;
  moe->top_k = (int)top_k;
  moe->intermediate = c->intermediate_size;
  moe->gpt_oss = true;
  return 0;
}

int gpt_oss_read_moe(const checkpoint *ck, const family_descriptor *f, bool f32, int layer, moe_weights **out,
                     rotq_error *err) {
  *out = NULL;
  const model_config *c = &ck->config;
  moe_weights *moe = calloc(1, sizeof *moe);
  if (!moe) return rotq_fail(err, "out of memory");
  double *router = NULL, *router_bias = NULL, *gate_up = NULL, *gate_up_bias = NULL, *down = NULL, *down_bias = NULL;
  int rc = read_sizes(c, moe, err);
  const int64_t E = moe->experts, H = c->hidden_size, I = moe->intermediate;
  char rel[160];
  const char *n_router = f->names.router, *n_experts = f->names.experts;
  if (rc == 0) snprintf(rel, sizeof rel, "%s.weight", n_router);
  if (rc == 0) rc = read_tensor(ck, f, layer, rel, E, H, 0, &router, err);
  if (rc == 0) snprintf(rel, sizeof rel, "%s.bias", n_router);
  if (rc == 0) rc = read_tensor(ck, f, layer, rel, E, 0, 0, &router_bias, err);
  if (rc == 0) snprintf(rel, sizeof rel, "%s.gate_up_proj", n_experts);
  if (rc == 0) rc = read_tensor(ck, f, layer, rel, E, H, 2 * I, &gate_up, err);
  if (rc == 0) snprintf(rel, sizeof rel, "%s.gate_up_proj_bias", n_experts);
  if (rc == 0) rc = read_tensor(ck, f, layer, rel, E, 2 * I, 0, &gate_up_bias, err);
  if (rc == 0) snprintf(rel, sizeof rel, "%s.down_proj", n_experts);
  if (rc == 0) rc = read_tensor(ck, f, layer, rel, E, I, H, &down, err);
  if (rc == 0) snprintf(rel, sizeof rel, "%s.down_proj_bias", n_experts);
  if (rc == 0) rc = read_tensor(ck, f, layer, rel, E, H, 0, &down_bias, err);
  if (rc == 0 && !(moe->expert = calloc((size_t)E, sizeof *moe->expert))) rc = rotq_fail(err, "out of memory");
  for (int64_t e = 0; rc == 0 && e < E; e++)
    if (split_expert(gate_up, gate_up_bias, down, down_bias, (size_t)e, (size_t)H, (size_t)I, f32, &moe->expert[e]))
      rc = rotq_fail(err, "out of memory");
  if (rc == 0) {
    moe->router = compute_copy(router, (size_t)(E * H), f32);
    moe->router_bias = compute_copy(router_bias, (size_t)E, f32);
    router = router_bias = NULL;
    if (!moe->router || !moe->router_bias) rc = rotq_fail(err, "out of memory");
  }
  free(router), free(router_bias), free(gate_up), free(gate_up_bias), free(down), free(down_bias);
  if (rc != 0) {
    moe_free(moe);
    return -1;
  }
  *out = moe;
  return 0;
}

/* Each layer's window from layer_types (default: even layers sliding), sliding_window (default 128). */
static int read_windows(const model_config *c, model *m, rotq_error *err) {
  const int layers = c->num_hidden_layers;
  double window;
  if (number_in(c, c->json, "sliding_window", 128, &window, err) != 0) return -1;
  if (window < 1 || window > 1e9 || window != floor(window))
    return rotq_fail(err, "%s: field 'sliding_window' is not a positive integer", c->path);
  m->layer_window = calloc((size_t)layers, sizeof *m->layer_window);
  if (!m->layer_window) return rotq_fail(err, "out of memory");
  const cJSON *types = cJSON_GetObjectItemCaseSensitive(c->json, "layer_types");
  if (types && !cJSON_IsNull(types) && (!cJSON_IsArray(types) || cJSON_GetArraySize(types) != layers))
    return rotq_fail(err, "%s: field 'layer_types' is not a list of %d layer types", c->path, layers);
  for (int l = 0; l < layers; l++) {
    bool sliding = (l + 1) % 2 != 0;
    if (types && !cJSON_IsNull(types)) {
      const cJSON *t = cJSON_GetArrayItem(types, l);
      if (!cJSON_IsString(t) ||
          (strcmp(t->valuestring, "sliding_attention") && strcmp(t->valuestring, "full_attention")))
        return rotq_fail(err, "%s: layer_types[%d] is not \"sliding_attention\" or \"full_attention\"", c->path, l);
      sliding = !strcmp(t->valuestring, "sliding_attention");
    }
    m->layer_window[l] = sliding ? (int)window : 0;
  }
  return 0;
}

/* transformers' _compute_yarn_parameters (get_mscale, find_correction_range, linear_ramp_factor). */
static double yarn_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0; }

static double correction_dim(double rotations, int dim, double base, double max_positions) {
  return (dim * log(max_positions / (rotations * 2 * M_PI))) / (2 * log(base));
}

static int configure_yarn(const model_config *c, const cJSON *rope, model *m, rotq_error *err) {
  const int dim = c->head_dim, half = dim / 2;
  double factor, attention_factor, mscale, mscale_all, beta_fast, beta_slow, original;
  if (number_in(c, rope, "factor", 32, &factor, err) != 0 ||
      number_in(c, rope, "attention_factor", NAN, &attention_factor, err) != 0 ||
      number_in(c, rope, "mscale", 0, &mscale, err) != 0 || number_in(c, rope, "mscale_all_dim", 0, &mscale_all, err) ||
      number_in(c, rope, "beta_fast", 32, &beta_fast, err) != 0 ||
      number_in(c, rope, "beta_slow", 1, &beta_slow, err) != 0 ||
      number_in(c, rope, "original_max_position_embeddings", 4096, &original, err) != 0)
    return -1;
  if (beta_fast == 0) beta_fast = 32; /* `or 32` */
  if (beta_slow == 0) beta_slow = 1;
  if (!(factor > 0) || !(original > 0)) return rotq_fail(err, "%s: rope_parameters yarn needs factor > 0", c->path);
  if (isnan(attention_factor))
    attention_factor = mscale != 0 && mscale_all != 0 ? yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all)
                                                      : yarn_mscale(factor, 1);
  const cJSON *truncate = cJSON_GetObjectItemCaseSensitive(rope, "truncate");
  double low = correction_dim(beta_fast, dim, c->rope_theta, original);
  double high = correction_dim(beta_slow, dim, c->rope_theta, original);
  if (!cJSON_IsFalse(truncate)) low = floor(low), high = ceil(high);
  if (low < 0) low = 0;
  if (high > dim - 1) high = dim - 1;
  if (low == high) high += 0.001;
  for (int i = 0; i < half; i++) {
    double pos_freq = pow(c->rope_theta, 2.0 * i / dim);
    double ramp = (i - low) / (high - low);
    ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
    double extrapolation = 1 - ramp;
    m->inv_freq[i] = 1 / (factor * pos_freq) * (1 - extrapolation) + 1 / pos_freq * extrapolation;
  }
  m->rope_scale = attention_factor;
  return 0;
}

int gpt_oss_configure(const checkpoint *ck, const family_descriptor *f, model *m, rotq_error *err) {
  const model_config *c = &ck->config;
  for (int l = 0; l < c->num_hidden_layers; l++) {
    double *sinks = NULL;
    if (read_tensor(ck, f, l, "self_attn.sinks", c->num_attention_heads, 0, 0, &sinks, err) != 0) return -1;
    if (!(m->layers[l].sinks = compute_copy(sinks, (size_t)c->num_attention_heads, m->f32)))
      return rotq_fail(err, "out of memory");
  }
  if (read_windows(c, m, err) != 0) return -1;
  const cJSON *rope = cJSON_GetObjectItemCaseSensitive(c->json, "rope_parameters");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(rope, "rope_type");
  if (!cJSON_IsObject(rope) || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(rope, "rope_theta")))
    return rotq_fail(err, "%s: gpt-oss needs rope_parameters with rope_theta (as transformers 5 writes it)", c->path);
  if (!cJSON_IsString(type) || !strcmp(type->valuestring, "default")) return 0;
  if (strcmp(type->valuestring, "yarn") != 0)
    return rotq_fail(err, "%s: rope_parameters.rope_type '%s' is not supported for gpt-oss (default, yarn)", c->path,
                     type->valuestring);
  return configure_yarn(c, rope, m, err);
}
