/* config.json of a HF checkpoint: the fields rotq needs, and the raw JSON for everything else
 * (dims named by key in rotation configs, fields copied to the output). */
#ifndef ROTQ_IO_MODEL_CONFIG_H
#define ROTQ_IO_MODEL_CONFIG_H

#include <stdbool.h>

#include "common/error.h"

struct cJSON;

typedef struct rope_scaling {
  char type[32]; /* "" (none), "llama3", "linear", ... */
  double factor, low_freq_factor, high_freq_factor;
  int original_max_position_embeddings;
} rope_scaling;

typedef struct model_config {
  char architecture[128]; /* architectures[0], e.g. "LlamaForCausalLM" */
  char model_type[64];    /* e.g. "llama" */
  int hidden_size, intermediate_size, num_hidden_layers;
  int num_attention_heads, num_key_value_heads; /* kv heads default to attention heads */
  int head_dim;                                 /* config "head_dim" when present, else hidden_size / heads */
  int vocab_size, max_position_embeddings;
  double rms_norm_eps, rope_theta; /* rms_norm_eps: also layer_norm_eps / norm_epsilon */
  bool tie_word_embeddings;        /* default true only where HF's class defaults to true */
  bool attention_bias, mlp_bias;
  rope_scaling rope;
  long max_tensor_extent; /* set by checkpoint_open: the largest dimension of any tensor (0 = unknown);
                           * no size read from config.json may exceed it */
  struct cJSON *json;     /* the whole parsed file (owned) */
  char *path;             /* the file read, for messages (owned) */
} model_config;

/* Parses dir/config.json (path given); errors name the file and the field. */
int model_config_load(const char *path, model_config *c, rotq_error *err);
void model_config_free(model_config *c);
/* An integer field by key (e.g. "hidden_size", "head_dim" — head_dim falls back to the derived
 * value); -1 with an error if absent or not an integer. */
int model_config_int(const model_config *c, const char *key, long *value, rotq_error *err);

#endif
