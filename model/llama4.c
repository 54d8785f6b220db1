/* Llama-4 text's feed-forward blocks and attention features (see llama4.h). */
#include "model/llama4.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/load_weight.h"
#include "model/rope.h"
#include "model/transformer.h"

/* A number field of object, fallback when absent or null. */
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

/* The layer's entry of the integer list `key` (absent or null: -1); an error when not a list of
 * num_hidden_layers (list_per_layer) or of layer indices. */
static int list_item(const model_config *c, const char *key, int layer, bool per_layer, int *value, rotq_error *err) {
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(c->json, key);
  *value = -1;
  if (!list || cJSON_IsNull(list)) return 0;
  if (!cJSON_IsArray(list) || (per_layer && cJSON_GetArraySize(list) != c->num_hidden_layers))
    return rotq_fail(err, "%s: field '%s' is not a list%s", c->path, key, per_layer ? " with one entry per layer" : "");
  if (per_layer) {
    const cJSON *item = cJSON_GetArrayItem(list, layer);
    if (!cJSON_IsNumber(item)) return rotq_fail(err, "%s: field '%s' holds a non-number", c->path, key);
    *value = (int)item->valuedouble;
    return 0;
  }
  const cJSON *item;
  *value = 0;
  cJSON_ArrayForEach(item, list) {
    if (!cJSON_IsNumber(item)) return rotq_fail(err, "%s: field '%s' holds a non-number", c->path, key);
    if ((int)item->valuedouble == layer) *value = 1;
  }
  return 0;
}

/* Is layer an MoE layer: moe_layers, else every interleave_moe_layer_step-th (step − 1, 2·step − 1, ...). */
static int is_moe_layer(const model_config *c, int layer, bool *moe, rotq_error *err) {
  int listed;
  if (list_item(c, "moe_layers", layer, false, &listed, err) != 0) return -1;
  if (listed >= 0) return *moe = listed == 1, 0;
  double step;
  if (number_in(c, c->json, "interleave_moe_layer_step", 1, &step, err) != 0) return -1;
  if (step < 1 || step != floor(step))
    return rotq_fail(err, "%s: field 'interleave_moe_layer_step' must be a positive integer", c->path);
  *moe = (layer + 1) % (int)step == 0;
  return 0;
}

/* "<prefix>.<layer>.<relative>" [rows, cols] (cols 0: a vector) in the compute type. */
static int read_layer(const checkpoint *ck, const family_descriptor *f, bool f32, int layer, const char *relative,
                      int64_t rows, int64_t cols, void **out, rotq_error *err) {
  char name[320];
  family_layer_module(f, layer, relative, name, sizeof name);
  return model_read_weight(ck, f32, name, rows, cols, out, err);
}

/* An [rows, cols] matrix of the compute type, element (r, c) = src[r·stride_r + c]. */
static void *gather(const double *src, size_t rows, size_t cols, size_t stride_r, size_t stride_c, bool f32) {
  size_t count = rows * cols;
  void *out = malloc((f32 ? sizeof(float) : sizeof(double)) * (count ? count : 1));
  for (size_t r = 0; out && r < rows; r++)
    for (size_t c = 0; c < cols; c++) {
      double v = src[r * stride_r + c * stride_c];
      if (f32)
        ((float *)out)[r * cols + c] = (float)v;
      else
        ((double *)out)[r * cols + c] = v;
    }
  return out;
}

/* The fused experts [E, hidden, 2·inter] and [E, inter, hidden] split into per-expert [out, in]. */
static int read_experts(const checkpoint *ck, const family_descriptor *f, bool f32, int layer, moe_weights *moe,
                        rotq_error *err) {
  const int64_t E = moe->experts, H = ck->config.hidden_size, I = moe->intermediate;
  char rel[160], name[320];
  double *gate_up = NULL, *down = NULL;
  snprintf(rel, sizeof rel, "%s.gate_up_proj", f->names.experts);
  family_layer_module(f, layer, rel, name, sizeof name);
  const st_tensor *t = checkpoint_find(ck, name);
  int rc = 0;
  if (!t || t->ndim != 3 || t->shape[0] != E || t->shape[1] != H || t->shape[2] != 2 * I)
    rc = rotq_fail(err, "%s: tensor '%s' is missing or not [%lld, %lld, %lld] (config.json)", ck->dir, name,
                   (long long)E, (long long)H, (long long)(2 * I));
  if (rc == 0) rc = checkpoint_read_f64(ck, name, (size_t)(E * H * 2 * I), &gate_up, err);
  snprintf(rel, sizeof rel, "%s.down_proj", f->names.experts);
  family_layer_module(f, layer, rel, name, sizeof name);
  t = checkpoint_find(ck, name);
  if (rc == 0 && (!t || t->ndim != 3 || t->shape[0] != E || t->shape[1] != I || t->shape[2] != H))
    rc = rotq_fail(err, "%s: tensor '%s' is missing or not [%lld, %lld, %lld] (config.json)", ck->dir, name,
                   (long long)E, (long long)I, (long long)H);
  if (rc == 0) rc = checkpoint_read_f64(ck, name, (size_t)(E * I * H), &down, err);
  for (int64_t e = 0; rc == 0 && e < E; e++) {
    expert_weights *x = &moe->expert[e];
    const double *gu = gate_up + e * H * 2 * I;
    x->w_gate = gather(gu, (size_t)I, (size_t)H, 1, (size_t)(2 * I), f32);   /* columns [0, I) */
    x->w_up = gather(gu + I, (size_t)I, (size_t)H, 1, (size_t)(2 * I), f32); /* columns [I, 2I) */
    x->w_down = gather(down + e * I * H, (size_t)H, (size_t)I, 1, (size_t)H, f32);
    if (!x->w_gate || !x->w_up || !x->w_down) rc = rotq_fail(err, "out of memory");
  }
  free(gate_up);
  free(down);
  return rc;
}

int llama4_read_moe(const checkpoint *ck, const family_descriptor *f, bool f32, int layer, moe_weights **out,
                    rotq_error *err) {
  *out = NULL;
  const model_config *c = &ck->config;
  moe_weights *moe = calloc(1, sizeof *moe);
  if (!moe) return rotq_fail(err, "out of memory");
  bool sparse = false;
  double experts = 16, top_k = 1, dense = 16384;
  int rc = is_moe_layer(c, layer, &sparse, err);
  if (rc == 0)
    rc = number_in(c, c->json, "num_local_experts", 16, &experts, err) ||
                 number_in(c, c->json, "num_experts_per_tok", 1, &top_k, err) ||
                 number_in(c, c->json, "intermediate_size_mlp", 16384, &dense, err)
             ? -1
             : 0;
  if (rc == 0 && (experts < 1 || top_k < 1 || top_k > experts || dense < 1))
    rc = rotq_fail(err, "%s: num_experts_per_tok %g of num_local_experts %g, intermediate_size_mlp %g", c->path, top_k,
                   experts, dense);
  moe->llama4 = true;
  moe->experts = sparse ? (int)experts : 0;
  moe->top_k = (int)top_k;
  moe->intermediate = c->intermediate_size;
  moe->shared_intermediate = sparse ? c->intermediate_size : (int)dense;
  const char *shared = sparse ? f->names.shared_expert : NULL; /* the dense MLP: feed_forward.*_proj */
  char gate[160], up[160], down[160];
  snprintf(gate, sizeof gate, "%s.gate_proj.weight", shared ? shared : "feed_forward");
  snprintf(up, sizeof up, "%s.up_proj.weight", shared ? shared : "feed_forward");
  snprintf(down, sizeof down, "%s.down_proj.weight", shared ? shared : "feed_forward");
  const int64_t H = c->hidden_size, S = moe->shared_intermediate;
  if (rc == 0) rc = read_layer(ck, f, f32, layer, gate, S, H, &moe->shared.w_gate, err);
  if (rc == 0) rc = read_layer(ck, f, f32, layer, up, S, H, &moe->shared.w_up, err);
  if (rc == 0) rc = read_layer(ck, f, f32, layer, down, H, S, &moe->shared.w_down, err);
  if (rc == 0 && sparse) {
    char router[160];
    snprintf(router, sizeof router, "%s.weight", f->names.router);
    rc = read_layer(ck, f, f32, layer, router, moe->experts, H, &moe->router, err);
    if (rc == 0 && !(moe->expert = calloc((size_t)moe->experts, sizeof *moe->expert)))
      rc = rotq_fail(err, "out of memory");
    if (rc == 0) rc = read_experts(ck, f, f32, layer, moe, err);
  }
  if (rc != 0) {
    moe_free(moe);
    return -1;
  }
  *out = moe;
  return 0;
}

/* RoPE from rope_parameters (transformers 5): default, or llama3 (factor, low/high_freq_factor,
 * original_max_position_embeddings) as rope_inv_freq computes it. */
static int configure_rope(const model_config *c, model *m, rotq_error *err) {
  const cJSON *rope = cJSON_GetObjectItemCaseSensitive(c->json, "rope_parameters");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(rope, "rope_type");
  if (!cJSON_IsString(type) || !strcmp(type->valuestring, "default")) return 0;
  if (strcmp(type->valuestring, "llama3") != 0)
    return rotq_fail(err, "%s: rope_parameters.rope_type '%s' is not supported for Llama-4 (default, llama3)", c->path,
                     type->valuestring);
  model_config scaled = *c;
  double original;
  snprintf(scaled.rope.type, sizeof scaled.rope.type, "llama3");
  if (number_in(c, rope, "factor", 0, &scaled.rope.factor, err) ||
      number_in(c, rope, "low_freq_factor", 0, &scaled.rope.low_freq_factor, err) ||
      number_in(c, rope, "high_freq_factor", 0, &scaled.rope.high_freq_factor, err) ||
      number_in(c, rope, "original_max_position_embeddings", 0, &original, err))
    return -1;
  scaled.rope.original_max_position_embeddings = (int)original;
  return rope_inv_freq(&scaled, m->inv_freq, err);
}

int llama4_configure(const checkpoint *ck, model *m, rotq_error *err) {
  const model_config *c = &ck->config;
  const int layers = c->num_hidden_layers;
  double chunk, interval;
  if (number_in(c, c->json, "attention_chunk_size", 8192, &chunk, err) != 0 ||
      number_in(c, c->json, "no_rope_layer_interval", 4, &interval, err) != 0 ||
      number_in(c, c->json, "floor_scale", 8192, &m->floor_scale, err) != 0 ||
      number_in(c, c->json, "attn_scale", 0.1, &m->attn_scale, err) != 0)
    return -1;
  if (chunk < 0 || chunk != floor(chunk) || interval < 1 || !(m->floor_scale > 0))
    return rotq_fail(err, "%s: attention_chunk_size, no_rope_layer_interval or floor_scale out of range", c->path);
  const cJSON *tuning = cJSON_GetObjectItemCaseSensitive(c->json, "attn_temperature_tuning");
  if (tuning && !cJSON_IsNull(tuning) && !cJSON_IsTrue(tuning)) m->floor_scale = 0; /* off */
  m->l2_qk_norm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c->json, "use_qk_norm"));
  m->rope_pairs = true;
  m->layer_nope = calloc((size_t)layers, sizeof *m->layer_nope);
  m->layer_chunk = calloc((size_t)layers, sizeof *m->layer_chunk);
  if (!m->layer_nope || !m->layer_chunk) return rotq_fail(err, "out of memory");
  const cJSON *types = cJSON_GetObjectItemCaseSensitive(c->json, "layer_types");
  if (types && !cJSON_IsNull(types) && (!cJSON_IsArray(types) || cJSON_GetArraySize(types) != layers))
    return rotq_fail(err, "%s: field 'layer_types' is not a list of %d layer types", c->path, layers);
  for (int l = 0; l < layers; l++) {
    int rope;
    if (list_item(c, "no_rope_layers", l, true, &rope, err) != 0) return -1;
    if (rope < 0) rope = (l + 1) % (int)interval != 0;
    m->layer_nope[l] = rope == 0;
    bool chunked = rope != 0;
    if (types && !cJSON_IsNull(types)) {
      const cJSON *t = cJSON_GetArrayItem(types, l);
      if (!cJSON_IsString(t) ||
          (strcmp(t->valuestring, "chunked_attention") && strcmp(t->valuestring, "full_attention")))
        return rotq_fail(err, "%s: layer_types[%d] is not \"chunked_attention\" or \"full_attention\"", c->path, l);
      chunked = !strcmp(t->valuestring, "chunked_attention");
    }
    m->layer_chunk[l] = chunked && chunk > 0 ? (int)chunk : 0;
  }
  return configure_rope(c, m, err);
}
