/* model_load: which tensors each supported architecture has, checked against config.json and read
 * into memory in the compute type. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/quantized.h"
#include "model/gemma.h"
#include "model/gpt_oss.h"
#include "model/llama4.h"
#include "model/load_weight.h"
#include "model/opt.h"
#include "model/online_hooks.h"
#include "model/rope.h"
#include "model/transformer.h"

/* The architecture being loaded: its family's descriptor (layer prefix, tensor names, which
 * forward pass) and its variant's loader flags (family/family.h). */
typedef struct architecture {
  const char *name;
  const family_descriptor *family;
  const family_loader *flags;
} architecture;

const char *model_supported_architectures(void) { return family_supported_list(); }

/* The registry's entry for name; false if no family claims it. */
static bool find_architecture(const char *name, architecture *arch) {
  const family_variant *v = NULL;
  arch->family = family_find(name, &v);
  if (!arch->family) return false;
  arch->name = v->architecture;
  arch->flags = &v->loader;
  return true;
}

/* "[a, b]" of a shape. */
static const char *shape_text(int ndim, const int64_t *shape, char *buf, size_t size) {
  size_t used = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < ndim && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s%" PRId64, i ? ", " : "", shape[i]);
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

/* Reads tensor name, which must have shape [rows, cols] (cols 0: a vector [rows]), as doubles or
 * floats (f32) into *out. */
static int read_weight(const checkpoint *ck, bool f32, const char *name, int64_t rows, int64_t cols, void **out,
                       rotq_error *err) {
  const st_tensor *t = checkpoint_find(ck, name);
  if (!t) return rotq_fail(err, "%s: tensor '%s' is missing", ck->dir, name);
  int64_t expected[2] = {rows, cols};
  int ndim = cols ? 2 : 1;
  if (t->ndim != ndim || t->shape[0] != rows || (ndim == 2 && t->shape[1] != cols)) {
    char actual_text[128], expected_text[64];
    return rotq_fail(err, "%s: tensor '%s': shape %s does not match config.json (expected %s)", ck->dir, name,
                     shape_text(t->ndim, t->shape, actual_text, sizeof actual_text),
                     shape_text(ndim, expected, expected_text, sizeof expected_text));
  }
  size_t numel = (size_t)rows * (size_t)(cols ? cols : 1);
  return f32 ? checkpoint_read_f32(ck, name, numel, (float **)out, err)
             : checkpoint_read_f64(ck, name, numel, (double **)out, err);
}

int model_read_weight(const checkpoint *ck, bool f32, const char *name, int64_t rows, int64_t cols, void **out,
                      rotq_error *err) {
  return read_weight(ck, f32, name, rows, cols, out, err);
}

int model_read_split(const checkpoint *ck, bool f32, const char *name, int64_t cols, const int64_t *rows, int parts,
                     void **outs, rotq_error *err) {
  int64_t total = 0;
  for (int i = 0; i < parts; i++) total += rows[i];
  void *fused = NULL;
  if (read_weight(ck, f32, name, total, cols, &fused, err) != 0) return -1;
  size_t element = f32 ? sizeof(float) : sizeof(double), offset = 0;
  for (int i = 0; i < parts; i++) {
    size_t bytes = (size_t)rows[i] * (size_t)cols * element;
    outs[i] = malloc(bytes ? bytes : 1);
    if (!outs[i]) {
      free(fused);
      return rotq_fail(err, "%s: out of memory", name);
    }
    memcpy(outs[i], (char *)fused + offset, bytes);
    offset += bytes;
  }
  free(fused);
  return 0;
}

/* read_weight of "<layer prefix>.<layer>.<module>.<suffix>" (suffix "weight" or "bias"); module is
 * one of the family's names (family/family.h), NULL when the family has none. */
static int read_layer_weight(const checkpoint *ck, const family_descriptor *f, bool f32, int layer, const char *module,
                             const char *suffix, int64_t rows, int64_t cols, void **out, rotq_error *err) {
  if (!module) return rotq_fail(err, "%s: family %s names no such module of layer %d", ck->dir, f->family, layer);
  char relative[192], name[256];
  snprintf(relative, sizeof relative, "%s.%s", module, suffix);
  family_layer_module(f, layer, relative, name, sizeof name);
  return read_weight(ck, f32, name, rows, cols, out, err);
}

/* The weight "<module>.weight" [out, in] and, when has_bias, "<module>.bias" [out]. */
static int read_linear(const checkpoint *ck, const family_descriptor *f, bool f32, int layer, const char *module,
                       bool has_bias, int64_t out_dim, int64_t in_dim, void **weight, void **bias, rotq_error *err) {
  if (read_layer_weight(ck, f, f32, layer, module, "weight", out_dim, in_dim, weight, err) != 0) return -1;
  if (!has_bias) return 0;
  return read_layer_weight(ck, f, f32, layer, module, "bias", out_dim, 0, bias, err);
}

/* A fused linear "<module>.weight" [sum of rows, cols] split into parts. */
static int read_layer_split(const checkpoint *ck, const family_descriptor *f, bool f32, int layer, const char *module,
                            int64_t cols, const int64_t *rows, int parts, void **outs, rotq_error *err) {
  if (!module) return rotq_fail(err, "%s: family %s names no fused module of layer %d", ck->dir, f->family, layer);
  char relative[192], name[256];
  snprintf(relative, sizeof relative, "%s.weight", module);
  family_layer_module(f, layer, relative, name, sizeof name);
  return model_read_split(ck, f32, name, cols, rows, parts, outs, err);
}

/* Phi-3: self_attn.qkv_proj [q_dim + 2·kv_dim, hidden] split into Q, K, V rows, mlp.gate_up_proj
 * [2·intermediate, hidden] into gate and up rows (Phi3MLP: gate, up = chunk(2)). No biases. */
static int read_fused_layer(const checkpoint *ck, const family_descriptor *f, bool f32, int l, layer_weights *w,
                            rotq_error *err) {
  const model_config *c = &ck->config;
  const family_layer_names *n = &f->names;
  const int64_t hidden = c->hidden_size, intermediate = c->intermediate_size;
  const int64_t q_dim = (int64_t)c->num_attention_heads * c->head_dim;
  const int64_t kv_dim = (int64_t)c->num_key_value_heads * c->head_dim;
  const int64_t qkv_rows[3] = {q_dim, kv_dim, kv_dim}, gate_up_rows[2] = {intermediate, intermediate};
  void *qkv[3] = {NULL, NULL, NULL}, *gate_up[2] = {NULL, NULL};
  int rc = read_layer_split(ck, f, f32, l, n->qkv_proj, hidden, qkv_rows, 3, qkv, err);
  w->wq = qkv[0], w->wk = qkv[1], w->wv = qkv[2];
  if (rc == 0) rc = read_layer_split(ck, f, f32, l, n->gate_up_proj, hidden, gate_up_rows, 2, gate_up, err);
  w->w_gate = gate_up[0], w->w_up = gate_up[1];
  if (rc != 0 || read_layer_weight(ck, f, f32, l, n->attn_norm, "weight", hidden, 0, &w->attn_norm, err) != 0 ||
      read_linear(ck, f, f32, l, n->o_proj, false, hidden, q_dim, &w->wo, &w->bo, err) != 0 ||
      read_layer_weight(ck, f, f32, l, n->mlp_norm, "weight", hidden, 0, &w->mlp_norm, err) != 0 ||
      read_linear(ck, f, f32, l, n->down_proj, false, hidden, intermediate, &w->w_down, &w->b_down, err) != 0)
    return -1;
  return 0;
}

/* Gemma-2/3: the norms on o_proj's and down_proj's outputs. */
static int read_post_norms(const checkpoint *ck, const family_descriptor *f, bool f32, int l, layer_weights *w,
                           rotq_error *err) {
  const int64_t hidden = ck->config.hidden_size;
  return read_layer_weight(ck, f, f32, l, f->names.post_attn_norm, "weight", hidden, 0, &w->post_attn_norm, err) ||
                 read_layer_weight(ck, f, f32, l, f->names.post_mlp_norm, "weight", hidden, 0, &w->post_mlp_norm, err)
             ? -1
             : 0;
}

/* DeepSeek-V3: the latent attention (model/mla.h), o_proj [hidden, heads·v_head_dim], the norms and
 * the dense MLP or MoE block (first_k_dense_replace). */
static int read_mla_layer(const checkpoint *ck, const architecture *arch, bool f32, int l, layer_weights *w,
                          rotq_error *err) {
  const family_descriptor *f = arch->family;
  const family_layer_names *n = &f->names;
  const model_config *c = &ck->config;
  const int64_t hidden = c->hidden_size, intermediate = c->intermediate_size;
  if (read_layer_weight(ck, f, f32, l, n->attn_norm, "weight", hidden, 0, &w->attn_norm, err) != 0 ||
      mla_read_layer(ck, f, f32, l, &w->mla, err) != 0 ||
      read_linear(ck, f, f32, l, n->o_proj, c->attention_bias, hidden, (int64_t)c->num_attention_heads * w->mla->v_dim,
                  &w->wo, &w->bo, err) != 0 ||
      read_layer_weight(ck, f, f32, l, n->mlp_norm, "weight", hidden, 0, &w->mlp_norm, err) != 0 ||
      moe_read_layer(ck, f, arch->flags->moe, f32, l, &w->moe, err) != 0)
    return -1;
  if (w->moe) return 0;
  return read_linear(ck, f, f32, l, n->gate_proj, false, intermediate, hidden, &w->w_gate, &w->b_gate, err) != 0 ||
                 read_linear(ck, f, f32, l, n->up_proj, false, intermediate, hidden, &w->w_up, &w->b_up, err) != 0 ||
                 read_linear(ck, f, f32, l, n->down_proj, false, hidden, intermediate, &w->w_down, &w->b_down, err) != 0
             ? -1
             : 0;
}

/* Qwen3-Next (model/qwen3_next.h): the gated DeltaNet or gated full attention (q_proj split into
 * query and output-gate rows, q_norm/k_norm), the norms and the MoE block or dense MLP. */
static int read_qwen3_next_layer(const checkpoint *ck, const architecture *arch, bool f32, int l, layer_weights *w,
                                 rotq_error *err) {
  const family_descriptor *f = arch->family;
  const family_layer_names *n = &f->names;
  const model_config *c = &ck->config;
  const int64_t hidden = c->hidden_size, intermediate = c->intermediate_size;
  const int64_t q_dim = (int64_t)c->num_attention_heads * c->head_dim;
  const int64_t kv_dim = (int64_t)c->num_key_value_heads * c->head_dim;
  const bool bias = c->attention_bias;
  bool linear;
  if (qwen3_next_layer_is_linear(c, l, &linear, err) != 0 ||
      read_layer_weight(ck, f, f32, l, n->attn_norm, "weight", hidden, 0, &w->attn_norm, err) != 0)
    return -1;
  if (linear ? qwen3_next_read_deltanet(ck, f, f32, l, &w->deltanet, err) != 0
             : qwen3_next_read_gated_q(ck, f, f32, l, bias, &w->wq, &w->bq, &w->wq_gate, &w->bq_gate, err) != 0 ||
                   read_linear(ck, f, f32, l, n->k_proj, bias, kv_dim, hidden, &w->wk, &w->bk, err) != 0 ||
                   read_linear(ck, f, f32, l, n->v_proj, bias, kv_dim, hidden, &w->wv, &w->bv, err) != 0 ||
                   read_linear(ck, f, f32, l, n->o_proj, bias, hidden, q_dim, &w->wo, &w->bo, err) != 0 ||
                   read_layer_weight(ck, f, f32, l, n->q_norm, "weight", c->head_dim, 0, &w->q_norm, err) != 0 ||
                   read_layer_weight(ck, f, f32, l, n->k_norm, "weight", c->head_dim, 0, &w->k_norm, err) != 0)
    return -1;
  if (read_layer_weight(ck, f, f32, l, n->mlp_norm, "weight", hidden, 0, &w->mlp_norm, err) != 0 ||
      moe_read_layer(ck, f, arch->flags->moe, f32, l, &w->moe, err) != 0)
    return -1;
  if (w->moe) return 0;
  return read_linear(ck, f, f32, l, n->gate_proj, false, intermediate, hidden, &w->w_gate, &w->b_gate, err) != 0 ||
                 read_linear(ck, f, f32, l, n->up_proj, false, intermediate, hidden, &w->w_up, &w->b_up, err) != 0 ||
                 read_linear(ck, f, f32, l, n->down_proj, false, hidden, intermediate, &w->w_down, &w->b_down, err) != 0
             ? -1
             : 0;
}

static int read_layer(const checkpoint *ck, const architecture *arch, bool f32, int l, layer_weights *w,
                      rotq_error *err) {
  const family_descriptor *f = arch->family;
  const family_loader *flags = arch->flags;
  const family_layer_names *n = &f->names;
  if (flags->fused_projections) return read_fused_layer(ck, f, f32, l, w, err);
  const model_config *c = &ck->config;
  const int64_t hidden = c->hidden_size, intermediate = c->intermediate_size;
  const int64_t q_dim = (int64_t)c->num_attention_heads * c->head_dim;
  const int64_t kv_dim = (int64_t)c->num_key_value_heads * c->head_dim;
  const bool qkv_bias =
      flags->qkv_bias || ((flags->attention_bias || flags->qkv_bias_from_config) && c->attention_bias);
  const bool o_bias = flags->attention_bias && c->attention_bias;
  const bool mlp_bias = flags->mlp_bias && c->mlp_bias;
  if (flags->mla) return read_mla_layer(ck, arch, f32, l, w, err);
  if (flags->qwen3_next) return read_qwen3_next_layer(ck, arch, f32, l, w, err);
  if (read_layer_weight(ck, f, f32, l, n->attn_norm, "weight", hidden, 0, &w->attn_norm, err) != 0 ||
      read_linear(ck, f, f32, l, n->q_proj, qkv_bias, q_dim, hidden, &w->wq, &w->bq, err) != 0 ||
      read_linear(ck, f, f32, l, n->k_proj, qkv_bias, kv_dim, hidden, &w->wk, &w->bk, err) != 0 ||
      read_linear(ck, f, f32, l, n->v_proj, qkv_bias, kv_dim, hidden, &w->wv, &w->bv, err) != 0 ||
      read_linear(ck, f, f32, l, n->o_proj, o_bias, hidden, q_dim, &w->wo, &w->bo, err) != 0 ||
      read_layer_weight(ck, f, f32, l, n->mlp_norm, "weight", hidden, 0, &w->mlp_norm, err) != 0 ||
      (flags->gemma >= 2 && read_post_norms(ck, f, f32, l, w, err) != 0) ||
      (flags->moe && moe_read_layer(ck, f, flags->moe, f32, l, &w->moe, err) != 0))
    return -1;
  if (!w->moe &&
      (read_linear(ck, f, f32, l, n->gate_proj, mlp_bias, intermediate, hidden, &w->w_gate, &w->b_gate, err) != 0 ||
       read_linear(ck, f, f32, l, n->up_proj, mlp_bias, intermediate, hidden, &w->w_up, &w->b_up, err) != 0 ||
       read_linear(ck, f, f32, l, n->down_proj, mlp_bias, hidden, intermediate, &w->w_down, &w->b_down, err) != 0))
    return -1;
  if (!flags->qk_norm &&
      !(flags->qk_norm_from_config && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c->json, "use_qk_norm"))))
    return 0;
  return read_layer_weight(ck, f, f32, l, n->q_norm, "weight", c->head_dim, 0, &w->q_norm, err) != 0 ||
                 read_layer_weight(ck, f, f32, l, n->k_norm, "weight", c->head_dim, 0, &w->k_norm, err) != 0
             ? -1
             : 0;
}

/* partial_rotary_factor (top level, else in transformers 5's rope_parameters; default 1): RoPE on
 * the first int(head_dim · factor) dims of each head where the variant honours it (sets
 * m->rotary_dim; it must be even and at least 2), else any factor ≠ 1 is refused. */
static int check_partial_rotary(const model_config *c, const architecture *arch, model *m, rotq_error *err) {
  const cJSON *partial = cJSON_GetObjectItemCaseSensitive(c->json, "partial_rotary_factor");
  const cJSON *parameters = cJSON_GetObjectItemCaseSensitive(c->json, "rope_parameters");
  if ((!partial || cJSON_IsNull(partial)) && cJSON_IsObject(parameters))
    partial = cJSON_GetObjectItemCaseSensitive(parameters, "partial_rotary_factor");
  if (!partial || cJSON_IsNull(partial) || (cJSON_IsNumber(partial) && partial->valuedouble == 1.0)) return 0;
  if (!arch->flags->partial_rotary)
    return rotq_fail(err, "%s: partial_rotary_factor other than 1 is not supported", c->path);
  if (!cJSON_IsNumber(partial) || !(partial->valuedouble > 0) || partial->valuedouble > 1)
    return rotq_fail(err, "%s: field 'partial_rotary_factor' must be in (0, 1]", c->path);
  int dim = (int)(c->head_dim * partial->valuedouble);
  if (dim < 2 || dim % 2 != 0)
    return rotq_fail(err, "%s: partial_rotary_factor %g gives %d rotary dims of head_dim %d; RoPE needs an even number",
                     c->path, partial->valuedouble, dim, c->head_dim);
  m->rotary_dim = dim;
  return 0;
}

/* transformers 5 writes RoPE scaling inside rope_parameters, which model_config does not read
 * (it reads rope_scaling): for the families added with it (GLM-4.5, DeepSeek-V3) a rope_type there
 * other than "default" is refused rather than computed as default RoPE. */
static int check_rope_parameters_type(const model_config *c, rotq_error *err) {
  const cJSON *parameters = cJSON_GetObjectItemCaseSensitive(c->json, "rope_parameters");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(parameters, "rope_type");
  if (cJSON_IsString(type) && strcmp(type->valuestring, "default") != 0)
    return rotq_fail(err,
                     "%s: rope_parameters.rope_type '%s' is not supported by the forward pass (default only); the "
                     "rotation does not depend on it, use --no-verify",
                     c->path, type->valuestring);
  return 0;
}

/* The config fields the forward pass relies on beyond what model_config checks; sets
 * m->sliding_window and m->rotary_dim. */
static int check_config(const model_config *c, const architecture *arch, model *m, rotq_error *err) {
  if (c->intermediate_size <= 0) return rotq_fail(err, "%s: missing required field 'intermediate_size'", c->path);
  if (c->head_dim % 2 != 0) return rotq_fail(err, "%s: head_dim %d is odd; RoPE needs it even", c->path, c->head_dim);
  const cJSON *act = cJSON_GetObjectItemCaseSensitive(c->json, "hidden_act");
  if (act && arch->flags->silu_only && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
    return rotq_fail(err, "%s: hidden_act must be \"silu\"", c->path);
  if (check_partial_rotary(c, arch, m, err) != 0) return -1;
  if ((arch->flags->partial_rotary || arch->flags->mla) && check_rope_parameters_type(c, err) != 0) return -1;
  const cJSON *use_window = cJSON_GetObjectItemCaseSensitive(c->json, "use_sliding_window");
  if (!arch->flags->sliding_window && cJSON_IsTrue(use_window))
    return rotq_fail(err, "%s: use_sliding_window true is not supported for %s", c->path, arch->name);
  const cJSON *window = cJSON_GetObjectItemCaseSensitive(c->json, "sliding_window");
  if (arch->flags->sliding_window && window && !cJSON_IsNull(window)) {
    if (!cJSON_IsNumber(window) || window->valuedouble < 1 || window->valuedouble > 1e9 ||
        window->valuedouble != (int)window->valuedouble)
      return rotq_fail(err, "%s: field 'sliding_window' is not a positive integer", c->path);
    m->sliding_window = (int)window->valuedouble;
  }
  return 0;
}

static int read_weights(const checkpoint *ck, const architecture *arch, model *m, rotq_error *err) {
  const model_config *c = &ck->config;
  const family_descriptor *f = arch->family;
  const int64_t hidden = c->hidden_size, vocab = c->vocab_size;
  char embed[160], final_norm[160], lm_head[160];
  snprintf(embed, sizeof embed, "%s.weight", f->embed);
  snprintf(final_norm, sizeof final_norm, "%s.weight", f->final_norm);
  snprintf(lm_head, sizeof lm_head, "%s.weight", f->lm_head);
  if (read_weight(ck, m->f32, embed, vocab, hidden, &m->embed, err) != 0) return -1;
  for (int l = 0; l < c->num_hidden_layers; l++)
    if (read_layer(ck, arch, m->f32, l, &m->layers[l], err) != 0) return -1;
  if (read_weight(ck, m->f32, final_norm, hidden, 0, &m->final_norm, err) != 0) return -1;
  /* A present lm_head.weight is used even when tie_word_embeddings is true. */
  if (checkpoint_find(ck, lm_head)) return read_weight(ck, m->f32, lm_head, vocab, hidden, &m->lm_head, err);
  if (!c->tie_word_embeddings)
    return rotq_fail(err, "%s: tensor '%s' is missing and tie_word_embeddings is false", ck->dir, lm_head);
  m->lm_head = m->embed;
  return 0;
}

/* A variant whose layers model_forward's plain decoder layer computes from the tensors read_layer
 * reads one to one (no fused projections, experts, latent attention or family extras). */
static bool plain_decoder(const architecture *arch) {
  const family_loader *f = arch->flags;
  return arch->family->forward == FORWARD_DECODER && !f->moe && !f->fused_projections && !f->gemma && !f->mla &&
         !f->gpt_oss && !f->llama4 && !f->qwen3_next && !f->partial_rotary && !f->qk_norm_from_config &&
         !f->qkv_bias_from_config;
}

/* The widths of config.json against the tensors before anything is allocated from them: each
 * is the extent of some tensor, so none may exceed the largest (checkpoint_open checked the
 * layer count). */
static int check_widths(const model_config *c, rotq_error *err) {
  const struct {
    const char *key;
    long value;
  } widths[] = {
      {"hidden_size", c->hidden_size},
      {"vocab_size", c->vocab_size},
      {"intermediate_size", c->intermediate_size},
      {"head_dim", c->head_dim},
      {"num_attention_heads", c->num_attention_heads},
      {"num_key_value_heads", c->num_key_value_heads},
  };
  for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++)
    if (c->max_tensor_extent > 0 && widths[i].value > c->max_tensor_extent)
      return rotq_fail(err, "%s: field '%s': %ld is larger than any dimension of any tensor in the checkpoint (%ld)",
                       c->path, widths[i].key, widths[i].value, c->max_tensor_extent);
  return 0;
}

int model_load(const char *dir, const model_options *options, model **out, rotq_error *err) {
  *out = NULL;
  checkpoint ck;
  if (checkpoint_open(dir, &ck, err) != 0) return -1;
  architecture found;
  const architecture *arch = find_architecture(ck.config.architecture, &found) ? &found : NULL;
  if (!arch) {
    rotq_fail(err, "%s: architecture '%s' is not supported (supported: %s)", ck.config.path, ck.config.architecture,
              model_supported_architectures());
    checkpoint_close(&ck);
    return -1;
  }
  if (check_widths(&ck.config, err) != 0) {
    checkpoint_close(&ck);
    return -1;
  }
  const bool on_demand = options && options->layers_on_demand;
  if (on_demand && !plain_decoder(arch)) {
    rotq_fail(err,
              "%s: architecture '%s' cannot be loaded a layer at a time (only the LLaMA-layout decoders: "
              "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)",
              ck.config.path, ck.config.architecture);
    checkpoint_close(&ck);
    return -1;
  }
  model *m = calloc(1, sizeof *m);
  if (m && on_demand) m->source = malloc(sizeof *m->source);
  if (m && (!on_demand || m->source)) {
    m->layers = calloc((size_t)ck.config.num_hidden_layers, sizeof *m->layers);
    m->inv_freq = malloc(sizeof(double) * (size_t)(ck.config.head_dim / 2 + 1));
  }
  int status = -1;
  if (!m || !m->layers || !m->inv_freq || (on_demand && !m->source)) {
    rotq_fail(err, "%s: out of memory", dir);
  } else {
    m->f32 = options && options->f32;
    m->delta_rule_chunk = options && options->delta_rule_chunk > 0 ? options->delta_rule_chunk : 0;
    const family_descriptor *f = arch->family;
    const bool opt = f->forward == FORWARD_OPT, nemotron_h = f->forward == FORWARD_NEMOTRON_H;
    const int gemma = arch->flags->gemma;
    status =
        (opt && opt_prepare_config(&ck.config, err) != 0) || check_config(&ck.config, arch, m, err) != 0 ||
                rope_inv_freq_dim(&ck.config, m->rotary_dim ? m->rotary_dim : ck.config.head_dim, m->inv_freq, err) !=
                    0 ||
                activation_quant_resolve(options ? &options->quant : NULL, ck.config.head_dim, &m->quant, err) != 0 ||
                (nemotron_h && nemotron_h_configure(&ck, m, err) != 0) ||
                (arch->flags->mla && mla_configure(&ck.config, &m->rope_interleave, err) != 0) ||
                (on_demand    ? 0
                 : opt        ? opt_read_weights(&ck, f, m, err)
                 : nemotron_h ? nemotron_h_read_weights(&ck, f, m, err)
                              : read_weights(&ck, arch, m, err)) != 0 ||
                (gemma && gemma_configure(&ck, f, gemma, m, err) != 0) ||
                (arch->flags->gpt_oss && gpt_oss_configure(&ck, f, m, err) != 0) ||
                (arch->flags->llama4 && llama4_configure(&ck, m, err) != 0)
            ? -1
            : 0;
    if (status == 0 && (gemma || arch->flags->qwen3_next)) gemma_shift_norms(m, &ck.config); /* (1 + w) norms */
    if (status == 0 && arch->flags->mla) m->mla_v_dim = m->layers[0].mla->v_dim;
    /* An online-rotated checkpoint computes the original function only with its hooks. */
    if (status == 0 && !(options && options->no_online_hooks))
      status = options && options->online_section
                   ? online_hooks_from_json(options->online_section, &ck.config, dir, &m->online, err)
                   : online_hooks_load(dir, &ck.config, &m->online, err);
    for (int l = 0; status == 0 && l < ck.config.num_hidden_layers; l++)
      if (m->layers[l].moe && online_hooks_active(m->online, ONLINE_SITE_DOWN_PROJ, l))
        status = rotq_fail(err, "%s: online R4 on the MoE block of layer %d is not supported", dir, l);
  }
  /* The model keeps config.json; the mapped shards are no longer needed (but to read the layers on
   * demand: then the model keeps the open checkpoint, its config moved out). */
  if (m) {
    m->config = ck.config;
    memset(&ck.config, 0, sizeof ck.config);
  }
  if (m && m->source) {
    *m->source = ck;
    checkpoint_release(m->source);
  } else {
    checkpoint_close(&ck);
  }
  if (status != 0) {
    model_free(m);
    return -1;
  }
  *out = m;
  return 0;
}

/* The open checkpoint of a layers_on_demand model with its config (moved into the model) back in
 * place, as read_layer reads it: a shallow copy, never closed. */
static checkpoint source_view(const model *m) {
  checkpoint ck = *m->source;
  ck.config = m->config;
  return ck;
}

int model_load_layer(model *m, int layer, rotq_error *err) {
  if (!m->source) return rotq_fail(err, "the model was not loaded with layers_on_demand");
  if (layer < 0 || layer >= m->config.num_hidden_layers)
    return rotq_fail(err, "decoder layer %d: the model has %d", layer, m->config.num_hidden_layers);
  architecture arch;
  if (!find_architecture(m->config.architecture, &arch))
    return rotq_fail(err, "architecture '%s' is not supported", m->config.architecture);
  model_free_layer(m, layer);
  checkpoint ck = source_view(m);
  int status = read_layer(&ck, &arch, m->f32, layer, &m->layers[layer], err);
  checkpoint_release(m->source);
  if (status != 0) model_free_layer(m, layer);
  return status;
}

int model_embed(const model *m, const int32_t *tokens, int n, void *x, rotq_error *err) {
  const int64_t hidden = m->config.hidden_size, vocab = m->config.vocab_size;
  const size_t element = m->f32 ? sizeof(float) : sizeof(double);
  const st_tensor *t = NULL;
  if (m->source) {
    architecture arch;
    char name[160];
    if (!find_architecture(m->config.architecture, &arch))
      return rotq_fail(err, "architecture '%s' is not supported", m->config.architecture);
    snprintf(name, sizeof name, "%s.weight", arch.family->embed);
    t = checkpoint_find(m->source, name);
    if (!t || t->ndim != 2 || t->shape[0] != vocab || t->shape[1] != hidden)
      return rotq_fail(err, "%s: tensor '%s' is missing or not [%lld, %lld]", m->source->dir, name, (long long)vocab,
                       (long long)hidden);
  }
  for (int i = 0; i < n; i++) {
    if (tokens[i] < 0 || tokens[i] >= vocab)
      return rotq_fail(err, "token id %d at position %d is outside the vocabulary [0, %lld)", (int)tokens[i], i,
                       (long long)vocab);
    char *row = (char *)x + (size_t)i * (size_t)hidden * element;
    if (!t)
      memcpy(row, (const char *)m->embed + (size_t)tokens[i] * (size_t)hidden * element, (size_t)hidden * element);
    else if (m->f32)
      st_to_f32(t, (size_t)tokens[i] * (size_t)hidden, (size_t)hidden, (float *)row);
    else
      st_to_f64(t, (size_t)tokens[i] * (size_t)hidden, (size_t)hidden, (double *)row);
  }
  if (m->source) checkpoint_release(m->source);
  return 0;
}

void model_free_layer(model *m, int layer) {
  layer_weights *w = &m->layers[layer];
  void *weights[] = {w->attn_norm, w->wq, w->bq,       w->wk,     w->bk,     w->wv,   w->bv,   w->q_norm, w->k_norm,
                     w->wo,        w->bo, w->mlp_norm, w->w_gate, w->b_gate, w->w_up, w->b_up, w->w_down, w->b_down};
  for (size_t i = 0; i < sizeof weights / sizeof weights[0]; i++) free(weights[i]);
  moe_free(w->moe);
  mla_free(w->mla);
  free(w->sinks);
  free(w->post_attn_norm);
  free(w->post_mlp_norm);
  free(w->attn_norm_bias);
  free(w->mlp_norm_bias);
  mamba_free(w->mamba);
  free(w->wq_gate);
  free(w->bq_gate);
  deltanet_free(w->deltanet);
  *w = (layer_weights){0};
}

void model_free(model *m) {
  if (!m) return;
  for (int l = 0; m->layers && l < m->config.num_hidden_layers; l++) {
    model_free_layer(m, l);
  }
  free(m->layers);
  if (m->lm_head != m->embed) free(m->lm_head);
  free(m->embed);
  free(m->final_norm);
  free(m->inv_freq);
  free(m->inv_freq_local);
  free(m->layer_window);
  free(m->layer_nope);
  free(m->layer_chunk);
  free(m->final_norm_bias);
  free(m->positions);
  online_hooks_free(m->online);
  model_config_free(&m->config);
  if (m->source) checkpoint_close(m->source);
  free(m->source);
  free(m);
}

const model_config *model_get_config(const model *m) { return &m->config; }
