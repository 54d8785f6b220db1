/* Reading OPT checkpoints (see opt.h). */
#include "model/opt.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "model/load_weight.h"

/* A boolean field that must have the value `expected` when present (default expected). */
static int require_bool(const model_config *c, const char *key, bool expected, const char *why, rotq_error *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(c->json, key);
  if (!item || cJSON_IsNull(item)) return 0;
  if (!cJSON_IsBool(item) || cJSON_IsTrue(item) != expected)
    return rotq_fail(err, "%s: %s %s is not supported (%s)", c->path, key, expected ? "false" : "true", why);
  return 0;
}

int opt_prepare_config(model_config *c, rotq_error *err) {
  long ffn;
  if (model_config_int(c, "ffn_dim", &ffn, err) != 0) return -1;
  if (ffn < 1) return rotq_fail(err, "%s: field 'ffn_dim' must be positive", c->path);
  c->intermediate_size = (int)ffn;
  if (!cJSON_GetObjectItemCaseSensitive(c->json, "layer_norm_eps")) c->rms_norm_eps = 1e-5; /* nn.LayerNorm */
  long projection = c->hidden_size;
  if (cJSON_GetObjectItemCaseSensitive(c->json, "word_embed_proj_dim") &&
      model_config_int(c, "word_embed_proj_dim", &projection, err) != 0)
    return -1;
  if (projection != c->hidden_size)
    return rotq_fail(err, "%s: word_embed_proj_dim %ld differs from hidden_size %d (project_in/out) is not supported",
                     c->path, projection, c->hidden_size);
  const cJSON *act = cJSON_GetObjectItemCaseSensitive(c->json, "activation_function");
  if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "relu") == 0))
    return rotq_fail(err, "%s: activation_function must be \"relu\"", c->path);
  return require_bool(c, "do_layer_norm_before", true, "post-LayerNorm layers", err) ||
                 require_bool(c, "enable_bias", true, "linears without biases", err) ||
                 require_bool(c, "layer_norm_elementwise_affine", true, "LayerNorm without weights", err) ||
                 require_bool(c, "_remove_final_layer_norm", false, "no final LayerNorm", err)
             ? -1
             : 0;
}

/* "<prefix>.weight" [rows, cols] (cols 0: a vector) and, when bias, "<prefix>.bias" [rows]. */
static int read_pair(const checkpoint *ck, bool f32, const char *prefix, int64_t rows, int64_t cols, void **weight,
                     void **bias, rotq_error *err) {
  char name[256];
  snprintf(name, sizeof name, "%s.weight", prefix);
  if (model_read_weight(ck, f32, name, rows, cols, weight, err) != 0) return -1;
  snprintf(name, sizeof name, "%s.bias", prefix);
  return model_read_weight(ck, f32, name, rows, 0, bias, err);
}

static int read_layer(const checkpoint *ck, const family_descriptor *f, bool f32, int l, layer_weights *w,
                      rotq_error *err) {
  const model_config *c = &ck->config;
  const int64_t hidden = c->hidden_size, ffn = c->intermediate_size;
  char p[8][128];
  const family_layer_names *n = &f->names;
  const char *const modules[8] = {n->attn_norm, n->q_proj,   n->k_proj,  n->v_proj,
                                  n->o_proj,    n->mlp_norm, n->up_proj, n->down_proj};
  for (int i = 0; i < 8; i++) {
    if (!modules[i]) return rotq_fail(err, "%s: family %s names no module %d of an OPT layer", ck->dir, f->family, i);
    family_layer_module(f, l, modules[i], p[i], sizeof p[i]);
  }
  return read_pair(ck, f32, p[0], hidden, 0, &w->attn_norm, &w->attn_norm_bias, err) ||
                 read_pair(ck, f32, p[1], hidden, hidden, &w->wq, &w->bq, err) ||
                 read_pair(ck, f32, p[2], hidden, hidden, &w->wk, &w->bk, err) ||
                 read_pair(ck, f32, p[3], hidden, hidden, &w->wv, &w->bv, err) ||
                 read_pair(ck, f32, p[4], hidden, hidden, &w->wo, &w->bo, err) ||
                 read_pair(ck, f32, p[5], hidden, 0, &w->mlp_norm, &w->mlp_norm_bias, err) ||
                 read_pair(ck, f32, p[6], ffn, hidden, &w->w_gate, &w->b_gate, err) ||
                 read_pair(ck, f32, p[7], hidden, ffn, &w->w_down, &w->b_down, err)
             ? -1
             : 0;
}

int opt_read_weights(const checkpoint *ck, const family_descriptor *f, model *m, rotq_error *err) {
  const model_config *c = &ck->config;
  const int64_t hidden = c->hidden_size;
  const bool f32 = m->f32;
  m->layer_norm = true;
  m->activation = ACT_RELU;
  for (int i = 0; i < c->head_dim / 2; i++) m->inv_freq[i] = 0; /* no RoPE */
  if (c->max_position_embeddings < 1)
    return rotq_fail(err, "%s: missing required field 'max_position_embeddings'", c->path);
  char embed[160], positions[160], lm_head[160];
  snprintf(embed, sizeof embed, "%s.weight", f->embed);
  snprintf(positions, sizeof positions, "%s.weight", f->position_embed);
  snprintf(lm_head, sizeof lm_head, "%s.weight", f->lm_head);
  if (model_read_weight(ck, f32, embed, c->vocab_size, hidden, &m->embed, err) != 0 ||
      model_read_weight(ck, f32, positions, (int64_t)c->max_position_embeddings + 2, hidden, &m->positions, err) != 0)
    return -1;
  for (int l = 0; l < c->num_hidden_layers; l++)
    if (read_layer(ck, f, f32, l, &m->layers[l], err) != 0) return -1;
  if (read_pair(ck, f32, f->final_norm, hidden, 0, &m->final_norm, &m->final_norm_bias, err) != 0) return -1;
  if (checkpoint_find(ck, lm_head)) return model_read_weight(ck, f32, lm_head, c->vocab_size, hidden, &m->lm_head, err);
  if (!c->tie_word_embeddings)
    return rotq_fail(err, "%s: tensor '%s' is missing and tie_word_embeddings is false", ck->dir, lm_head);
  m->lm_head = m->embed; /* OPTConfig ties by default */
  return 0;
}
