/* Qwen3-Next's layer kinds, gated DeltaNet weights and gated q_proj (see qwen3_next.h). */
#include "model/qwen3_next.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/load_weight.h"

int qwen3_next_layer_is_linear(const model_config *c, int layer, bool *linear, rotq_error *err) {
  const cJSON *types = cJSON_GetObjectItemCaseSensitive(c->json, "layer_types");
  if (types && !cJSON_IsNull(types)) {
    if (!cJSON_IsArray(types) || cJSON_GetArraySize(types) != c->num_hidden_layers)
      return rotq_fail(err, "%s: field 'layer_types' is not a list of %d layer types", c->path, c->num_hidden_layers);
    const cJSON *t = cJSON_GetArrayItem(types, layer);
    if (!cJSON_IsString(t) || (strcmp(t->valuestring, "linear_attention") && strcmp(t->valuestring, "full_attention")))
      return rotq_fail(err, "%s: layer_types[%d] is not \"linear_attention\" or \"full_attention\"", c->path, layer);
    *linear = strcmp(t->valuestring, "linear_attention") == 0;
    return 0;
  }
  long interval = 4;
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(c->json, "full_attention_interval");
  if (item && !cJSON_IsNull(item) && model_config_int(c, "full_attention_interval", &interval, err) != 0) return -1;
  if (interval < 1) return rotq_fail(err, "%s: field 'full_attention_interval' must be at least 1", c->path);
  *linear = (layer + 1) % interval != 0;
  return 0;
}

/* A positive integer field of config.json, fallback when absent. */
static int int_field(const model_config *c, const char *key, long fallback, int *out, rotq_error *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(c->json, key);
  long value = fallback;
  if (item && !cJSON_IsNull(item) && model_config_int(c, key, &value, err) != 0) return -1;
  if (value < 1 || value > (1L << 24)) return rotq_fail(err, "%s: field '%s' must be a positive integer", c->path, key);
  *out = (int)value;
  return 0;
}

int qwen3_next_read_deltanet(const checkpoint *ck, const family_descriptor *f, bool f32, int l, deltanet_weights **out,
                             rotq_error *err) {
  const model_config *c = &ck->config;
  deltanet_weights *w = calloc(1, sizeof *w);
  if (!w) return rotq_fail(err, "out of memory");
  *out = w;
  if (!f->names.linear_attn)
    return rotq_fail(err, "%s: family %s names no linear attention module", ck->dir, f->family);
  if (int_field(c, "linear_num_key_heads", 16, &w->k_heads, err) ||
      int_field(c, "linear_num_value_heads", 32, &w->v_heads, err) ||
      int_field(c, "linear_key_head_dim", 128, &w->k_dim, err) ||
      int_field(c, "linear_value_head_dim", 128, &w->v_dim, err) ||
      int_field(c, "linear_conv_kernel_dim", 4, &w->kernel, err))
    return -1;
  if (w->v_heads % w->k_heads != 0)
    return rotq_fail(err, "%s: linear_num_value_heads %d is not a multiple of linear_num_key_heads %d", c->path,
                     w->v_heads, w->k_heads);
  const int64_t hidden = c->hidden_size, key_dim = (int64_t)w->k_heads * w->k_dim,
                value_dim = (int64_t)w->v_heads * w->v_dim, conv_dim = 2 * key_dim + value_dim;
  char prefix[200], name[256];
  family_layer_module(f, l, f->names.linear_attn, prefix, sizeof prefix);
  snprintf(name, sizeof name, "%s.in_proj_qkvz.weight", prefix);
  if (model_read_weight(ck, f32, name, 2 * key_dim + 2 * value_dim, hidden, &w->in_proj_qkvz, err) != 0) return -1;
  snprintf(name, sizeof name, "%s.in_proj_ba.weight", prefix);
  if (model_read_weight(ck, f32, name, 2 * (int64_t)w->v_heads, hidden, &w->in_proj_ba, err) != 0) return -1;
  snprintf(name, sizeof name, "%s.out_proj.weight", prefix);
  if (model_read_weight(ck, f32, name, hidden, value_dim, &w->out_proj, err) != 0) return -1;
  snprintf(name, sizeof name, "%s.conv1d.weight", prefix);
  const st_tensor *conv = checkpoint_find(ck, name);
  if (!conv || conv->ndim != 3 || conv->shape[0] != conv_dim || conv->shape[1] != 1 || conv->shape[2] != w->kernel)
    return rotq_fail(err, "%s: tensor '%s' is missing or not [%lld, 1, %d]", ck->dir, name, (long long)conv_dim,
                     w->kernel);
  size_t conv_numel = (size_t)conv_dim * (size_t)w->kernel;
  if ((f32 ? checkpoint_read_f32(ck, name, conv_numel, (float **)&w->conv_weight, err)
           : checkpoint_read_f64(ck, name, conv_numel, (double **)&w->conv_weight, err)) != 0)
    return -1;
  snprintf(name, sizeof name, "%s.conv1d.bias", prefix);
  if (checkpoint_find(ck, name))
    return rotq_fail(err, "%s: tensor '%s': the DeltaNet's conv1d has no bias in Qwen3-Next", ck->dir, name);
  snprintf(name, sizeof name, "%s.dt_bias", prefix);
  if (model_read_weight(ck, f32, name, w->v_heads, 0, &w->dt_bias, err) != 0) return -1;
  snprintf(name, sizeof name, "%s.A_log", prefix);
  if (model_read_weight(ck, f32, name, w->v_heads, 0, &w->a_log, err) != 0) return -1;
  snprintf(name, sizeof name, "%s.norm.weight", prefix);
  return model_read_weight(ck, f32, name, w->v_dim, 0, &w->norm, err);
}

int qwen3_next_read_gated_q(const checkpoint *ck, const family_descriptor *f, bool f32, int l, bool bias, void **wq,
                            void **bq, void **w_gate, void **b_gate, rotq_error *err) {
  const model_config *c = &ck->config;
  const int heads = c->num_attention_heads, head_dim = c->head_dim;
  const int64_t hidden = c->hidden_size, q_dim = (int64_t)heads * head_dim;
  const size_t element = f32 ? sizeof(float) : sizeof(double);
  char prefix[200], name[256];
  family_layer_module(f, l, f->names.q_proj, prefix, sizeof prefix);
  for (int part = 0; part < (bias ? 2 : 1); part++) {
    void *fused = NULL;
    const int64_t cols = part == 0 ? hidden : 1;
    snprintf(name, sizeof name, "%s.%s", prefix, part == 0 ? "weight" : "bias");
    if (model_read_weight(ck, f32, name, 2 * q_dim, part == 0 ? hidden : 0, &fused, err) != 0) return -1;
    void **query = part == 0 ? wq : bq, **gate = part == 0 ? w_gate : b_gate;
    *query = malloc((size_t)q_dim * (size_t)cols * element);
    *gate = malloc((size_t)q_dim * (size_t)cols * element);
    if (!*query || !*gate) {
      free(fused);
      return rotq_fail(err, "%s: out of memory", name);
    }
    /* q_proj(h).view(..., heads, 2·head_dim).chunk(2): per head, head_dim query rows then head_dim gate rows */
    const size_t block = (size_t)head_dim * (size_t)cols * element;
    for (int h = 0; h < heads; h++) {
      memcpy((char *)*query + h * block, (char *)fused + 2 * h * block, block);
      memcpy((char *)*gate + h * block, (char *)fused + (2 * h + 1) * block, block);
    }
    free(fused);
  }
  return 0;
}

void deltanet_free(deltanet_weights *w) {
  if (!w) return;
  void *all[] = {w->in_proj_qkvz, w->in_proj_ba, w->conv_weight, w->dt_bias, w->a_log, w->norm, w->out_proj};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
  free(w);
}
