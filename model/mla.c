/* Reading DeepSeek-V3's multi-head latent attention (see mla.h). */
#include "model/mla.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/load_weight.h"

/* A positive integer field (fallback when absent; null counts as absent only if allow_null). */
static int size_field(const model_config *c, const char *key, long fallback, long *value, rotq_error *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(c->json, key);
  if (!item || cJSON_IsNull(item)) {
    *value = fallback;
    return 0;
  }
  if (model_config_int(c, key, value, err) != 0) return -1;
  if (*value < 1) return rotq_fail(err, "%s: field '%s' must be positive", c->path, key);
  return 0;
}

int mla_head_dims(const model_config *c, long *nope, long *v_dim, rotq_error *err) {
  if (size_field(c, "qk_nope_head_dim", 128, nope, err) || size_field(c, "v_head_dim", 128, v_dim, err)) return -1;
  if (*nope > (1L << 20) || *v_dim > (1L << 20))
    return rotq_fail(err, "%s: field '%s' is %ld, not a head size", c->path,
                     *nope > (1L << 20) ? "qk_nope_head_dim" : "v_head_dim", *nope > (1L << 20) ? *nope : *v_dim);
  return 0;
}

int mla_configure(const model_config *c, bool *interleave, rotq_error *err) {
  long rope;
  if (size_field(c, "qk_rope_head_dim", 64, &rope, err) != 0) return -1;
  if (c->num_key_value_heads != c->num_attention_heads)
    return rotq_fail(err, "%s: num_key_value_heads %d must equal num_attention_heads %d under MLA", c->path,
                     c->num_key_value_heads, c->num_attention_heads);
  if (c->head_dim != rope)
    return rotq_fail(err, "%s: head_dim %d must be qk_rope_head_dim %ld (DeepseekV3Config sets it so)", c->path,
                     c->head_dim, rope);
  if (c->rope.type[0] && strcmp(c->rope.type, "default") != 0)
    return rotq_fail(err,
                     "%s: rope type '%s' is not supported by the MLA forward pass (yarn's mscale is not "
                     "implemented); the rotation does not depend on it, use --no-verify",
                     c->path, c->rope.type);
  const cJSON *flag = cJSON_GetObjectItemCaseSensitive(c->json, "rope_interleave");
  if (flag && !cJSON_IsNull(flag) && !cJSON_IsBool(flag))
    return rotq_fail(err, "%s: field 'rope_interleave' is not true or false", c->path);
  *interleave = !cJSON_IsBool(flag) || cJSON_IsTrue(flag);
  return 0;
}

/* "<layer>.<module>.<suffix>" of shape [rows, cols] (cols 0: a vector). */
static int read_part(const checkpoint *ck, const family_descriptor *f, bool f32, int l, const char *module,
                     const char *suffix, int64_t rows, int64_t cols, void **out, rotq_error *err) {
  char relative[192], name[256];
  snprintf(relative, sizeof relative, "self_attn.%s.%s", module, suffix);
  family_layer_module(f, l, relative, name, sizeof name);
  return model_read_weight(ck, f32, name, rows, cols, out, err);
}

int mla_read_layer(const checkpoint *ck, const family_descriptor *f, bool f32, int l, mla_weights **out,
                   rotq_error *err) {
  const model_config *c = &ck->config;
  mla_weights *w = calloc(1, sizeof *w);
  if (!w) return rotq_fail(err, "out of memory");
  *out = w;
  long q_lora = 0, kv_lora, nope, v_dim;
  const cJSON *q_rank = cJSON_GetObjectItemCaseSensitive(c->json, "q_lora_rank");
  if (q_rank && !cJSON_IsNull(q_rank) && size_field(c, "q_lora_rank", 0, &q_lora, err) != 0) return -1;
  if (!q_rank) q_lora = 1536; /* DeepseekV3Config's default; null means q_proj */
  if (size_field(c, "kv_lora_rank", 512, &kv_lora, err) || mla_head_dims(c, &nope, &v_dim, err)) return -1;
  w->q_lora = (int)q_lora, w->kv_lora = (int)kv_lora, w->nope = (int)nope, w->rope = c->head_dim;
  w->v_dim = (int)v_dim;
  const int64_t hidden = c->hidden_size, heads = c->num_attention_heads, qk = nope + w->rope;
  const bool bias = c->attention_bias;
  if (q_lora) {
    if (read_part(ck, f, f32, l, "q_a_proj", "weight", q_lora, hidden, &w->wq_a, err) ||
        (bias && read_part(ck, f, f32, l, "q_a_proj", "bias", q_lora, 0, &w->bq_a, err)) ||
        read_part(ck, f, f32, l, "q_a_layernorm", "weight", q_lora, 0, &w->q_a_norm, err) ||
        read_part(ck, f, f32, l, "q_b_proj", "weight", heads * qk, q_lora, &w->wq_b, err))
      return -1;
  } else if (read_part(ck, f, f32, l, "q_proj", "weight", heads * qk, hidden, &w->wq, err)) {
    return -1;
  }
  return read_part(ck, f, f32, l, "kv_a_proj_with_mqa", "weight", kv_lora + w->rope, hidden, &w->wkv_a, err) ||
                 (bias &&
                  read_part(ck, f, f32, l, "kv_a_proj_with_mqa", "bias", kv_lora + w->rope, 0, &w->bkv_a, err)) ||
                 read_part(ck, f, f32, l, "kv_a_layernorm", "weight", kv_lora, 0, &w->kv_a_norm, err) ||
                 read_part(ck, f, f32, l, "kv_b_proj", "weight", heads * (nope + v_dim), kv_lora, &w->wkv_b, err)
             ? -1
             : 0;
}

void mla_free(mla_weights *w) {
  if (!w) return;
  void *parts[] = {w->wq, w->wq_a, w->bq_a, w->q_a_norm, w->wq_b, w->wkv_a, w->bkv_a, w->kv_a_norm, w->wkv_b};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) free(parts[i]);
  free(w);
}
