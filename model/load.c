/* model_load: which tensors each supported architecture has, checked against config.json and read
 * into memory in the compute type. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "model/gemma.h"
#include "model/load_weight.h"
#include "model/opt.h"
#include "model/online_hooks.h"
#include "model/rope.h"
#include "model/transformer.h"

/* What distinguishes the supported architectures, as in their transformers modeling files. */
typedef struct architecture {
  const char *name;
  bool qkv_bias;          /* q/k/v_proj always have a bias (Qwen2) */
  bool attention_bias;    /* config attention_bias puts a bias on q/k/v/o_proj (Llama, Qwen3) */
  bool mlp_bias;          /* config mlp_bias puts a bias on gate/up/down_proj (Llama) */
  bool qk_norm;           /* q_norm / k_norm on each head before RoPE (Qwen3) */
  bool sliding_window;    /* config sliding_window limits attention (Mistral) */
  moe_kind moe;           /* sparse MoE blocks instead of the MLP (model/moe.h) */
  bool fused_projections; /* self_attn.qkv_proj and mlp.gate_up_proj, split at load (Phi-3) */
  int gemma;              /* Gemma generation 1, 2 or 3 (model/gemma.h), 0 = not Gemma */
} architecture;

static const architecture architectures[] = {
    {"LlamaForCausalLM", false, true, true, false, false, MOE_NONE, false, 0},
    {"MistralForCausalLM", false, false, false, false, true, MOE_NONE, false, 0},
    {"Qwen2ForCausalLM", true, false, false, false, false, MOE_NONE, false, 0},
    {"Qwen3ForCausalLM", false, true, false, true, false, MOE_NONE, false, 0},
    {"MixtralForCausalLM", false, false, false, false, true, MOE_MIXTRAL, false, 0},
    {"Qwen2MoeForCausalLM", true, false, false, false, false, MOE_QWEN2, false, 0},
    {"Qwen3MoeForCausalLM", false, true, false, true, false, MOE_QWEN3, false, 0},
    {"Phi3ForCausalLM", false, false, false, false, true, MOE_NONE, true, 0},
    {"GemmaForCausalLM", false, true, false, false, false, MOE_NONE, false, 1},
    {"Gemma2ForCausalLM", false, true, false, false, false, MOE_NONE, false, 2},
    {"Gemma3ForCausalLM", false, true, false, true, false, MOE_NONE, false, 3},
    {"OPTForCausalLM", false, false, false, false, false, MOE_NONE, false, 0},       /* model/opt.h */
    {"NemotronHForCausalLM", false, false, false, false, false, MOE_NONE, false, 0}, /* model/nemotron_h.h */
};
#define ARCHITECTURE_COUNT (sizeof architectures / sizeof architectures[0])

const char *model_supported_architectures(void) {
  return "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MixtralForCausalLM, "
         "Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, Phi3ForCausalLM, GemmaForCausalLM, Gemma2ForCausalLM, "
         "Gemma3ForCausalLM, OPTForCausalLM, NemotronHForCausalLM";
}

static const architecture *find_architecture(const char *name) {
  for (size_t i = 0; i < ARCHITECTURE_COUNT; i++)
    if (strcmp(architectures[i].name, name) == 0) return &architectures[i];
  return NULL;
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

/* read_weight of "model.layers.<layer>.<suffix>". */
static int read_layer_weight(const checkpoint *ck, bool f32, int layer, const char *suffix, int64_t rows, int64_t cols,
                             void **out, rotq_error *err) {
  char name[256];
  snprintf(name, sizeof name, "model.layers.%d.%s", layer, suffix);
  return read_weight(ck, f32, name, rows, cols, out, err);
}

/* The weight "<module>.weight" [out, in] and, when has_bias, "<module>.bias" [out]. */
static int read_linear(const checkpoint *ck, bool f32, int layer, const char *module, bool has_bias, int64_t out_dim,
                       int64_t in_dim, void **weight, void **bias, rotq_error *err) {
  char suffix[128];
  snprintf(suffix, sizeof suffix, "%s.weight", module);
  if (read_layer_weight(ck, f32, layer, suffix, out_dim, in_dim, weight, err) != 0) return -1;
  if (!has_bias) return 0;
  snprintf(suffix, sizeof suffix, "%s.bias", module);
  return read_layer_weight(ck, f32, layer, suffix, out_dim, 0, bias, err);
}

/* Phi-3: self_attn.qkv_proj [q_dim + 2·kv_dim, hidden] split into Q, K, V rows, mlp.gate_up_proj
 * [2·intermediate, hidden] into gate and up rows (Phi3MLP: gate, up = chunk(2)). No biases. */
static int read_fused_layer(const checkpoint *ck, bool f32, int l, layer_weights *w, rotq_error *err) {
  const model_config *c = &ck->config;
  const int64_t hidden = c->hidden_size, intermediate = c->intermediate_size;
  const int64_t q_dim = (int64_t)c->num_attention_heads * c->head_dim;
  const int64_t kv_dim = (int64_t)c->num_key_value_heads * c->head_dim;
  const int64_t qkv_rows[3] = {q_dim, kv_dim, kv_dim}, gate_up_rows[2] = {intermediate, intermediate};
  void *qkv[3] = {NULL, NULL, NULL}, *gate_up[2] = {NULL, NULL};
  char name[256];
  snprintf(name, sizeof name, "model.layers.%d.self_attn.qkv_proj.weight", l);
  int rc = model_read_split(ck, f32, name, hidden, qkv_rows, 3, qkv, err);
  w->wq = qkv[0], w->wk = qkv[1], w->wv = qkv[2];
  snprintf(name, sizeof name, "model.layers.%d.mlp.gate_up_proj.weight", l);
  if (rc == 0) rc = model_read_split(ck, f32, name, hidden, gate_up_rows, 2, gate_up, err);
  w->w_gate = gate_up[0], w->w_up = gate_up[1];
  if (rc != 0 || read_layer_weight(ck, f32, l, "input_layernorm.weight", hidden, 0, &w->attn_norm, err) != 0 ||
      read_linear(ck, f32, l, "self_attn.o_proj", false, hidden, q_dim, &w->wo, &w->bo, err) != 0 ||
      read_layer_weight(ck, f32, l, "post_attention_layernorm.weight", hidden, 0, &w->mlp_norm, err) != 0 ||
      read_linear(ck, f32, l, "mlp.down_proj", false, hidden, intermediate, &w->w_down, &w->b_down, err) != 0)
    return -1;
  return 0;
}

static int read_layer(const checkpoint *ck, const architecture *arch, bool f32, int l, layer_weights *w,
                      rotq_error *err) {
  if (arch->fused_projections) return read_fused_layer(ck, f32, l, w, err);
  const model_config *c = &ck->config;
  const int64_t hidden = c->hidden_size, intermediate = c->intermediate_size;
  const int64_t q_dim = (int64_t)c->num_attention_heads * c->head_dim;
  const int64_t kv_dim = (int64_t)c->num_key_value_heads * c->head_dim;
  const bool qkv_bias = arch->qkv_bias || (arch->attention_bias && c->attention_bias);
  const bool o_bias = arch->attention_bias && c->attention_bias;
  const bool mlp_bias = arch->mlp_bias && c->mlp_bias;
  if (read_layer_weight(ck, f32, l, "input_layernorm.weight", hidden, 0, &w->attn_norm, err) != 0 ||
      read_linear(ck, f32, l, "self_attn.q_proj", qkv_bias, q_dim, hidden, &w->wq, &w->bq, err) != 0 ||
      read_linear(ck, f32, l, "self_attn.k_proj", qkv_bias, kv_dim, hidden, &w->wk, &w->bk, err) != 0 ||
      read_linear(ck, f32, l, "self_attn.v_proj", qkv_bias, kv_dim, hidden, &w->wv, &w->bv, err) != 0 ||
      read_linear(ck, f32, l, "self_attn.o_proj", o_bias, hidden, q_dim, &w->wo, &w->bo, err) != 0 ||
      read_layer_weight(ck, f32, l,
                        arch->gemma >= 2 ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight",
                        hidden, 0, &w->mlp_norm, err) != 0 ||
      (arch->gemma >= 2 && gemma_read_post_norms(ck, f32, l, w, err) != 0) ||
      (arch->moe && moe_read_layer(ck, arch->moe, f32, l, &w->moe, err) != 0))
    return -1;
  if (!w->moe &&
      (read_linear(ck, f32, l, "mlp.gate_proj", mlp_bias, intermediate, hidden, &w->w_gate, &w->b_gate, err) != 0 ||
       read_linear(ck, f32, l, "mlp.up_proj", mlp_bias, intermediate, hidden, &w->w_up, &w->b_up, err) != 0 ||
       read_linear(ck, f32, l, "mlp.down_proj", mlp_bias, hidden, intermediate, &w->w_down, &w->b_down, err) != 0))
    return -1;
  if (!arch->qk_norm) return 0;
  return read_layer_weight(ck, f32, l, "self_attn.q_norm.weight", c->head_dim, 0, &w->q_norm, err) != 0 ||
                 read_layer_weight(ck, f32, l, "self_attn.k_norm.weight", c->head_dim, 0, &w->k_norm, err) != 0
             ? -1
             : 0;
}

/* The config fields the forward pass relies on beyond what model_config checks; sets
 * m->sliding_window. */
static int check_config(const model_config *c, const architecture *arch, model *m, rotq_error *err) {
  if (c->intermediate_size <= 0) return rotq_fail(err, "%s: missing required field 'intermediate_size'", c->path);
  if (c->head_dim % 2 != 0) return rotq_fail(err, "%s: head_dim %d is odd; RoPE needs it even", c->path, c->head_dim);
  const cJSON *act = cJSON_GetObjectItemCaseSensitive(c->json, "hidden_act");
  if (act && !arch->gemma && strcmp(arch->name, "NemotronHForCausalLM") != 0 &&
      !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
    return rotq_fail(err, "%s: hidden_act must be \"silu\"", c->path);
  const cJSON *partial = cJSON_GetObjectItemCaseSensitive(c->json, "partial_rotary_factor");
  if (partial && !cJSON_IsNull(partial) && !(cJSON_IsNumber(partial) && partial->valuedouble == 1.0))
    return rotq_fail(err, "%s: partial_rotary_factor other than 1 is not supported", c->path);
  const cJSON *use_window = cJSON_GetObjectItemCaseSensitive(c->json, "use_sliding_window");
  if (!arch->sliding_window && cJSON_IsTrue(use_window))
    return rotq_fail(err, "%s: use_sliding_window true is not supported for %s", c->path, arch->name);
  const cJSON *window = cJSON_GetObjectItemCaseSensitive(c->json, "sliding_window");
  if (arch->sliding_window && window && !cJSON_IsNull(window)) {
    if (!cJSON_IsNumber(window) || window->valuedouble < 1 || window->valuedouble > 1e9 ||
        window->valuedouble != (int)window->valuedouble)
      return rotq_fail(err, "%s: field 'sliding_window' is not a positive integer", c->path);
    m->sliding_window = (int)window->valuedouble;
  }
  return 0;
}

static int read_weights(const checkpoint *ck, const architecture *arch, model *m, rotq_error *err) {
  const model_config *c = &ck->config;
  const int64_t hidden = c->hidden_size, vocab = c->vocab_size;
  if (read_weight(ck, m->f32, "model.embed_tokens.weight", vocab, hidden, &m->embed, err) != 0) return -1;
  for (int l = 0; l < c->num_hidden_layers; l++)
    if (read_layer(ck, arch, m->f32, l, &m->layers[l], err) != 0) return -1;
  if (read_weight(ck, m->f32, "model.norm.weight", hidden, 0, &m->final_norm, err) != 0) return -1;
  /* A present lm_head.weight is used even when tie_word_embeddings is true. */
  if (checkpoint_find(ck, "lm_head.weight"))
    return read_weight(ck, m->f32, "lm_head.weight", vocab, hidden, &m->lm_head, err);
  if (!c->tie_word_embeddings)
    return rotq_fail(err, "%s: tensor 'lm_head.weight' is missing and tie_word_embeddings is false", ck->dir);
  m->lm_head = m->embed;
  return 0;
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
  const architecture *arch = find_architecture(ck.config.architecture);
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
  model *m = calloc(1, sizeof *m);
  if (m) {
    m->layers = calloc((size_t)ck.config.num_hidden_layers, sizeof *m->layers);
    m->inv_freq = malloc(sizeof(double) * (size_t)(ck.config.head_dim / 2 + 1));
  }
  int status = -1;
  if (!m || !m->layers || !m->inv_freq) {
    rotq_fail(err, "%s: out of memory", dir);
  } else {
    m->f32 = options && options->f32;
    const bool opt = strcmp(arch->name, "OPTForCausalLM") == 0;
    const bool nemotron_h = strcmp(arch->name, "NemotronHForCausalLM") == 0;
    status =
        (opt && opt_prepare_config(&ck.config, err) != 0) || check_config(&ck.config, arch, m, err) != 0 ||
                rope_inv_freq(&ck.config, m->inv_freq, err) != 0 ||
                activation_quant_resolve(options ? &options->quant : NULL, ck.config.head_dim, &m->quant, err) != 0 ||
                (nemotron_h && nemotron_h_configure(&ck, m, err) != 0) ||
                (opt          ? opt_read_weights(&ck, m, err)
                 : nemotron_h ? nemotron_h_read_weights(&ck, m, err)
                              : read_weights(&ck, arch, m, err)) != 0 ||
                (arch->gemma && gemma_configure(&ck, arch->gemma, m, err) != 0)
            ? -1
            : 0;
    if (status == 0 && arch->gemma) gemma_shift_norms(m, &ck.config);
    /* An online-rotated checkpoint computes the original function only with its hooks. */
    if (status == 0 && !(options && options->no_online_hooks))
      status = options && options->online_section
                   ? online_hooks_from_json(options->online_section, &ck.config, dir, &m->online, err)
                   : online_hooks_load(dir, &ck.config, &m->online, err);
    for (int l = 0; status == 0 && l < ck.config.num_hidden_layers; l++)
      if (m->layers[l].moe && online_hooks_active(m->online, ONLINE_SITE_DOWN_PROJ, l))
        status = rotq_fail(err, "%s: online R4 on the MoE block of layer %d is not supported", dir, l);
  }
  /* The model keeps config.json; the mapped shards are no longer needed. */
  if (m) {
    m->config = ck.config;
    memset(&ck.config, 0, sizeof ck.config);
  }
  checkpoint_close(&ck);
  if (status != 0) {
    model_free(m);
    return -1;
  }
  *out = m;
  return 0;
}

void model_free(model *m) {
  if (!m) return;
  for (int l = 0; m->layers && l < m->config.num_hidden_layers; l++) {
    layer_weights *w = &m->layers[l];
    void *weights[] = {w->attn_norm, w->wq, w->bq,       w->wk,     w->bk,     w->wv,   w->bv,   w->q_norm, w->k_norm,
                       w->wo,        w->bo, w->mlp_norm, w->w_gate, w->b_gate, w->w_up, w->b_up, w->w_down, w->b_down};
    for (size_t i = 0; i < sizeof weights / sizeof weights[0]; i++) free(weights[i]);
    moe_free(w->moe);
    free(w->post_attn_norm);
    free(w->post_mlp_norm);
    free(w->attn_norm_bias);
    free(w->mlp_norm_bias);
    mamba_free(w->mamba);
  }
  free(m->layers);
  if (m->lm_head != m->embed) free(m->lm_head);
  free(m->embed);
  free(m->final_norm);
  free(m->inv_freq);
  free(m->inv_freq_local);
  free(m->layer_window);
  free(m->final_norm_bias);
  free(m->positions);
  online_hooks_free(m->online);
  model_config_free(&m->config);
  free(m);
}

const model_config *model_get_config(const model *m) { return &m->config; }
