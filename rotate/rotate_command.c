#include "rotate/rotate_command.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/mla.h"

static int residual_rotation_forbidden(const model_adapter *a, const rotate_command *embed, rotq_error *err);
static int check_sizes(const command_list *list, const checkpoint *ck, const model_adapter *a, rotq_error *err);
static int layer_norm_commands(command_list *list, const checkpoint *ck, const model_adapter *a, rotq_error *err);

static rotate_command *add_command(command_list *list, const char *name, const char *source, int layer) {
  if (list->count == list->capacity) {
    size_t cap = list->capacity ? list->capacity * 2 : 256;
    rotate_command *grown = realloc(list->items, cap * sizeof *grown);
    if (!grown) return NULL;
    list->items = grown;
    list->capacity = cap;
  }
  rotate_command *c = &list->items[list->count++];
  memset(c, 0, sizeof *c);
  snprintf(c->name, sizeof c->name, "%s", name);
  snprintf(c->source, sizeof c->source, "%s", source);
  c->layer = layer;
  return c;
}

static void warn(command_list *list, const char *fmt, const char *a, const char *b) {
  if (list->warning_count == (int)(sizeof list->warnings / sizeof list->warnings[0])) return;
  snprintf(list->warnings[list->warning_count++], sizeof list->warnings[0], fmt, a, b);
}

rotate_command *commands_find(const command_list *list, const char *name) {
  for (size_t i = 0; i < list->count; i++)
    if (strcmp(list->items[i].name, name) == 0) return &list->items[i];
  return NULL;
}

bool tensor_module(const char *tensor, char *module, size_t cap, bool *is_bias) {
  snprintf(module, cap, "%s", tensor);
  size_t n = strlen(module);
  *is_bias = false;
  if (n > 7 && strcmp(module + n - 7, ".weight") == 0) {
    module[n - 7] = '\0';
    return true;
  }
  if (n > 5 && strcmp(module + n - 5, ".bias") == 0) {
    module[n - 5] = '\0';
    *is_bias = true;
    return true;
  }
  if (n > 10 && strcmp(module + n - 10, "_proj_bias") == 0) {
    module[n - 5] = '\0';
    *is_bias = true;
    return true;
  }
  return false;
}

static const rotation_rule *rule_for(const rotation_config *config, const char *module) {
  for (int i = 0; i < config->rule_count; i++)
    if (pattern_matches(config->rules[i].pattern, module)) return &config->rules[i];
  return NULL;
}

/* For the adapter's v_proj when it is a fused qkv_proj (the V rows, after the Q and K rows) or MLA's
 * kv_b_proj (each head's value rows, after its no-RoPE key rows): the rows the output rotation acts on. */
static int limit_to_v_rows(rotate_command *c, const model_adapter *a, const model_config *config, rotq_error *err) {
  char module[TENSOR_NAME_MAX], v_module[TENSOR_NAME_MAX];
  bool is_bias;
  tensor_module(c->name, module, sizeof module, &is_bias);
  if (!(a->v_rows_after_qk || a->v_rows_mla) || c->layer < 0 || !a->v_proj) return 0;
  adapter_layer_module(a, c->layer, a->v_proj, v_module, sizeof v_module);
  if (strcmp(module, v_module) != 0) return 0;
  if (a->v_rows_mla) {
    long nope, v_dim;
    if (mla_head_dims(config, &nope, &v_dim, err) < 0)
      return rotq_fail_context(err, "tensor '%s' (MLA's kv_b_proj)", c->name);
    c->output_row_begin = nope;
    c->output_row_count = v_dim;
    c->output_row_stride = nope + v_dim;
    return 0;
  }
  long head_dim = adapter_head_dim(config);
  c->output_row_begin = (long)(adapter_num_attention_heads(config) + adapter_num_key_value_heads(config)) * head_dim;
  c->output_row_count = (long)adapter_num_key_value_heads(config) * head_dim;
  return 0;
}

/* Side 0 (input) or 1 (output) of a fused experts' tensor: a 3-D weight [experts, in, out] takes Rin
 * on axis 1 and Rout on axis 2, its bias [experts, out] Rout on axis 1. */
static int apply_in_out_side(rotate_command *c, const st_tensor *t, const rotation_rule *rule, int side,
                             const rotation *r, rotq_error *err) {
  const char *side_name = side == 0 ? rule->input : rule->output;
  if (c->in_out ? t->ndim != 3 : t->ndim != 2)
    return rotq_fail(err, "tensor '%s' (rule '%s'): fused experts are stored as %s, shape has %d dims", c->name,
                     rule->pattern, c->in_out ? "3-D [experts, in, out]" : "a 2-D bias [experts, out]", t->ndim);
  const int in_axis = c->out_in_source ? 2 : 1, out_axis = c->out_in_source ? 1 : 2;
  long extent = c->in_out ? t->shape[side == 0 ? in_axis : out_axis] : t->shape[1], n = rotation_dim(r);
  if (extent % n != 0)
    return rotq_fail(err, "tensor '%s' (rule '%s'): %s size %ld is not a multiple of matrix '%s' dim %ld", c->name,
                     rule->pattern, side == 0 ? "input" : "output", extent, side_name, n);
  if (side == 0) {
    c->input = r;
    snprintf(c->input_name, sizeof c->input_name, "%s", side_name);
  } else {
    c->output = r;
    snprintf(c->output_name, sizeof c->output_name, "%s", side_name);
  }
  return 0;
}

/* Applies the rotate rule of c's module: resolves matrices for c's layer, checks dims. */
static int apply_rule(rotate_command *c, const st_tensor *t, const rotation_rule *rule, const rotation_set *set,
                      const model_config *config, rotq_error *err) {
  const char *side_name[2] = {rule->input, rule->output};
  for (int side = 0; side < 2; side++) {
    if (!side_name[side][0]) continue;
    if (side == 0 && c->is_bias) continue; /* a bias has no input side */
    const rotation *r = rotation_set_get(set, side_name[side], c->layer, err);
    if (!r) return rotq_fail_context(err, "tensor '%s' (rule '%s')", c->name, rule->pattern);
    long n = rotation_dim(r);
    if (c->in_out || (c->is_bias && t->ndim == 2)) { /* fused experts [E, in, out] and their biases [E, out] */
      if (apply_in_out_side(c, t, rule, side, r, err) < 0) return -1;
      continue;
    }
    long extent = side == 0             ? (t->ndim == 2 ? t->shape[1] : -1)
                  : c->output_row_count ? c->output_row_count
                                        : t->shape[0];
    if (side == 1 && c->output_row_stride &&
        (t->ndim != 2 || t->shape[0] != (int64_t)adapter_num_attention_heads(config) * c->output_row_stride))
      return rotq_fail(err,
                       "tensor '%s' (rule '%s'): %ld rows, but config.json's %d heads of %ld key and %ld value rows "
                       "make %ld",
                       c->name, rule->pattern, (long)t->shape[0], adapter_num_attention_heads(config),
                       c->output_row_begin, c->output_row_count,
                       (long)adapter_num_attention_heads(config) * c->output_row_stride);
    if (side == 1 && !c->output_row_stride && c->output_row_begin + c->output_row_count > t->shape[0])
      return rotq_fail(err, "tensor '%s' (rule '%s'): %ld rows, fewer than the %ld Q, K and V rows of config.json",
                       c->name, rule->pattern, (long)t->shape[0], c->output_row_begin + c->output_row_count);
    if (t->ndim < 1 || t->ndim > 2 || (side == 0 && t->ndim != 2))
      return rotq_fail(err, "tensor '%s' (rule '%s'): a %s rotation needs a 2-D [out, in] weight, shape has %d dims",
                       c->name, rule->pattern, side == 0 ? "input" : "output", t->ndim);
    if (extent % n != 0)
      return rotq_fail(err, "tensor '%s' (rule '%s'): %s size %ld is not a multiple of matrix '%s' dim %ld", c->name,
                       rule->pattern, side == 0 ? "input" : "output", extent, side_name[side], n);
    if (side == 0) {
      c->input = r;
      snprintf(c->input_name, sizeof c->input_name, "%s", side_name[side]);
    } else {
      c->output = r;
      snprintf(c->output_name, sizeof c->output_name, "%s", side_name[side]);
    }
  }
  return 0;
}

/* Marks norm (absolute module) as fused into the linears matching linears_glob (absolute,
 * '|'-separated). Errors if the norm or no linear exists (a config entry that does not fit a
 * layer is skipped before: fuse_entry). */
static int fuse(command_list *list, const checkpoint *ck, const model_adapter *a, const char *norm,
                const char *linears_glob, rotq_error *err) {
  const char *dot = adapter_layer_of(a, norm) >= 0 ? strchr(norm + strlen(a->layer_prefix) + 1, '.') : NULL;
  if (a->writer_output_norms && dot && pattern_matches(a->writer_output_norms, dot + 1))
    return rotq_fail(err,
                     "norm '%s' normalizes a residual writer's output (%s): it feeds no linear and "
                     "cannot be fused",
                     norm, ck->config.architecture);
  char norm_weight[TENSOR_NAME_MAX];
  snprintf(norm_weight, sizeof norm_weight, "%s.weight", norm);
  rotate_command *nc = commands_find(list, norm_weight);
  if (!nc) return rotq_fail(err, "norm '%s' of the fuse map is not in the checkpoint", norm_weight);
  if (checkpoint_find(ck, norm_weight)->ndim != 1) return rotq_fail(err, "norm '%s' should be 1-D", norm_weight);
  int matched = 0;
  for (size_t i = 0; i < list->count; i++) {
    rotate_command *c = &list->items[i];
    char module[TENSOR_NAME_MAX];
    bool is_bias;
    tensor_module(c->name, module, sizeof module, &is_bias);
    if (is_bias || !pattern_matches(linears_glob, module)) continue;
    if (c->fuse_norm[0])
      return rotq_fail(err, "tensor '%s' is fed by two norms ('%s' and '%s')", c->name, c->fuse_norm, norm_weight);
    snprintf(c->fuse_norm, sizeof c->fuse_norm, "%s", norm_weight);
    matched++;
  }
  if (!matched)
    return rotq_fail(err, "norm '%s' is to be fused into '%s', which matches no tensor", norm, linears_glob);
  nc->reset_norm = true;
  return 0;
}

/* Turns a config fuse entry's linears (relative names) into one absolute glob list. */
static void absolute_glob(const model_adapter *a, int layer, const char *const *names, int count, char *out,
                          size_t cap) {
  out[0] = '\0';
  for (int i = 0; i < count; i++) {
    char abs[512];
    if (layer >= 0)
      adapter_layer_module(a, layer, names[i], abs, sizeof abs);
    else
      snprintf(abs, sizeof abs, "%s", names[i]);
    if (i) strncat(out, "|", cap - strlen(out) - 1);
    strncat(out, abs, cap - strlen(out) - 1);
  }
}

/* 1 if some weight of layer is a module matching glob (absolute). */
static int layer_has_weight(const command_list *list, int layer, const char *glob) {
  for (size_t i = 0; i < list->count; i++) {
    const rotate_command *c = &list->items[i];
    char module[TENSOR_NAME_MAX];
    bool is_bias;
    if (c->layer != layer) continue;
    tensor_module(c->name, module, sizeof module, &is_bias);
    if (!is_bias && pattern_matches(glob, module)) return 1;
  }
  return 0;
}

/* One decoder_layer_fuse entry in one layer: 0 fused, 1 skipped (the layer lacks the norm or every
 * linear: another kind of layer), -1 when the layer has some of the linears but not all (a tensor
 * missing from the checkpoint). */
static int fuse_entry(command_list *list, const checkpoint *ck, const model_adapter *a, const norm_fuse_rule *r,
                      int layer, rotq_error *err) {
  char norm[512], norm_weight[TENSOR_NAME_MAX], glob[4096], missing[512] = "";
  adapter_layer_module(a, layer, r->norm, norm, sizeof norm);
  snprintf(norm_weight, sizeof norm_weight, "%s.weight", norm);
  if (!commands_find(list, norm_weight)) return 1;
  int present = 0;
  for (int i = 0; i < r->linear_count; i++) {
    char abs[512];
    adapter_layer_module(a, layer, r->linears[i], abs, sizeof abs);
    if (layer_has_weight(list, layer, abs))
      present++;
    else if (!missing[0])
      snprintf(missing, sizeof missing, "%s", abs);
  }
  if (present == 0) return 1;
  if (present < r->linear_count)
    return rotq_fail(err, "layer %d has '%s' and %d of the linears [%s%s] to fuse it into, but no tensor '%s.weight'",
                     layer, norm, present, r->linears[0], r->linear_count > 1 ? ", ..." : "", missing);
  const char *names[16];
  for (int i = 0; i < r->linear_count; i++) names[i] = r->linears[i];
  absolute_glob(a, layer, names, r->linear_count, glob, sizeof glob);
  return fuse(list, ck, a, norm, glob, err);
}

/* The fuse map. A config's decoder_layer_fuse entries apply per layer, as modelopt's do: in a
 * layer without the entry's norm or any of its linears (a hybrid model's Mamba, attention, MLP and
 * MoE layers each have one mixer's readers) the entry is skipped; commands_check then proves that
 * every residual reader of every layer was covered. An entry that applies in no layer at all is
 * an error under strict: true, else a warning. */
static int build_fuse_map(command_list *list, const checkpoint *ck, const model_adapter *a,
                          const rotation_config *config, char *unapplied, size_t unapplied_cap, rotq_error *err) {
  int layers = ck->config.num_hidden_layers;
  char glob[4096], norm[512];
  bool applied[16] = {false};
  for (int layer = 0; layer < layers; layer++) {
    if (config->layer_fuse_count > 0) {
      for (int f = 0; f < config->layer_fuse_count; f++) {
        int rc = fuse_entry(list, ck, a, &config->layer_fuse[f], layer, err);
        if (rc < 0) {
          if (a->builtin_config && strcmp(a->builtin_config, config->origin) != 0)
            rotq_fail_context(err, "%s (%s) has its own built-in config, --config %s", ck->config.architecture,
                              a->family, a->builtin_config);
          return rotq_fail_context(err, "%s: decoder_layer_fuse", config->origin);
        }
        if (rc == 0) applied[f] = true;
      }
    } else {
      for (int f = 0; f < 4 && a->layer_fuse[f].norm; f++) {
        /* the adapter's linears are already one '|' list of relative names */
        char rel[1024];
        snprintf(rel, sizeof rel, "%s", a->layer_fuse[f].linears);
        const char *names[16];
        int count = 0;
        for (char *tok = strtok(rel, "|"); tok && count < 16; tok = strtok(NULL, "|")) names[count++] = tok;
        absolute_glob(a, layer, names, count, glob, sizeof glob);
        adapter_layer_module(a, layer, a->layer_fuse[f].norm, norm, sizeof norm);
        if (fuse(list, ck, a, norm, glob, err) < 0) return -1;
      }
    }
  }
  for (int f = 0; layers > 0 && f < config->layer_fuse_count; f++) {
    if (applied[f]) continue;
    const norm_fuse_rule *r = &config->layer_fuse[f];
    char linears[1024] = "";
    for (int i = 0; i < r->linear_count; i++) {
      if (i) strncat(linears, ", ", sizeof linears - strlen(linears) - 1);
      strncat(linears, r->linears[i], sizeof linears - strlen(linears) - 1);
    }
    char text[512];
    snprintf(text, sizeof text,
             "%.200s: decoder_layer_fuse [%.60s, [%.150s]] matches no layer (no '%.60s' with any of those linears "
             "in %.60s.*)",
             config->origin, r->norm, linears, r->norm, a->layer_prefix);
    if (config->strict) return rotq_fail(err, "%s", text);
    if (!unapplied[0]) snprintf(unapplied, unapplied_cap, "%s", text);
    if (list->warning_count < (int)(sizeof list->warnings / sizeof list->warnings[0]))
      snprintf(list->warnings[list->warning_count++], sizeof list->warnings[0], "%s", text);
  }
  if (config->head_fuse_count > 0) {
    for (int f = 0; f < config->head_fuse_count; f++) {
      const norm_fuse_rule *r = &config->head_fuse[f];
      const char *names[16];
      for (int i = 0; i < r->linear_count; i++) names[i] = r->linears[i];
      absolute_glob(a, -1, names, r->linear_count, glob, sizeof glob);
      if (fuse(list, ck, a, r->norm, glob, err) < 0) return rotq_fail_context(err, "%s: lm_head_fuse", config->origin);
    }
  } else if (fuse(list, ck, a, a->final_norm, a->lm_head, err) < 0) {
    return -1;
  }
  return 0;
}

/* The unit w with R1ᵀ·u = u − 2w(wᵀu)... precisely: P = I − 2wwᵀ swaps u = 1/√n and a = R1ᵀ·u, so
 * R1·P maps u to itself. NULL (and 0) when R1 already fixes u. */
static int stream_reflection(const rotation *r1, int hidden, double **out, rotq_error *err) {
  *out = NULL;
  int n = rotation_dim(r1);
  if (n != hidden)
    return rotq_fail(err,
                     "a LayerNorm model needs R1 of the hidden size (%d), not %d: its rotation must keep "
                     "the mean direction",
                     hidden, n);
  double *w = malloc(sizeof(double) * (size_t)n);
  if (!w) return rotq_fail(err, "out of memory");
  double u = 1 / sqrt((double)n), length = 0;
  for (int i = 0; i < n; i++) w[i] = u;
  if (rotation_apply_rows_f64(r1, w, 1, (size_t)n, (size_t)n) < 0) { /* the row uᵀ·R1 = (R1ᵀ·u)ᵀ */
    free(w);
    return rotq_fail(err, "out of memory (rotation scratch of R1)");
  }
  for (int i = 0; i < n; i++) length += (w[i] - u) * (w[i] - u);
  length = sqrt(length);
  if (length < 1e-12) {
    free(w);
    return 0;
  }
  for (int i = 0; i < n; i++) w[i] = (w[i] - u) / length;
  *out = w;
  return 0;
}

/* "<module>.bias" of a tensor "<module>.weight" into out; false if name is not a weight. */
static bool bias_name(const char *weight, char *out, size_t cap) {
  size_t n = strlen(weight);
  if (n < 7 || strcmp(weight + n - 7, ".weight") != 0) return false;
  snprintf(out, cap, "%.*s.bias", (int)(n - 7), weight);
  return true;
}

/* LayerNorm families: (1) the mean over the hidden dimension is baked into every residual writer
 * (weight and bias) and the embeddings (tokens and positions), so the stream is centred and
 * LayerNorm's centring does nothing; (2) each fused norm's bias β is folded into its readers'
 * biases, b ← b + W·β with W the original weight, and reset to 0 — or, when a reader has no bias
 * (lm_head), kept as β ← (β/γ)·R1, which the rotated readers W·diag(γ)·R1 turn back into W·β;
 * (3) R1 becomes R1·(I − 2wwᵀ), which maps the ones direction to itself, so the rotated stream
 * stays centred and LayerNorm's centring stays a no-op. */
static int layer_norm_commands(command_list *list, const checkpoint *ck, const model_adapter *a, rotq_error *err) {
  char embed_weight[TENSOR_NAME_MAX], position_weight[TENSOR_NAME_MAX] = "";
  snprintf(embed_weight, sizeof embed_weight, "%s.weight", a->embed);
  if (a->position_embed) snprintf(position_weight, sizeof position_weight, "%s.weight", a->position_embed);
  for (size_t i = 0; i < list->count; i++) {
    rotate_command *c = &list->items[i];
    char module[TENSOR_NAME_MAX];
    bool is_bias;
    tensor_module(c->name, module, sizeof module, &is_bias);
    c->bake_mean = adapter_is_writer(a, module) || strcmp(c->name, embed_weight) == 0 ||
                   (position_weight[0] && strcmp(c->name, position_weight) == 0);
  }
  /* norm biases: folded when every reader of the norm has a bias, else kept */
  for (size_t i = 0; i < list->count; i++) {
    rotate_command *norm = &list->items[i];
    char beta[TENSOR_NAME_MAX], reader_bias[TENSOR_NAME_MAX];
    if (!norm->reset_norm || norm->is_bias || !bias_name(norm->name, beta, sizeof beta)) continue;
    rotate_command *beta_command = commands_find(list, beta);
    if (!beta_command) continue;
    bool all_have_bias = true;
    for (size_t j = 0; j < list->count; j++) {
      const rotate_command *r = &list->items[j];
      if (strcmp(r->fuse_norm, norm->name) == 0 && !r->is_bias &&
          (!bias_name(r->name, reader_bias, sizeof reader_bias) || !commands_find(list, reader_bias)))
        all_have_bias = false;
    }
    if (!all_have_bias) {
      const rotate_command *embed = commands_find(list, embed_weight);
      beta_command->keep_norm_bias = true;
      snprintf(beta_command->fuse_norm, sizeof beta_command->fuse_norm, "%s", norm->name);
      beta_command->input = embed->input;
      snprintf(beta_command->input_name, sizeof beta_command->input_name, "%s", embed->input_name);
      continue;
    }
    beta_command->reset_norm = true;
    for (size_t j = 0; j < list->count; j++) {
      const rotate_command *r = &list->items[j];
      if (strcmp(r->fuse_norm, norm->name) != 0 || r->is_bias) continue;
      bias_name(r->name, reader_bias, sizeof reader_bias);
      rotate_command *b = commands_find(list, reader_bias);
      snprintf(b->fold_norm_bias, sizeof b->fold_norm_bias, "%s", beta);
      snprintf(b->fold_weight, sizeof b->fold_weight, "%s", r->source);
    }
  }
  /* R1 keeps the ones direction */
  const rotation *r1 = commands_find(list, embed_weight)->input;
  if (!r1) return 0;
  if (stream_reflection(r1, ck->config.hidden_size, &list->reflection, err) < 0) return -1;
  for (size_t i = 0; list->reflection && i < list->count; i++) {
    rotate_command *c = &list->items[i];
    c->reflection = list->reflection;
    c->reflect_input = c->input == r1;
    c->reflect_output = c->output == r1;
  }
  return 0;
}

int commands_build(const checkpoint *ck, const model_adapter *a, const rotation_config *config, const rotation_set *set,
                   command_list *out, rotq_error *err) {
  memset(out, 0, sizeof *out);
  char embed_weight[TENSOR_NAME_MAX], head_weight[TENSOR_NAME_MAX];
  snprintf(embed_weight, sizeof embed_weight, "%s.weight", a->embed);
  snprintf(head_weight, sizeof head_weight, "%s.weight", a->lm_head);
  const st_tensor *embed = checkpoint_find(ck, embed_weight);
  if (!embed) return rotq_fail(err, "the embedding '%s' is missing", embed_weight);
  /* The residual width every rotation is sized from must be the tensors' (--verify is not always on). */
  if (embed->ndim != 2 || embed->shape[0] != ck->config.vocab_size || embed->shape[1] != ck->config.hidden_size)
    return rotq_fail(err, "tensor '%s': shape [%lld, %lld] does not match config.json (expected [%d, %d])",
                     embed_weight, (long long)embed->shape[0], embed->ndim > 1 ? (long long)embed->shape[1] : 0LL,
                     ck->config.vocab_size, ck->config.hidden_size);

  /* Every tensor of the input, plus lm_head cloned from the embedding when tied (untie). */
  for (size_t i = 0; i < ck->tensor_count; i++) {
    const st_tensor *t = ck->tensors[i];
    char module[TENSOR_NAME_MAX];
    bool is_bias;
    tensor_module(t->name, module, sizeof module, &is_bias);
    int layer = adapter_layer_of(a, module);
    if (layer >= ck->config.num_hidden_layers) {
      /* DeepSeek-V3's multi-token-prediction layer is stored as layer num_hidden_layers: a layer the
         model's forward pass never runs, which ends in its own norm before the shared lm_head */
      rotq_fail(err,
                "tensor '%s' belongs to layer %d, but config.json has num_hidden_layers %d%s: rotq rotates the "
                "decoder layers only; remove the extra layer's tensors (transformers ignores them at load)",
                t->name, layer, ck->config.num_hidden_layers,
                cJSON_GetObjectItemCaseSensitive(ck->config.json, "num_nextn_predict_layers")
                    ? " (a multi-token-prediction layer, num_nextn_predict_layers, is not supported)"
                    : "");
      goto fail;
    }
    if (!add_command(out, t->name, t->name, layer)) goto oom;
    out->items[out->count - 1].is_bias = is_bias;
    const char *rel = adapter_relative_name(a, module);
    out->items[out->count - 1].in_out = !is_bias && rel && a->in_out_layout && pattern_matches(a->in_out_layout, rel);
    /* MXFP4 experts (gpt-oss's release) are stored per output row: [experts, out, in] */
    out->items[out->count - 1].out_in_source = out->items[out->count - 1].in_out && t->scaling == ST_SCALE_MXFP4;
  }
  const st_tensor *head = checkpoint_find(ck, head_weight);
  if (!head && !add_command(out, head_weight, embed_weight, -1)) goto oom;
  if (head && ck->config.tie_word_embeddings &&
      (head->nbytes != embed->nbytes || head->dtype != embed->dtype || memcmp(head->data, embed->data, head->nbytes)))
    warn(out,
         "config.json ties the embeddings, but the checkpoint ships a '%s' that differs from '%s': rotq rotates "
         "the shipped one and unties (a loader that re-ties would use the embedding instead)",
         head_weight, embed_weight);

  /* Rotate map: the first rule whose pattern matches a tensor's module. */
  int *rule_hits = calloc((size_t)config->rule_count + 1, sizeof(int));
  bool *shadowed = calloc((size_t)config->rule_count * (size_t)config->rule_count + 1, sizeof(bool));
  if (!rule_hits || !shadowed) {
    free(rule_hits);
    free(shadowed);
    goto oom;
  }
  for (size_t i = 0; i < out->count; i++) {
    rotate_command *c = &out->items[i];
    char module[TENSOR_NAME_MAX];
    bool is_bias;
    tensor_module(c->name, module, sizeof module, &is_bias);
    const rotation_rule *rule = rule_for(config, module);
    if (!rule) continue;
    rule_hits[rule - config->rules]++;
    /* a module several rules match takes the first one's; said once per pair of rules */
    for (int later = (int)(rule - config->rules) + 1; later < config->rule_count; later++) {
      int first = (int)(rule - config->rules);
      if (shadowed[first * config->rule_count + later] || !pattern_matches(config->rules[later].pattern, module))
        continue;
      shadowed[first * config->rule_count + later] = true;
      if (out->warning_count < (int)(sizeof out->warnings / sizeof out->warnings[0]))
        snprintf(out->warnings[out->warning_count++], sizeof out->warnings[0],
                 "tensor '%.200s' matches rotation_config '%.100s' and '%.100s': the first rule applies (to every "
                 "tensor both match)",
                 c->name, rule->pattern, config->rules[later].pattern);
    }
    if ((rule->output[0] && limit_to_v_rows(c, a, &ck->config, err) < 0) ||
        apply_rule(c, checkpoint_find(ck, c->source), rule, set, &ck->config, err) < 0) {
      free(rule_hits);
      free(shadowed);
      goto fail;
    }
  }
  free(shadowed);
  for (int r = 0; r < config->rule_count; r++) {
    if (rule_hits[r]) continue;
    if (config->strict) {
      rotq_fail(err, "%s: rotation_config '%s' matches no tensor", config->origin, config->rules[r].pattern);
      free(rule_hits);
      goto fail;
    }
    warn(out, "rotation_config '%s' matches no tensor (%s)", config->rules[r].pattern, "ignored");
  }
  free(rule_hits);
  return 0;
oom:
  rotq_fail(err, "out of memory");
fail:
  commands_free(out);
  return -1;
}

int commands_complete(command_list *out, const checkpoint *ck, const model_adapter *a, const rotation_config *config,
                      rotq_error *err) {
  char embed_weight[TENSOR_NAME_MAX];
  snprintf(embed_weight, sizeof embed_weight, "%s.weight", a->embed);
  if (check_sizes(out, ck, a, err) < 0) goto fail;
  if (residual_rotation_forbidden(a, commands_find(out, embed_weight), err) < 0) goto fail;
  char unapplied[512] = "";
  if (build_fuse_map(out, ck, a, config, unapplied, sizeof unapplied, err) < 0) goto fail;
  if (a->norm == NORM_LAYER && layer_norm_commands(out, ck, a, err) < 0) goto fail;
  if (commands_check(out, a, err) < 0) {
    /* a plan the config left incomplete: say which fuse entry fit no layer, and the family's config */
    if (a->builtin_config && strcmp(a->builtin_config, config->origin) != 0)
      rotq_fail_context(err, "%s (%s) has its own built-in config, --config %s", ck->config.architecture, a->family,
                        a->builtin_config);
    if (unapplied[0]) rotq_fail_context(err, "%s", unapplied);
    goto fail;
  }
  return 0;
fail:
  commands_free(out);
  return -1;
}

static const char *online_label(online_kind kind) {
  return kind == ONLINE_INPUT ? "R4 (down_proj input)" : "heads rotation (o_proj input)";
}

/* An online rotation's weight half acts on the whole input of one 2-D weight: R4's order must be
 * the input width (the intermediate size), the heads rotation's times head_dim too. */
static int check_online_size(const rotate_command *c, const st_tensor *t, long head_dim, rotq_error *err) {
  if (!c->online_rotation)
    return rotq_fail(err, "tensor '%s': online %s without a matrix", c->name, online_label(c->online));
  long order = (long)rotation_dim(c->online_rotation) * (c->online == ONLINE_INPUT_HEADS ? head_dim : 1);
  if (!c->is_bias && t->ndim == 2 && t->shape[1] == order) return 0;
  return rotq_fail(err,
                   "tensor '%s': online %s has order %ld, which needs a 2-D weight whose input is %ld wide; it has "
                   "shape [%lld, %lld] (config.json's sizes do not match the tensors)",
                   c->name, online_label(c->online), order, order, (long long)t->shape[0],
                   (long long)(t->ndim == 2 ? t->shape[1] : 0));
}

/* What the plan's matrices act on, checked against the tensors: the value heads' rotation (R2)
 * must act within one head (attention mixes each head on its own); no projection the adapter
 * knows of, and no tensor the plan changes, may be empty. */
static int check_sizes(const command_list *list, const checkpoint *ck, const model_adapter *a, rotq_error *err) {
  long head_dim = adapter_head_dim(&ck->config), nope;
  if (a->v_rows_mla && mla_head_dims(&ck->config, &nope, &head_dim, err) < 0) return -1; /* value heads */
  for (size_t i = 0; i < list->count; i++) {
    const rotate_command *c = &list->items[i];
    const st_tensor *t = checkpoint_find(ck, c->source);
    char module[TENSOR_NAME_MAX];
    bool is_bias;
    tensor_module(c->name, module, sizeof module, &is_bias);
    const char *rel = adapter_relative_name(a, module);
    bool known = adapter_reader_norm(a, module) || adapter_is_writer(a, module) ||
                 (rel && ((a->v_proj && !strcmp(rel, a->v_proj)) || (a->o_proj && !strcmp(rel, a->o_proj))));
    if ((known || c->input || c->output) && st_numel(t) == 0)
      return rotq_fail(err, "tensor '%s' is empty (shape [%lld%s]): a projection %s cannot have a zero dimension",
                       c->name, (long long)t->shape[0], t->ndim > 1 ? ", ..." : "",
                       known ? "of the residual stream" : "that is rotated");
    bool value_rotation =
        rel && c->layer >= 0 &&
        ((c->output && a->v_proj && !strcmp(rel, a->v_proj)) || (c->input && a->o_proj && !strcmp(rel, a->o_proj)));
    const rotation *r = c->output && a->v_proj && rel && !strcmp(rel, a->v_proj) ? c->output : c->input;
    if (value_rotation && head_dim > 0 && head_dim % rotation_dim(r) != 0)
      return rotq_fail(err,
                       "tensor '%s': matrix '%s' has dim %d, which does not divide %s %ld: a rotation of the "
                       "value heads must act within one head (attention mixes each head on its own)",
                       c->name, r == c->output ? c->output_name : c->input_name, rotation_dim(r),
                       a->v_rows_mla ? "v_head_dim" : "head_dim", head_dim);
    if (c->online != ONLINE_NONE && c->in_out)
      return rotq_fail(err,
                       "tensor '%s': fused experts [experts, in, out] take no online rotation (no serving kernel "
                       "applies one inside a fused MoE); rotate without online R4",
                       c->name);
    if (c->online != ONLINE_NONE && check_online_size(c, t, head_dim, err) < 0) return -1;
  }
  return 0;
}

void commands_free(command_list *list) {
  free(list->items);
  free(list->reflection);
  memset(list, 0, sizeof *list);
}

static const char *matrix_label(const rotation *r, const char *name) { return r ? name : "none"; }

/* Fails, naming why, when the adapter's family has norms on its writers' outputs (Gemma-2/3):
 * no rotation of the residual stream (embed's input rotation) is exact there. 0 otherwise. */
static int residual_rotation_forbidden(const model_adapter *a, const rotate_command *embed, rotq_error *err) {
  if (!a->writer_output_norms || !embed->input) return 0;
  return rotq_fail(err,
                   "%s (%s) normalizes the outputs of its residual writers (%s) before adding them to the "
                   "residual stream: a residual-stream rotation (%s on '%s') does not commute with those "
                   "norms; use the built-in config '%s' (R2 on v_proj/o_proj only)",
                   a->family, a->variants[0].architecture, a->writer_output_norms, embed->input_name, embed->name,
                   a->builtin_config);
}

/* Fails, naming the family's reason, when the family admits no rotation of the value heads
 * (a->r2_refused: Qwen3-Next's output gate) and c puts one on its v_proj's output or its
 * o_proj's input. 0 otherwise. */
static int value_rotation_refused(const model_adapter *a, const rotate_command *c, const char *module,
                                  rotq_error *err) {
  const char *rel = c->layer >= 0 ? adapter_relative_name(a, module) : NULL;
  if (!a->r2_refused || !rel) return 0;
  bool on_v = c->output && a->v_proj && strcmp(rel, a->v_proj) == 0;
  bool on_o = c->input && a->o_proj && strcmp(rel, a->o_proj) == 0;
  if (!on_v && !on_o) return 0;
  return rotq_fail(err,
                   "tensor '%s': %s (%s) admits no rotation of the value heads (%s on its %s): %s; use the "
                   "built-in config '%s' (R1 only)",
                   c->name, a->family, a->variants[0].architecture, on_v ? c->output_name : c->input_name,
                   on_v ? "output" : "input", a->r2_refused, a->builtin_config);
}

/* The command of module <layer>.<relative>.weight, or NULL. */
static const rotate_command *layer_weight(const command_list *list, const model_adapter *a, int layer,
                                          const char *relative) {
  char name[TENSOR_NAME_MAX];
  adapter_layer_module(a, layer, relative, name, sizeof name);
  strncat(name, ".weight", sizeof name - strlen(name) - 1);
  return commands_find(list, name);
}

/* Fails naming the first tensor of list the family cannot rotate (a->refused_tensors). 0 otherwise. */
static int refused_tensor(const command_list *list, const model_adapter *a, rotq_error *err) {
  for (size_t i = 0; a->refused_tensors && i < list->count; i++)
    if (pattern_matches(a->refused_tensors, list->items[i].name))
      return rotq_fail(err,
                       "tensor '%s': %s (%s) checkpoints with these tensors (%s) are not supported: the "
                       "multi-token-prediction module reads the residual stream and ends in a norm of its own before "
                       "the shared lm_head, into which only the model's final norm can be fused, so R1 is not exact "
                       "for it (docs/architectures.md); remove them (transformers ignores them at load)",
                       list->items[i].name, a->family, a->variants[0].architecture, a->refused_tensors);
  return 0;
}

int commands_check(const command_list *list, const model_adapter *a, rotq_error *err) {
  if (refused_tensor(list, a, err) < 0) return -1;
  char embed_weight[TENSOR_NAME_MAX], head_weight[TENSOR_NAME_MAX];
  snprintf(embed_weight, sizeof embed_weight, "%s.weight", a->embed);
  snprintf(head_weight, sizeof head_weight, "%s.weight", a->lm_head);
  const rotate_command *embed = commands_find(list, embed_weight);
  const rotation *r1 = embed->input;
  const char *r1_name = matrix_label(r1, embed->input_name);
  if (embed->output)
    return rotq_fail(err, "tensor '%s': the embedding takes its rotation on the input side [r1, null]", embed_weight);
  if (r1 && residual_rotation_forbidden(a, embed, err) < 0) return -1;
  char position_weight[TENSOR_NAME_MAX];
  snprintf(position_weight, sizeof position_weight, "%s.weight", a->position_embed ? a->position_embed : "");
  const rotate_command *position = a->position_embed ? commands_find(list, position_weight) : NULL;
  if (position && (position->input != r1 || position->output))
    return rotq_fail(err, "tensor '%s' adds to the residual stream: it must be rotated like the embedding [%s, null]",
                     position_weight, r1_name);

  for (size_t i = 0; i < list->count; i++) {
    const rotate_command *c = &list->items[i];
    char module[TENSOR_NAME_MAX];
    bool is_bias;
    /* "<module>.weight" / ".bias"; any other tensor (a router's e_score_correction_bias) is not a linear's */
    tensor_module(c->name, module, sizeof module, &is_bias);
    /* who reads the stream is the adapter's knowledge, not the config's fuse map */
    const char *adapter_norm = c->is_bias || c->layer < 0 ? NULL : adapter_reader_norm(a, module);
    bool reader = c->fuse_norm[0] || strcmp(c->name, head_weight) == 0 || adapter_norm;
    bool writer = adapter_is_writer(a, module);
    if (adapter_norm) {
      char norm_weight[TENSOR_NAME_MAX];
      adapter_layer_module(a, c->layer, adapter_norm, norm_weight, sizeof norm_weight);
      strncat(norm_weight, ".weight", sizeof norm_weight - strlen(norm_weight) - 1);
      const rotate_command *norm = commands_find(list, norm_weight);
      if (c->fuse_norm[0] && strcmp(c->fuse_norm, norm_weight) != 0)
        return rotq_fail(err, "tensor '%s' reads the residual stream through '%s', but '%s' is fused into it", c->name,
                         norm_weight, c->fuse_norm);
      const char *readers = "";
      for (int f = 0; f < 4 && a->layer_fuse[f].norm; f++)
        if (a->layer_fuse[f].norm == adapter_norm) readers = a->layer_fuse[f].linears;
      if (norm && norm->reset_norm && !c->fuse_norm[0])
        return rotq_fail(err,
                         "tensor '%s' reads the residual stream through '%s', which is fused and reset to the "
                         "identity, but the norm is not fused into it: norm_fuse_config must list every reader "
                         "of the norm (%s: %s)",
                         c->name, norm_weight, a->family, readers);
    }
    if (reader && c->input != r1)
      return rotq_fail(err,
                       "tensor '%s' reads the residual stream: its input rotation must be the "
                       "embedding's (%s), but is %s",
                       c->name, r1_name, matrix_label(c->input, c->input_name));
    if (reader && r1 && !c->fuse_norm[0])
      return rotq_fail(err, "tensor '%s' reads the residual stream through a norm that is not fused", c->name);
    if (writer && c->output != r1)
      return rotq_fail(err,
                       "tensor '%s' writes the residual stream: its output rotation must be the "
                       "embedding's (%s), but is %s",
                       c->name, r1_name, matrix_label(c->output, c->output_name));
    int layer = c->layer;
    if (value_rotation_refused(a, c, module, err) < 0) return -1;
    if (!writer && c->output && strcmp(c->name, embed_weight) != 0) {
      /* Only a v_proj may carry an output rotation, undone by its o_proj's input rotation. */
      char v_module[TENSOR_NAME_MAX];
      if (layer >= 0) adapter_layer_module(a, layer, a->v_proj, v_module, sizeof v_module);
      const rotate_command *o = layer >= 0 ? layer_weight(list, a, layer, a->o_proj) : NULL;
      if (layer < 0 || strcmp(module, v_module) != 0 || !o)
        return rotq_fail(err, "tensor '%s': an output rotation (%s) here has no inverse in the model", c->name,
                         c->output_name);
      if (o->input != c->output)
        return rotq_fail(err,
                         "tensor '%s' has output rotation %s but its o_proj '%s' has input rotation %s: "
                         "they must be the same matrix",
                         c->name, c->output_name, o->name, matrix_label(o->input, o->input_name));
    }
    if (c->online != ONLINE_NONE) { /* the activation half lives at the input of down_proj or o_proj only */
      const char *rel = layer >= 0 ? adapter_relative_name(a, module) : NULL;
      const char *site = c->online == ONLINE_INPUT ? a->down_proj : a->o_proj;
      if (c->is_bias || !rel || !site || !pattern_matches(site, rel))
        return rotq_fail(err,
                         "tensor '%s': an online %s here has no activation half in the model (it acts on the input "
                         "of %s weights only)",
                         c->name, online_label(c->online), site ? site : "?");
    }
    if (!reader && c->input && strcmp(c->name, embed_weight) != 0 && c != position) {
      char o_module[TENSOR_NAME_MAX];
      if (layer >= 0) adapter_layer_module(a, layer, a->o_proj, o_module, sizeof o_module);
      const rotate_command *v = layer >= 0 ? layer_weight(list, a, layer, a->v_proj) : NULL;
      if (layer < 0 || strcmp(module, o_module) != 0 || !v)
        return rotq_fail(err, "tensor '%s': an input rotation (%s) here has no inverse in the model", c->name,
                         c->input_name);
      if (v->output != c->input)
        return rotq_fail(err,
                         "tensor '%s' has input rotation %s but its v_proj '%s' has output rotation %s: "
                         "they must be the same matrix",
                         c->name, c->input_name, v->name, matrix_label(v->output, v->output_name));
    }
  }
  return 0;
}
