/* Reading Nemotron-H checkpoints (see nemotron_h.h). */
#include "model/nemotron_h.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/load_weight.h"
#include "model/transformer.h"

/* An integer field, fallback when absent (NemotronHConfig's defaults). */
static int int_field(const model_config *c, const char *key, long fallback, int *out, rotq_error *err) {
  long value = fallback;
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(c->json, key);
  if (item && !cJSON_IsNull(item) && model_config_int(c, key, &value, err) != 0) return -1;
  if (value < 1 || value > 1 << 24) return rotq_fail(err, "%s: field '%s' must be a positive integer", c->path, key);
  *out = (int)value;
  return 0;
}

static bool bool_field(const model_config *c, const char *key, bool fallback) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(c->json, key);
  return cJSON_IsBool(item) ? cJSON_IsTrue(item) : fallback;
}

/* A string field that must equal expected when present. */
static int require_string(const model_config *c, const char *key, const char *expected, rotq_error *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(c->json, key);
  if (item && !cJSON_IsNull(item) && !(cJSON_IsString(item) && strcmp(item->valuestring, expected) == 0))
    return rotq_fail(err, "%s: %s must be \"%s\"", c->path, key, expected);
  return 0;
}

/* The layer kinds, one character per layer (M, *, -), in buf (size num_hidden_layers + 1):
 * hybrid_override_pattern, or transformers 5's layers_block_type ("linear_attention" = Mamba-2,
 * "full_attention", "mlp", "moe"). */
static const char *pattern(const model_config *c, char *buf, size_t size, rotq_error *err) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(c->json, "hybrid_override_pattern");
  const cJSON *types = cJSON_GetObjectItemCaseSensitive(c->json, "layers_block_type");
  if (!cJSON_IsString(p) && cJSON_IsArray(types)) {
    static const struct {
      const char *name;
      char kind;
    } names[] = {{"linear_attention", 'M'}, {"mamba", 'M'}, {"full_attention", '*'},
                 {"attention", '*'},        {"mlp", '-'},   {"moe", 'E'}};
    size_t n = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, types) {
      char kind = '?';
      for (size_t i = 0; cJSON_IsString(t) && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(t->valuestring, names[i].name) == 0) kind = names[i].kind;
      if (kind == '?' || n + 1 >= size) {
        rotq_fail(err, "%s: layers_block_type[%zu] is not one of linear_attention, full_attention, mlp, moe", c->path,
                  n);
        return NULL;
      }
      buf[n++] = kind;
    }
    buf[n] = '\0';
  } else if (!cJSON_IsString(p)) {
    rotq_fail(err, "%s: missing required field 'hybrid_override_pattern' (or layers_block_type)", c->path);
    return NULL;
  } else {
    snprintf(buf, size, "%s", p->valuestring);
  }
  if ((int)strlen(buf) != c->num_hidden_layers) {
    rotq_fail(err, "%s: hybrid_override_pattern has %zu layers, num_hidden_layers %d", c->path, strlen(buf),
              c->num_hidden_layers);
    return NULL;
  }
  for (const char *k = buf; *k; k++)
    if (*k != 'M' && *k != '*' && *k != '-' && *k != 'E') {
      rotq_fail(err, "%s: hybrid_override_pattern layer type '%c' is not supported (M, *, -, E)", c->path, *k);
      return NULL;
    }
  return buf;
}

/* A pattern buffer for c (freed by the caller), or NULL with an error. */
static char *pattern_alloc(const model_config *c, rotq_error *err) {
  size_t size = (size_t)(c->num_hidden_layers > 0 ? c->num_hidden_layers : 0) + 2;
  char *buf = malloc(size);
  if (!buf) {
    rotq_fail(err, "out of memory");
    return NULL;
  }
  if (!pattern(c, buf, size, err)) {
    free(buf);
    return NULL;
  }
  return buf;
}

int nemotron_h_configure(const checkpoint *ck, struct model *m, rotq_error *err) {
  const model_config *c = &ck->config;
  m->hybrid = true;
  char *kinds = pattern_alloc(c, err);
  if (!kinds) return -1;
  free(kinds);
  if (require_string(c, "mamba_hidden_act", "silu", err) != 0 || require_string(c, "mlp_hidden_act", "relu2", err) != 0)
    return -1;
  return 0;
}

static int read_pair(const checkpoint *ck, bool f32, const char *prefix, bool bias, int64_t rows, int64_t cols,
                     void **weight, void **bias_out, rotq_error *err) {
  char name[256];
  snprintf(name, sizeof name, "%s.weight", prefix);
  if (model_read_weight(ck, f32, name, rows, cols, weight, err) != 0) return -1;
  if (!bias) return 0;
  snprintf(name, sizeof name, "%s.bias", prefix);
  return model_read_weight(ck, f32, name, rows, 0, bias_out, err);
}

static int read_mamba(const checkpoint *ck, const family_descriptor *f, bool f32, int l, mamba_weights **out,
                      rotq_error *err) {
  const model_config *c = &ck->config;
  mamba_weights *w = calloc(1, sizeof *w);
  if (!w) return rotq_fail(err, "out of memory");
  *out = w;
  if (int_field(c, "mamba_num_heads", 128, &w->heads, err) || int_field(c, "mamba_head_dim", 64, &w->head_dim, err) ||
      int_field(c, "ssm_state_size", 128, &w->state, err) || int_field(c, "n_groups", 8, &w->groups, err) ||
      int_field(c, "conv_kernel", 4, &w->kernel, err))
    return -1;
  if (w->heads % w->groups != 0)
    return rotq_fail(err, "%s: mamba_num_heads %d is not a multiple of n_groups %d", c->path, w->heads, w->groups);
  w->dt_min = 0, w->dt_max = INFINITY;
  const cJSON *limit = cJSON_GetObjectItemCaseSensitive(c->json, "time_step_limit");
  if (cJSON_IsArray(limit) && cJSON_GetArraySize(limit) == 2 && cJSON_IsNumber(cJSON_GetArrayItem(limit, 0)) &&
      cJSON_IsNumber(cJSON_GetArrayItem(limit, 1)))
    w->dt_min = cJSON_GetArrayItem(limit, 0)->valuedouble, w->dt_max = cJSON_GetArrayItem(limit, 1)->valuedouble;
  const int64_t inter = (int64_t)w->heads * w->head_dim, conv_dim = inter + 2 * (int64_t)w->groups * w->state;
  const bool bias = bool_field(c, "use_bias", false), conv_bias = bool_field(c, "use_conv_bias", true);
  char prefix[200], name[256];
  family_layer_module(f, l, f->names.mamba, prefix, sizeof prefix);
  snprintf(name, sizeof name, "%s.in_proj", prefix);
  if (read_pair(ck, f32, name, bias, inter + conv_dim + w->heads, c->hidden_size, &w->in_proj, &w->in_proj_bias, err))
    return -1;
  snprintf(name, sizeof name, "%s.out_proj", prefix);
  if (read_pair(ck, f32, name, bias, c->hidden_size, inter, &w->out_proj, &w->out_proj_bias, err)) return -1;
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
  if (conv_bias && model_read_weight(ck, f32, name, conv_dim, 0, &w->conv_bias, err) != 0) return -1;
  static const char *const vectors[3] = {"dt_bias", "A_log", "D"};
  void **targets[3] = {&w->dt_bias, &w->a_log, &w->d};
  for (int i = 0; i < 3; i++) {
    snprintf(name, sizeof name, "%s.%s", prefix, vectors[i]);
    if (model_read_weight(ck, f32, name, w->heads, 0, targets[i], err) != 0) return -1;
  }
  snprintf(name, sizeof name, "%s.norm.weight", prefix);
  return model_read_weight(ck, f32, name, inter, 0, &w->norm, err);
}

/* A relu² MLP's up_proj [inter, hidden] and down_proj [hidden, inter] under prefix. */
static int read_relu2_mlp(const checkpoint *ck, const family_descriptor *f, bool f32, const char *prefix,
                          int64_t hidden, int64_t inter, expert_weights *e, rotq_error *err) {
  char name[320];
  snprintf(name, sizeof name, "%s.%s.weight", prefix, f->names.expert_proj[1]);
  if (model_read_weight(ck, f32, name, inter, hidden, &e->w_up, err) != 0) return -1;
  snprintf(name, sizeof name, "%s.%s.weight", prefix, f->names.expert_proj[2]);
  return model_read_weight(ck, f32, name, hidden, inter, &e->w_down, err);
}

/* A float field, fallback when absent. */
static int double_field(const model_config *c, const char *key, double fallback, double *out, rotq_error *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(c->json, key);
  if (!item || cJSON_IsNull(item)) {
    *out = fallback;
    return 0;
  }
  if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble <= 0)
    return rotq_fail(err, "%s: field '%s' must be a positive number", c->path, key);
  *out = item->valuedouble;
  return 0;
}

/* An MoE layer ('E', Nemotron-3): NemotronHMoE — DeepSeek-V3 routing over n_routed_experts relu²
 * experts plus one relu² shared expert (NemotronHConfig's defaults when a field is absent). */
static int read_moe(const checkpoint *ck, const family_descriptor *f, bool f32, int l, moe_weights **out,
                    rotq_error *err) {
  const model_config *c = &ck->config;
  moe_weights *moe = calloc(1, sizeof *moe);
  if (!moe) return rotq_fail(err, "out of memory");
  *out = moe;
  moe->nemotron = true;
  const cJSON *latent = cJSON_GetObjectItemCaseSensitive(c->json, "moe_latent_size");
  if (latent && !cJSON_IsNull(latent))
    return rotq_fail(err, "%s: moe_latent_size (latent expert projections) is not supported", c->path);
  if (bool_field(c, "mlp_bias", false))
    return rotq_fail(err, "%s: mlp_bias with MoE layers is not supported (the experts have no bias)", c->path);
  const cJSON *shared_count = cJSON_GetObjectItemCaseSensitive(c->json, "n_shared_experts");
  if (shared_count && !cJSON_IsNull(shared_count) && !(cJSON_IsNumber(shared_count) && shared_count->valuedouble == 1))
    return rotq_fail(err, "%s: n_shared_experts must be 1 (one shared expert per MoE layer)", c->path);
  if (int_field(c, "n_routed_experts", 8, &moe->experts, err) ||
      int_field(c, "num_experts_per_tok", 2, &moe->top_k, err) ||
      int_field(c, "moe_intermediate_size", 7688, &moe->intermediate, err) ||
      int_field(c, "moe_shared_expert_intermediate_size", 7688, &moe->shared_intermediate, err) ||
      int_field(c, "n_group", 1, &moe->n_group, err) || int_field(c, "topk_group", 1, &moe->topk_group, err) ||
      double_field(c, "routed_scaling_factor", 1.0, &moe->routed_scaling, err))
    return -1;
  if (moe->top_k > moe->experts)
    return rotq_fail(err, "%s: num_experts_per_tok %d exceeds n_routed_experts %d", c->path, moe->top_k, moe->experts);
  if (moe->experts % moe->n_group != 0 || moe->topk_group > moe->n_group ||
      (moe->n_group > 1 && moe->experts / moe->n_group < 2))
    return rotq_fail(err, "%s: n_group %d / topk_group %d do not divide n_routed_experts %d into groups of two or more",
                     c->path, moe->n_group, moe->topk_group, moe->experts);
  const cJSON *norm = cJSON_GetObjectItemCaseSensitive(c->json, "norm_topk_prob");
  moe->normalize_top_k = !cJSON_IsBool(norm) || cJSON_IsTrue(norm);
  moe->expert = calloc((size_t)moe->experts, sizeof *moe->expert);
  if (!moe->expert) return rotq_fail(err, "out of memory");
  const int64_t hidden = c->hidden_size;
  const family_layer_names *n = &f->names;
  char router[200], experts[200], name[320];
  family_layer_module(f, l, n->router, router, sizeof router);
  family_layer_module(f, l, n->experts, experts, sizeof experts);
  snprintf(name, sizeof name, "%s.weight", router);
  if (model_read_weight(ck, f32, name, moe->experts, hidden, &moe->router, err) != 0) return -1;
  snprintf(name, sizeof name, "%s.e_score_correction_bias", router);
  if (model_read_weight(ck, f32, name, moe->experts, 0, &moe->correction_bias, err) != 0) return -1;
  for (int e = 0; e < moe->experts; e++) {
    snprintf(name, sizeof name, "%s.%d", experts, e);
    if (read_relu2_mlp(ck, f, f32, name, hidden, moe->intermediate, &moe->expert[e], err) != 0) return -1;
  }
  family_layer_module(f, l, n->shared_expert, name, sizeof name);
  return read_relu2_mlp(ck, f, f32, name, hidden, moe->shared_intermediate, &moe->shared, err);
}

static int read_weights(const checkpoint *ck, const family_descriptor *f, struct model *m, const char *kinds,
                        rotq_error *err) {
  const model_config *c = &ck->config;
  const int64_t hidden = c->hidden_size, inter = c->intermediate_size;
  const int64_t q_dim = (int64_t)c->num_attention_heads * c->head_dim,
                kv_dim = (int64_t)c->num_key_value_heads * c->head_dim;
  const bool f32 = m->f32, attention_bias = bool_field(c, "attention_bias", false),
             mlp_bias = bool_field(c, "mlp_bias", false);
  for (int i = 0; i < c->head_dim / 2; i++) m->inv_freq[i] = 0; /* no positional encoding */
  char embed[160], final_norm[160], lm_head[160];
  snprintf(embed, sizeof embed, "%s.weight", f->embed);
  snprintf(final_norm, sizeof final_norm, "%s.weight", f->final_norm);
  snprintf(lm_head, sizeof lm_head, "%s.weight", f->lm_head);
  if (model_read_weight(ck, f32, embed, c->vocab_size, hidden, &m->embed, err) != 0) return -1;
  for (int l = 0; l < c->num_hidden_layers; l++) {
    layer_weights *w = &m->layers[l];
    const family_layer_names *n = &f->names;
    char name[256];
    family_layer_module(f, l, n->attn_norm, name, sizeof name);
    strncat(name, ".weight", sizeof name - strlen(name) - 1);
    if (model_read_weight(ck, f32, name, hidden, 0, &w->attn_norm, err) != 0) return -1;
    int rc = 0;
    if (kinds[l] == 'M') {
      rc = read_mamba(ck, f, f32, l, &w->mamba, err);
    } else if (kinds[l] == '*') {
      const char *names[4] = {n->q_proj, n->k_proj, n->v_proj, n->o_proj};
      const int64_t rows[4] = {q_dim, kv_dim, kv_dim, hidden}, cols[4] = {hidden, hidden, hidden, q_dim};
      void **weights[4] = {&w->wq, &w->wk, &w->wv, &w->wo}, **biases[4] = {&w->bq, &w->bk, &w->bv, &w->bo};
      for (int i = 0; rc == 0 && i < 4; i++) {
        family_layer_module(f, l, names[i], name, sizeof name);
        rc = read_pair(ck, f32, name, attention_bias, rows[i], cols[i], weights[i], biases[i], err);
      }
    } else if (kinds[l] == 'E') {
      rc = read_moe(ck, f, f32, l, &w->moe, err);
    } else {
      family_layer_module(f, l, n->up_proj, name, sizeof name);
      rc = read_pair(ck, f32, name, mlp_bias, inter, hidden, &w->w_up, &w->b_up, err);
      family_layer_module(f, l, n->down_proj, name, sizeof name);
      if (rc == 0) rc = read_pair(ck, f32, name, mlp_bias, hidden, inter, &w->w_down, &w->b_down, err);
    }
    if (rc != 0) return -1;
  }
  if (model_read_weight(ck, f32, final_norm, hidden, 0, &m->final_norm, err) != 0) return -1;
  if (checkpoint_find(ck, lm_head) || !c->tie_word_embeddings)
    return model_read_weight(ck, f32, lm_head, c->vocab_size, hidden, &m->lm_head, err);
  m->lm_head = m->embed;
  return 0;
}

void mamba_free(mamba_weights *w) {
  if (!w) return;
  void *all[] = {w->in_proj, w->in_proj_bias, w->conv_weight, w->conv_bias,    w->dt_bias, w->a_log,
                 w->d,       w->norm,         w->out_proj,    w->out_proj_bias};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
  free(w);
}

int nemotron_h_read_weights(const checkpoint *ck, const family_descriptor *f, struct model *m, rotq_error *err) {
  const family_layer_names *n = &f->names;
  if (!n->attn_norm || !n->q_proj || !n->k_proj || !n->v_proj || !n->o_proj || !n->up_proj || !n->down_proj ||
      !n->router || !n->experts || !n->expert_proj[1] || !n->expert_proj[2] || !n->shared_expert || !n->mamba)
    return rotq_fail(err, "%s: family %s does not name every module of a Nemotron-H layer", ck->dir, f->family);
  char *kinds = pattern_alloc(&ck->config, err);
  if (!kinds) return -1;
  int rc = read_weights(ck, f, m, kinds, err);
  free(kinds);
  return rc;
}
