/* The Gemma families' configuration and norms (see gemma.h). */
#include "model/gemma.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/dtype.h"
#include "model/load_weight.h"

/* A number field of config.json: fallback when absent, 0 when null. */
static int number_field(const model_config *c, const char *key, double fallback, double *value, rotq_error *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(c->json, key);
  *value = fallback;
  if (!item) return 0;
  if (cJSON_IsNull(item)) {
    *value = 0;
    return 0;
  }
  if (!cJSON_IsNumber(item) || item->valuedouble < 0)
    return rotq_fail(err, "%s: field '%s' is not a non-negative number", c->path, key);
  *value = item->valuedouble;
  return 0;
}

/* transformers 5 writes Gemma-3's RoPE per layer type, rope_parameters.sliding_attention.rope_theta
 * (the local base when rope_local_base_freq is absent); else 10000. */
static double sliding_rope_theta(const model_config *c) {
  const cJSON *parameters = cJSON_GetObjectItemCaseSensitive(c->json, "rope_parameters");
  const cJSON *sliding = cJSON_GetObjectItemCaseSensitive(parameters, "sliding_attention");
  const cJSON *theta = cJSON_GetObjectItemCaseSensitive(sliding, "rope_theta");
  return cJSON_IsNumber(theta) && theta->valuedouble > 0 ? theta->valuedouble : 10000.0;
}

static int read_activation(const model_config *c, model *m, rotq_error *err) {
  const cJSON *act = cJSON_GetObjectItemCaseSensitive(c->json, "hidden_activation");
  const char *key = "hidden_activation";
  if (!act || cJSON_IsNull(act)) act = cJSON_GetObjectItemCaseSensitive(c->json, key = "hidden_act");
  if (!act || cJSON_IsNull(act)) {
    m->activation = ACT_GELU_TANH; /* transformers' default for Gemma */
    return 0;
  }
  if (!cJSON_IsString(act)) return rotq_fail(err, "%s: field '%s' is not a string", c->path, key);
  const char *name = act->valuestring;
  if (!strcmp(name, "gelu_pytorch_tanh") || !strcmp(name, "gelu_new") || !strcmp(name, "gelu_fast"))
    m->activation = ACT_GELU_TANH;
  else if (!strcmp(name, "gelu"))
    m->activation = ACT_GELU;
  else
    return rotq_fail(err, "%s: %s \"%s\" is not supported (gelu_pytorch_tanh, gelu)", c->path, key, name);
  return 0;
}

/* Each layer's sliding window (0 = full attention). */
static int read_windows(const model_config *c, int generation, model *m, rotq_error *err) {
  const int layers = c->num_hidden_layers;
  double window, pattern;
  if (number_field(c, "sliding_window", 4096, &window, err) != 0 ||
      number_field(c, "sliding_window_pattern", 6, &pattern, err) != 0)
    return -1;
  if (window != floor(window) || window > 1e9)
    return rotq_fail(err, "%s: field 'sliding_window' is not a positive integer", c->path);
  m->layer_window = calloc((size_t)layers, sizeof *m->layer_window);
  if (!m->layer_window) return rotq_fail(err, "out of memory");
  const cJSON *types = cJSON_GetObjectItemCaseSensitive(c->json, "layer_types");
  if (types && !cJSON_IsNull(types) && (!cJSON_IsArray(types) || cJSON_GetArraySize(types) != layers))
    return rotq_fail(err, "%s: field 'layer_types' is not a list of %d layer types", c->path, layers);
  for (int l = 0; l < layers; l++) {
    bool sliding;
    if (types && !cJSON_IsNull(types)) {
      const cJSON *t = cJSON_GetArrayItem(types, l);
      if (!cJSON_IsString(t) ||
          (strcmp(t->valuestring, "sliding_attention") && strcmp(t->valuestring, "full_attention")))
        return rotq_fail(err, "%s: layer_types[%d] is not \"sliding_attention\" or \"full_attention\"", c->path, l);
      sliding = !strcmp(t->valuestring, "sliding_attention");
    } else if (generation == 2) {
      sliding = l % 2 == 0;
    } else {
      sliding = pattern < 1 || (l + 1) % (int)pattern != 0;
    }
    m->layer_window[l] = sliding ? (int)window : 0;
  }
  return 0;
}

/* x rounded to the dtype t (as torch.tensor(x, dtype=t) does). */
static double round_to_dtype(double x, dtype t) {
  unsigned char bytes[8];
  dtype_from_f64(t, &x, bytes, 1);
  dtype_to_f64(t, bytes, &x, 1);
  return x;
}

int gemma_configure(const checkpoint *ck, const family_descriptor *f, int generation, model *m, rotq_error *err) {
  const model_config *c = &ck->config;
  char embed_name[160];
  snprintf(embed_name, sizeof embed_name, "%s.weight", f->embed);
  const st_tensor *embed = checkpoint_find(ck, embed_name);
  m->embed_scale = round_to_dtype(sqrt((double)c->hidden_size), embed ? embed->dtype : DTYPE_F32);
  if (read_activation(c, m, err) != 0) return -1;
  if (generation == 1) return 0;
  double scalar, local_base;
  if (number_field(c, "query_pre_attn_scalar", 256, &scalar, err) != 0 ||
      number_field(c, "attn_logit_softcapping", generation == 2 ? 50.0 : 0, &m->attn_softcap, err) != 0 ||
      number_field(c, "final_logit_softcapping", generation == 2 ? 30.0 : 0, &m->final_softcap, err) != 0 ||
      read_windows(c, generation, m, err) != 0)
    return -1;
  if (!(scalar > 0)) return rotq_fail(err, "%s: field 'query_pre_attn_scalar' must be positive", c->path);
  m->attention_scale = 1 / sqrt(scalar);
  if (generation == 3) {
    if (number_field(c, "rope_local_base_freq", sliding_rope_theta(c), &local_base, err) != 0) return -1;
    if (!(local_base > 0)) return rotq_fail(err, "%s: field 'rope_local_base_freq' must be positive", c->path);
    int half = c->head_dim / 2;
    m->inv_freq_local = malloc(sizeof(double) * (size_t)(half + 1));
    if (!m->inv_freq_local) return rotq_fail(err, "out of memory");
    for (int i = 0; i < half; i++) m->inv_freq_local[i] = 1.0 / pow(local_base, 2.0 * i / c->head_dim);
  }
  return 0;
}

/* v[i] += 1 for a norm weight of `count` elements (NULL: absent). */
static void shift(void *v, int count, bool f32) {
  for (int i = 0; v && i < count; i++) {
    if (f32)
      ((float *)v)[i] += 1;
    else
      ((double *)v)[i] += 1;
  }
}

void gemma_shift_norms(model *m, const model_config *c) {
  const int hidden = c->hidden_size, head_dim = c->head_dim;
  for (int l = 0; l < c->num_hidden_layers; l++) {
    layer_weights *w = &m->layers[l];
    shift(w->attn_norm, hidden, m->f32);
    shift(w->mlp_norm, hidden, m->f32);
    shift(w->post_attn_norm, hidden, m->f32);
    shift(w->post_mlp_norm, hidden, m->f32);
    shift(w->q_norm, head_dim, m->f32);
    shift(w->k_norm, head_dim, m->f32);
  }
  shift(m->final_norm, hidden, m->f32);
}
