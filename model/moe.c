/* Reading the MoE blocks of Mixtral, Qwen2-MoE and Qwen3-MoE checkpoints (see moe.h). */
#include "model/moe.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/gpt_oss.h"
#include "model/llama4.h"
#include "model/load_weight.h"

/* An integer field of config.json, fallback when absent (transformers' config defaults). */
static int int_field(const model_config *c, const char *key, long fallback, long minimum, long *value,
                     rotq_error *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(c->json, key);
  if (!item || cJSON_IsNull(item)) {
    *value = fallback;
    return 0;
  }
  if (model_config_int(c, key, value, err) != 0) return -1;
  if (*value < minimum) return rotq_fail(err, "%s: field '%s' must be at least %ld", c->path, key, minimum);
  return 0;
}

/* Qwen-MoE: a layer is sparse unless listed in mlp_only_layers or off the decoder_sparse_step. */
static int qwen_layer_is_sparse(const model_config *c, int layer, bool *sparse, rotq_error *err) {
  long step;
  if (int_field(c, "decoder_sparse_step", 1, 1, &step, err) != 0) return -1;
  *sparse = (layer + 1) % step == 0;
  const cJSON *only = cJSON_GetObjectItemCaseSensitive(c->json, "mlp_only_layers");
  if (only && !cJSON_IsNull(only) && !cJSON_IsArray(only))
    return rotq_fail(err, "%s: field 'mlp_only_layers' is not a list", c->path);
  const cJSON *item;
  cJSON_ArrayForEach(item, only) {
    if (!cJSON_IsNumber(item)) return rotq_fail(err, "%s: field 'mlp_only_layers' holds a non-number", c->path);
    if ((int)item->valuedouble == layer) *sparse = false;
  }
  return 0;
}

/* A positive finite number field of config.json, fallback when absent. */
static int double_field(const model_config *c, const char *key, double fallback, double *value, rotq_error *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(c->json, key);
  if (!item || cJSON_IsNull(item)) {
    *value = fallback;
    return 0;
  }
  if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble <= 0)
    return rotq_fail(err, "%s: field '%s' must be a positive number", c->path, key);
  *value = item->valuedouble;
  return 0;
}

/* GLM-4.5 and DeepSeek-V3 (their config classes' defaults when a field is absent): layers from first_k_dense_replace on
 * are sparse; n_routed_experts, n_shared_experts shared experts fused into one MLP of
 * moe_intermediate_size · n_shared_experts, DeepSeek-V3 routing (n_group, topk_group,
 * routed_scaling_factor, norm_topk_prob default true). */
static int glm4_sizes(const model_config *c, moe_kind kind, int layer, moe_weights *moe, bool *sparse,
                      rotq_error *err) {
  long dense, experts, top_k, intermediate, shared, groups, topk_group;
  const bool ds = kind == MOE_DEEPSEEK_V3; /* DeepseekV3Config's defaults, else Glm4MoeConfig's */
  if (int_field(c, "first_k_dense_replace", ds ? 3 : 1, 0, &dense, err) != 0 ||
      int_field(c, "n_routed_experts", ds ? 256 : 128, 1, &experts, err) != 0 ||
      int_field(c, "num_experts_per_tok", 8, 1, &top_k, err) != 0 ||
      int_field(c, "moe_intermediate_size", ds ? 2048 : 1408, 1, &intermediate, err) != 0 ||
      int_field(c, "n_shared_experts", 1, 1, &shared, err) != 0 ||
      int_field(c, "n_group", ds ? 8 : 1, 1, &groups, err) != 0 ||
      int_field(c, "topk_group", ds ? 4 : 1, 1, &topk_group, err) != 0 ||
      double_field(c, "routed_scaling_factor", ds ? 2.5 : 1.0, &moe->routed_scaling, err) != 0)
    return -1;
  *sparse = layer >= dense;
  if (experts % groups != 0 || topk_group > groups || (groups > 1 && experts / groups < 2))
    return rotq_fail(err,
                     "%s: n_group %ld / topk_group %ld do not divide n_routed_experts %ld into groups of two or more",
                     c->path, groups, topk_group, experts);
  if (top_k > topk_group * (experts / groups))
    return rotq_fail(err, "%s: num_experts_per_tok %ld exceeds the %ld experts of the topk_group kept groups", c->path,
                     top_k, topk_group * (experts / groups));
  const cJSON *norm = cJSON_GetObjectItemCaseSensitive(c->json, "norm_topk_prob");
  if (norm && !cJSON_IsNull(norm) && !cJSON_IsBool(norm))
    return rotq_fail(err, "%s: field 'norm_topk_prob' is not true or false", c->path);
  const cJSON *act = cJSON_GetObjectItemCaseSensitive(c->json, "mlp_bias");
  if (cJSON_IsTrue(act)) return rotq_fail(err, "%s: mlp_bias with MoE layers is not supported", c->path);
  moe->experts = (int)experts;
  moe->top_k = (int)top_k;
  moe->intermediate = (int)intermediate;
  moe->shared_intermediate = (int)(intermediate * shared);
  moe->n_group = (int)groups;
  moe->topk_group = (int)topk_group;
  moe->normalize_top_k = !cJSON_IsBool(norm) || cJSON_IsTrue(norm);
  moe->grouped_sigmoid = true;
  return 0;
}

static int read_expert(const checkpoint *ck, bool f32, const char *prefix, const char *const names[3], int64_t hidden,
                       int64_t intermediate, expert_weights *e, rotq_error *err) {
  char name[320];
  snprintf(name, sizeof name, "%s.%s.weight", prefix, names[0]);
  if (model_read_weight(ck, f32, name, intermediate, hidden, &e->w_gate, err) != 0) return -1;
  snprintf(name, sizeof name, "%s.%s.weight", prefix, names[1]);
  if (model_read_weight(ck, f32, name, intermediate, hidden, &e->w_up, err) != 0) return -1;
  snprintf(name, sizeof name, "%s.%s.weight", prefix, names[2]);
  return model_read_weight(ck, f32, name, hidden, intermediate, &e->w_down, err);
}

/* The block's sizes from config.json; *sparse false for a dense Qwen layer. */
static int read_sizes(const model_config *c, moe_kind kind, int layer, moe_weights *moe, bool *sparse,
                      rotq_error *err) {
  long experts, top_k, intermediate, shared = 0;
  bool mixtral = kind == MOE_MIXTRAL, next = kind == MOE_QWEN3_NEXT; /* Qwen3NextConfig's defaults */
  *sparse = true;
  if (kind == MOE_GLM4 || kind == MOE_DEEPSEEK_V3) return glm4_sizes(c, kind, layer, moe, sparse, err);
  if (!mixtral && qwen_layer_is_sparse(c, layer, sparse, err) != 0) return -1;
  /* transformers 5 writes Qwen3-MoE's expert count as num_local_experts (num_experts before). */
  const char *experts_key = mixtral ? "num_local_experts" : "num_experts";
  if (kind == MOE_QWEN3 && !cJSON_GetObjectItemCaseSensitive(c->json, experts_key)) experts_key = "num_local_experts";
  if (int_field(c, experts_key,
                mixtral             ? 8
                : kind == MOE_QWEN2 ? 60
                : next              ? 512
                                    : 128,
                1, &experts, err) != 0 ||
      int_field(c, "num_experts_per_tok",
                mixtral             ? 2
                : kind == MOE_QWEN2 ? 4
                : next              ? 10
                                    : 8,
                1, &top_k, err) != 0)
    return -1;
  if (mixtral)
    intermediate = c->intermediate_size;
  else if (int_field(c, "moe_intermediate_size",
                     kind == MOE_QWEN2 ? 1408
                     : next            ? 512
                                       : 768,
                     1, &intermediate, err) != 0)
    return -1;
  if ((kind == MOE_QWEN2 || next) &&
      int_field(c, "shared_expert_intermediate_size", next ? 512 : 5632, 1, &shared, err) != 0)
    return -1;
  if (top_k > experts)
    return rotq_fail(err, "%s: num_experts_per_tok %ld exceeds the %ld experts", c->path, top_k, experts);
  if (intermediate < 1) return rotq_fail(err, "%s: missing required field 'intermediate_size'", c->path);
  const cJSON *norm = cJSON_GetObjectItemCaseSensitive(c->json, "norm_topk_prob");
  if (norm && !cJSON_IsNull(norm) && !cJSON_IsBool(norm))
    return rotq_fail(err, "%s: field 'norm_topk_prob' is not true or false", c->path);
  moe->experts = (int)experts;
  moe->top_k = (int)top_k;
  moe->intermediate = (int)intermediate;
  moe->shared_intermediate = (int)shared;
  moe->normalize_top_k = mixtral || cJSON_IsTrue(norm) || (next && !cJSON_IsBool(norm));
  return 0;
}

/* "<layer prefix>.<layer>.<module><suffix>" into name. */
static void layer_name(const family_descriptor *f, int layer, const char *module, const char *suffix, char *name,
                       size_t cap) {
  char relative[256];
  snprintf(relative, sizeof relative, "%s%s", module, suffix);
  family_layer_module(f, layer, relative, name, cap);
}

int moe_read_layer(const checkpoint *ck, const family_descriptor *f, moe_kind kind, bool f32, int layer,
                   moe_weights **out, rotq_error *err) {
  *out = NULL;
  const model_config *c = &ck->config;
  moe_weights *moe = calloc(1, sizeof *moe);
  if (!moe) return rotq_fail(err, "out of memory");
  if (kind == MOE_GPT_OSS || kind == MOE_LLAMA4) {
    free(moe);
    return kind == MOE_GPT_OSS ? gpt_oss_read_moe(ck, f, f32, layer, out, err)
                               : llama4_read_moe(ck, f, f32, layer, out, err);
  }
  bool sparse;
  if (read_sizes(c, kind, layer, moe, &sparse, err) != 0 || !sparse) {
    free(moe);
    return sparse ? -1 : 0;
  }
  moe->expert = calloc((size_t)moe->experts, sizeof *moe->expert);
  if (!moe->expert) {
    free(moe);
    return rotq_fail(err, "out of memory");
  }
  const family_layer_names *n = &f->names;
  char name[320], index[24];
  int rc = 0;
  if (!n->router || !n->experts || !n->expert_proj[0] || !n->expert_proj[1] || !n->expert_proj[2] ||
      (moe->shared_intermediate && (!n->shared_expert || (!n->shared_expert_gate && !moe->grouped_sigmoid))))
    rc = rotq_fail(err, "%s: family %s names no MoE block", ck->dir, f->family);
  if (rc == 0) layer_name(f, layer, n->router, ".weight", name, sizeof name);
  if (rc == 0) rc = model_read_weight(ck, f32, name, moe->experts, c->hidden_size, &moe->router, err);
  if (rc == 0 && moe->grouped_sigmoid) {
    layer_name(f, layer, n->router, ".e_score_correction_bias", name, sizeof name);
    rc = model_read_weight(ck, f32, name, moe->experts, 0, &moe->correction_bias, err);
  }
  for (int e = 0; rc == 0 && e < moe->experts; e++) {
    snprintf(index, sizeof index, ".%d", e);
    layer_name(f, layer, n->experts, index, name, sizeof name);
    rc = read_expert(ck, f32, name, n->expert_proj, c->hidden_size, moe->intermediate, &moe->expert[e], err);
  }
  if (rc == 0 && moe->shared_intermediate) {
    /* the shared expert's projections are named as the routed experts' (Qwen2-MoE) */
    layer_name(f, layer, n->shared_expert, "", name, sizeof name);
    rc = read_expert(ck, f32, name, n->expert_proj, c->hidden_size, moe->shared_intermediate, &moe->shared, err);
    if (n->shared_expert_gate) layer_name(f, layer, n->shared_expert_gate, ".weight", name, sizeof name);
    if (rc == 0 && n->shared_expert_gate)
      rc = model_read_weight(ck, f32, name, 1, c->hidden_size, &moe->shared_gate, err);
  }
  if (rc != 0) {
    moe_free(moe);
    return -1;
  }
  *out = moe;
  return 0;
}

static void free_expert(expert_weights *e) {
  free(e->w_gate);
  free(e->w_up);
  free(e->w_down);
  free(e->b_gate);
  free(e->b_up);
  free(e->b_down);
}

void moe_free(moe_weights *moe) {
  if (!moe) return;
  for (int e = 0; moe->expert && e < moe->experts; e++) free_expert(&moe->expert[e]);
  free(moe->expert);
  free_expert(&moe->shared);
  free(moe->router);
  free(moe->shared_gate);
  free(moe->correction_bias);
  free(moe->router_bias);
  free(moe);
}
