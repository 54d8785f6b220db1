/* config.json reader. Field names and defaults follow transformers' config classes; fields of
 * multimodal configs that nest the language model under "text_config" are found there too. */
#include "io/model_config.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "family/family.h"
#include "io/json_file.h"

/* The value of key, at the top level or else in "text_config"; NULL if absent or null. */
static const cJSON *config_field(const cJSON *json, const char *key) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);
  if (!item) {
    const cJSON *text_config = cJSON_GetObjectItemCaseSensitive(json, "text_config");
    if (cJSON_IsObject(text_config)) item = cJSON_GetObjectItemCaseSensitive(text_config, key);
  }
  return cJSON_IsNull(item) ? NULL : item;
}

/* item as an integer in [minimum, maximum]; -1 if it is not one. */
static int json_int(const cJSON *item, double minimum, double maximum, long *value) {
  if (!cJSON_IsNumber(item)) return -1;
  double d = item->valuedouble;
  if (!(d >= minimum && d <= maximum) || d != floor(d)) return -1;
  *value = (long)d;
  return 0;
}

/* An int field that must be positive; absent: an error if required, else fallback. */
static int read_int(const char *path, const cJSON *json, const char *key, int required, int fallback, int *out,
                    rotq_error *err) {
  const cJSON *item = config_field(json, key);
  if (!item) {
    if (required) return rotq_fail(err, "%s: missing required field '%s'", path, key);
    *out = fallback;
    return 0;
  }
  long value;
  if (json_int(item, 1, INT_MAX, &value) != 0)
    return rotq_fail(err, "%s: field '%s' is not a positive integer", path, key);
  *out = (int)value;
  return 0;
}

/* The first of keys present as a number, else fallback. */
static int read_double(const char *path, const cJSON *json, const char *const *keys, double fallback, double *out,
                       rotq_error *err) {
  for (; *keys; keys++) {
    const cJSON *item = config_field(json, *keys);
    if (!item) continue;
    if (!cJSON_IsNumber(item)) return rotq_fail(err, "%s: field '%s' is not a number", path, *keys);
    *out = item->valuedouble;
    return 0;
  }
  *out = fallback;
  return 0;
}

static int read_bool(const char *path, const cJSON *json, const char *key, bool fallback, bool *out, rotq_error *err) {
  const cJSON *item = config_field(json, key);
  if (!item) {
    *out = fallback;
    return 0;
  }
  if (!cJSON_IsBool(item)) return rotq_fail(err, "%s: field '%s' is not true or false", path, key);
  *out = cJSON_IsTrue(item);
  return 0;
}

/* A string field copied into out (size bytes); "" if absent. */
static int read_string(const char *path, const cJSON *item, const char *key, char *out, size_t size, rotq_error *err) {
  out[0] = '\0';
  if (!item || cJSON_IsNull(item)) return 0;
  if (!cJSON_IsString(item)) return rotq_fail(err, "%s: field '%s' is not a string", path, key);
  if (strlen(item->valuestring) >= size)
    return rotq_fail(err, "%s: field '%s' is longer than %zu characters", path, key, size - 1);
  strcpy(out, item->valuestring);
  return 0;
}

/* rope_scaling: null, absent, or {"rope_type" | "type", "factor", ...}. */
static int read_rope_scaling(const char *path, const cJSON *json, rope_scaling *rope, rotq_error *err) {
  memset(rope, 0, sizeof *rope);
  const cJSON *scaling = config_field(json, "rope_scaling");
  if (!scaling) return 0;
  if (!cJSON_IsObject(scaling)) return rotq_fail(err, "%s: field 'rope_scaling' is not an object", path);
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(scaling, "rope_type");
  if (!type) type = cJSON_GetObjectItemCaseSensitive(scaling, "type");
  if (read_string(path, type, "rope_scaling.rope_type", rope->type, sizeof rope->type, err) != 0) return -1;
  static const char *const factor[] = {"factor", NULL}, *const low[] = {"low_freq_factor", NULL},
                           *const high[] = {"high_freq_factor", NULL};
  if (read_double(path, scaling, factor, 0, &rope->factor, err) != 0 ||
      read_double(path, scaling, low, 0, &rope->low_freq_factor, err) != 0 ||
      read_double(path, scaling, high, 0, &rope->high_freq_factor, err) != 0)
    return -1;
  const cJSON *original = cJSON_GetObjectItemCaseSensitive(scaling, "original_max_position_embeddings");
  long value = 0;
  if (original && !cJSON_IsNull(original) && json_int(original, 1, INT_MAX, &value) != 0)
    return rotq_fail(err, "%s: field 'rope_scaling.original_max_position_embeddings' is not a positive integer", path);
  rope->original_max_position_embeddings = (int)value;
  return 0;
}

/* rope_theta: top level, else inside transformers v5's "rope_parameters" (its "full_attention"
 * entry where it is written per layer type, as Gemma-3's), else 10000. */
static int read_rope_theta(const char *path, const cJSON *json, double *theta, rotq_error *err) {
  static const char *const keys[] = {"rope_theta", NULL};
  const cJSON *parameters = config_field(json, "rope_parameters");
  const cJSON *full =
      cJSON_IsObject(parameters) ? cJSON_GetObjectItemCaseSensitive(parameters, "full_attention") : NULL;
  if (cJSON_IsObject(full)) parameters = full;
  if (!config_field(json, "rope_theta") && cJSON_IsObject(parameters))
    return read_double(path, parameters, keys, 10000.0, theta, err);
  return read_double(path, json, keys, 10000.0, theta, err);
}

/* Fills c's named fields from c->json; path is for messages. */
static int read_fields(const char *path, model_config *c, rotq_error *err) {
  const cJSON *json = c->json;
  const cJSON *architectures = cJSON_GetObjectItemCaseSensitive(json, "architectures");
  if (cJSON_IsArray(architectures) && cJSON_GetArraySize(architectures) > 0 &&
      read_string(path, cJSON_GetArrayItem(architectures, 0), "architectures[0]", c->architecture,
                  sizeof c->architecture, err) != 0)
    return -1;
  if (read_string(path, cJSON_GetObjectItemCaseSensitive(json, "model_type"), "model_type", c->model_type,
                  sizeof c->model_type, err) != 0)
    return -1;
  /* transformers 5 writes Nemotron-H's layers as layers_block_type, without num_hidden_layers. */
  const cJSON *block_types = config_field(json, "layers_block_type");
  const bool layers_from_types =
      !config_field(json, "num_hidden_layers") && cJSON_IsArray(block_types) && cJSON_GetArraySize(block_types) > 0;
  if (layers_from_types) c->num_hidden_layers = cJSON_GetArraySize(block_types);
  if (read_int(path, json, "hidden_size", 1, 0, &c->hidden_size, err) != 0 ||
      (!layers_from_types && read_int(path, json, "num_hidden_layers", 1, 0, &c->num_hidden_layers, err) != 0) ||
      read_int(path, json, "num_attention_heads", 1, 0, &c->num_attention_heads, err) != 0 ||
      read_int(path, json, "vocab_size", 1, 0, &c->vocab_size, err) != 0 ||
      read_int(path, json, "intermediate_size", 0, 0, &c->intermediate_size, err) != 0 ||
      read_int(path, json, "max_position_embeddings", 0, 0, &c->max_position_embeddings, err) != 0 ||
      read_int(path, json, "num_key_value_heads", 0, c->num_attention_heads, &c->num_key_value_heads, err) != 0)
    return -1;
  if (c->num_attention_heads % c->num_key_value_heads != 0)
    return rotq_fail(err, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path,
                     c->num_attention_heads, c->num_key_value_heads);
  if (!config_field(json, "head_dim") && c->hidden_size % c->num_attention_heads != 0)
    return rotq_fail(err, "%s: no 'head_dim', and hidden_size %d is not a multiple of num_attention_heads %d", path,
                     c->hidden_size, c->num_attention_heads);
  if (read_int(path, json, "head_dim", 0, c->hidden_size / c->num_attention_heads, &c->head_dim, err) != 0) return -1;
  static const char *const eps_keys[] = {"rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_epsilon", NULL};
  if (read_double(path, json, eps_keys, 1e-6, &c->rms_norm_eps, err) != 0 || /* Llama's default */
      read_rope_theta(path, json, &c->rope_theta, err) != 0)
    return -1;
  if (!(c->rms_norm_eps >= 0 && c->rms_norm_eps < 1))
    return rotq_fail(err, "%s: the norm epsilon %g is out of range [0, 1)", path, c->rms_norm_eps);
  if (!(c->rope_theta > 0 && isfinite(c->rope_theta)))
    return rotq_fail(err, "%s: rope_theta %g must be positive and finite", path, c->rope_theta);
  /* PretrainedConfig defaults tie_word_embeddings to true, but most decoder classes (Llama, Qwen2,
   * Mistral, ...) override it to false; Gemma's keep true. Each family's descriptor says which. */
  const bool tie_default = family_tie_default(c->model_type);
  if (read_bool(path, json, "tie_word_embeddings", tie_default, &c->tie_word_embeddings, err) != 0 ||
      read_bool(path, json, "attention_bias", false, &c->attention_bias, err) != 0 ||
      read_bool(path, json, "mlp_bias", false, &c->mlp_bias, err) != 0)
    return -1;
  return read_rope_scaling(path, json, &c->rope, err);
}

int model_config_load(const char *path, model_config *c, rotq_error *err) {
  memset(c, 0, sizeof *c);
  c->json = json_file_read(path, err);
  if (!c->json) return -1;
  c->path = strdup(path);
  if (!c->path) {
    model_config_free(c);
    return rotq_fail(err, "%s: out of memory", path);
  }
  if (!cJSON_IsObject(c->json)) {
    model_config_free(c);
    return rotq_fail(err, "%s: not a JSON object", path);
  }
  if (read_fields(path, c, err) != 0) {
    model_config_free(c);
    return -1;
  }
  return 0;
}

void model_config_free(model_config *c) {
  cJSON_Delete(c->json);
  free(c->path);
  memset(c, 0, sizeof *c);
}

int model_config_int(const model_config *c, const char *key, long *value, rotq_error *err) {
  const cJSON *item = config_field(c->json, key);
  if (!item && strcmp(key, "head_dim") == 0) {
    *value = c->head_dim;
    return 0;
  }
  if (!item && strcmp(key, "num_key_value_heads") == 0) {
    *value = c->num_key_value_heads;
    return 0;
  }
  if (!item) return rotq_fail(err, "%s: no field '%s'", c->path, key);
  /* Beyond ±2^53 a JSON number is no longer an exact integer. */
  if (json_int(item, -9007199254740992.0, 9007199254740992.0, value) != 0)
    return rotq_fail(err, "%s: field '%s' is not an integer", c->path, key);
  return 0;
}
