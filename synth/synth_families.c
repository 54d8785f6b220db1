/* Synthetic checkpoints of the families beyond the LLaMA one, in their transformers layout:
 * Mixtral, Qwen2/Qwen3-MoE, Phi-3, Gemma (1, 2, 3), OPT, Nemotron-H. Each family is a function that
 * lists its tensors (names and shapes as its modeling file creates them) and one that writes its
 * config.json fields, both given the variant's registry entry (family/family.h: its architecture,
 * model_type and loader flags); synth.c's writer draws and writes the values. The generators at the
 * end are what the descriptors name. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/json_file.h"
#include "synth/synth_internal.h"

/* A growing tensor list. */
typedef struct plan {
  synth_tensor *items;
  size_t count, capacity;
  bool failed; /* out of memory */
} plan;

/* Appends a tensor named printf(fmt, layer, index) of shape [rows, cols, depth] (trailing zeros
 * drop dimensions). */
static void add(plan *p, weight_kind kind, int64_t rows, int64_t cols, int64_t depth, const char *fmt, int layer,
                int index) {
  if (p->count == p->capacity) {
    size_t capacity = p->capacity ? 2 * p->capacity : 64;
    synth_tensor *grown = realloc(p->items, capacity * sizeof *grown);
    if (!grown) {
      p->failed = true;
      return;
    }
    p->items = grown;
    p->capacity = capacity;
  }
  synth_tensor *t = &p->items[p->count++];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, fmt, layer, index);
  t->kind = kind;
  t->shape[0] = rows;
  t->shape[1] = cols;
  t->shape[2] = depth;
  t->ndim = depth ? 3 : cols ? 2 : 1;
}

/* A linear "<prefix>.weight" [out, in], and "<prefix>.bias" [out] when bias. */
static void add_linear(plan *p, int64_t out, int64_t in, bool bias, const char *prefix, int layer, int index) {
  char fmt[128];
  snprintf(fmt, sizeof fmt, "%s.weight", prefix);
  add(p, KIND_LINEAR, out, in, 0, fmt, layer, index);
  if (!bias) return;
  snprintf(fmt, sizeof fmt, "%s.bias", prefix);
  add(p, KIND_BIAS, out, 0, 0, fmt, layer, index);
}

static int top_k_of(const synth_spec *s) { return s->num_experts_per_tok ? s->num_experts_per_tok : 2; }
static int sparse_step_of(const synth_spec *s) { return s->decoder_sparse_step ? s->decoder_sparse_step : 1; }

/* LLaMA-style attention of layer l under "model.layers.%d.": q/k/v/o_proj (q/k/v biases when
 * qkv_bias), q_norm/k_norm when qk_norm. */
static void add_attention(plan *p, const synth_spec *s, int l, bool qkv_bias, bool qk_norm) {
  const int64_t hd = synth_head_dim(s), q_dim = s->num_heads * hd, kv_dim = s->num_kv_heads * hd;
  add_linear(p, q_dim, s->hidden_size, qkv_bias, "model.layers.%d.self_attn.q_proj", l, 0);
  add_linear(p, kv_dim, s->hidden_size, qkv_bias, "model.layers.%d.self_attn.k_proj", l, 0);
  add_linear(p, kv_dim, s->hidden_size, qkv_bias, "model.layers.%d.self_attn.v_proj", l, 0);
  if (qk_norm) {
    add(p, KIND_NORM, hd, 0, 0, "model.layers.%d.self_attn.q_norm.weight", l, 0);
    add(p, KIND_NORM, hd, 0, 0, "model.layers.%d.self_attn.k_norm.weight", l, 0);
  }
  add_linear(p, s->hidden_size, q_dim, false, "model.layers.%d.self_attn.o_proj", l, 0);
}

/* embed_tokens first; model.norm and (untied) lm_head last. */
static void add_head(plan *p, const synth_spec *s, bool first) {
  if (first) {
    add(p, KIND_EMBEDDING, s->vocab_size, s->hidden_size, 0, "model.embed_tokens.weight", 0, 0);
    return;
  }
  add(p, KIND_NORM, s->hidden_size, 0, 0, "model.norm.weight", 0, 0);
  if (!s->tie_word_embeddings) add(p, KIND_LINEAR, s->vocab_size, s->hidden_size, 0, "lm_head.weight", 0, 0);
}

/* ---- Mixture of experts ---- */

static void mixtral_tensors(plan *p, const synth_spec *s, const family_variant *v) {
  (void)v;
  add_head(p, s, true);
  for (int l = 0; l < s->num_layers; l++) {
    add(p, KIND_NORM, s->hidden_size, 0, 0, "model.layers.%d.input_layernorm.weight", l, 0);
    add_attention(p, s, l, false, false);
    add(p, KIND_NORM, s->hidden_size, 0, 0, "model.layers.%d.post_attention_layernorm.weight", l, 0);
    add_linear(p, synth_experts(s), s->hidden_size, false, "model.layers.%d.block_sparse_moe.gate", l, 0);
    for (int e = 0; e < synth_experts(s); e++) {
      add_linear(p, s->intermediate_size, s->hidden_size, false, "model.layers.%d.block_sparse_moe.experts.%d.w1", l,
                 e);
      add_linear(p, s->hidden_size, s->intermediate_size, false, "model.layers.%d.block_sparse_moe.experts.%d.w2", l,
                 e);
      add_linear(p, s->intermediate_size, s->hidden_size, false, "model.layers.%d.block_sparse_moe.experts.%d.w3", l,
                 e);
    }
  }
  add_head(p, s, false);
}

/* Qwen2-MoE (shared expert) and Qwen3-MoE (q_norm/k_norm): layers l with (l + 1) % step != 0 are dense. */
static void qwen_moe_tensors(plan *p, const synth_spec *s, const family_variant *v) {
  const bool qwen2 = v->loader.moe == MOE_QWEN2;
  const int64_t hidden = s->hidden_size;
  const int64_t expert_inter = s->moe_intermediate_size ? s->moe_intermediate_size : s->intermediate_size;
  const int64_t shared_inter =
      s->shared_expert_intermediate_size ? s->shared_expert_intermediate_size : s->intermediate_size;
  add_head(p, s, true);
  for (int l = 0; l < s->num_layers; l++) {
    add(p, KIND_NORM, hidden, 0, 0, "model.layers.%d.input_layernorm.weight", l, 0);
    add_attention(p, s, l, qwen2 || s->attention_bias, !qwen2);
    add(p, KIND_NORM, hidden, 0, 0, "model.layers.%d.post_attention_layernorm.weight", l, 0);
    if ((l + 1) % sparse_step_of(s) != 0) {
      add_linear(p, s->intermediate_size, hidden, false, "model.layers.%d.mlp.gate_proj", l, 0);
      add_linear(p, s->intermediate_size, hidden, false, "model.layers.%d.mlp.up_proj", l, 0);
      add_linear(p, hidden, s->intermediate_size, false, "model.layers.%d.mlp.down_proj", l, 0);
      continue;
    }
    add_linear(p, synth_experts(s), hidden, false, "model.layers.%d.mlp.gate", l, 0);
    for (int e = 0; e < synth_experts(s); e++) {
      add_linear(p, expert_inter, hidden, false, "model.layers.%d.mlp.experts.%d.gate_proj", l, e);
      add_linear(p, expert_inter, hidden, false, "model.layers.%d.mlp.experts.%d.up_proj", l, e);
      add_linear(p, hidden, expert_inter, false, "model.layers.%d.mlp.experts.%d.down_proj", l, e);
    }
    if (!qwen2) continue;
    add_linear(p, shared_inter, hidden, false, "model.layers.%d.mlp.shared_expert.gate_proj", l, 0);
    add_linear(p, shared_inter, hidden, false, "model.layers.%d.mlp.shared_expert.up_proj", l, 0);
    add_linear(p, hidden, shared_inter, false, "model.layers.%d.mlp.shared_expert.down_proj", l, 0);
    add_linear(p, 1, hidden, false, "model.layers.%d.mlp.shared_expert_gate", l, 0);
  }
  add_head(p, s, false);
}

/* GLM-4.5 (Glm4MoeForCausalLM): q/k/v biases and q_norm/k_norm (attention_bias, use_qk_norm true
 * here), layer 0 dense (first_k_dense_replace 1 when there are more layers), then the router with its
 * correction bias, experts and one shared expert (mlp.shared_experts). */
static int glm4_dense_layers(const synth_spec *s) { return s->num_layers > 1 ? 1 : 0; }

/* Layer l's MLP in GLM-4.5's and DeepSeek-V3's layout: a dense SwiGLU below glm4_dense_layers,
 * else the router with its correction bias, the routed experts and the shared experts. */
static void add_deepseek_mlp(plan *p, const synth_spec *s, int l) {
  const int64_t hidden = s->hidden_size;
  const int64_t expert_inter = s->moe_intermediate_size ? s->moe_intermediate_size : s->intermediate_size;
  if (l < glm4_dense_layers(s)) {
    add_linear(p, s->intermediate_size, hidden, false, "model.layers.%d.mlp.gate_proj", l, 0);
    add_linear(p, s->intermediate_size, hidden, false, "model.layers.%d.mlp.up_proj", l, 0);
    add_linear(p, hidden, s->intermediate_size, false, "model.layers.%d.mlp.down_proj", l, 0);
    return;
  }
  add_linear(p, synth_experts(s), hidden, false, "model.layers.%d.mlp.gate", l, 0);
  add(p, KIND_BIAS, synth_experts(s), 0, 0, "model.layers.%d.mlp.gate.e_score_correction_bias", l, 0);
  for (int e = 0; e < synth_experts(s); e++) {
    add_linear(p, expert_inter, hidden, false, "model.layers.%d.mlp.experts.%d.gate_proj", l, e);
    add_linear(p, expert_inter, hidden, false, "model.layers.%d.mlp.experts.%d.up_proj", l, e);
    add_linear(p, hidden, expert_inter, false, "model.layers.%d.mlp.experts.%d.down_proj", l, e);
  }
  add_linear(p, expert_inter, hidden, false, "model.layers.%d.mlp.shared_experts.gate_proj", l, 0);
  add_linear(p, expert_inter, hidden, false, "model.layers.%d.mlp.shared_experts.up_proj", l, 0);
  add_linear(p, hidden, expert_inter, false, "model.layers.%d.mlp.shared_experts.down_proj", l, 0);
}

static void glm4_moe_tensors(plan *p, const synth_spec *s, const family_variant *v) {
  (void)v;
  const int64_t hidden = s->hidden_size;
  add_head(p, s, true);
  for (int l = 0; l < s->num_layers; l++) {
    add(p, KIND_NORM, hidden, 0, 0, "model.layers.%d.input_layernorm.weight", l, 0);
    add_attention(p, s, l, true, true);
    add(p, KIND_NORM, hidden, 0, 0, "model.layers.%d.post_attention_layernorm.weight", l, 0);
    add_deepseek_mlp(p, s, l);
  }
  add_head(p, s, false);
}

/* DeepSeek-V3 (DeepseekV3ForCausalLM): MLA with q_lora_rank = kv_lora_rank = hidden / 2,
 * qk_nope_head_dim = v_head_dim = head_dim, qk_rope_head_dim = head_dim / 2 (biases on q_a_proj,
 * kv_a_proj_with_mqa and o_proj when attention_bias), then the MLP / MoE layers as GLM-4.5's. */
static void add_mla(plan *p, const synth_spec *s, int l) {
  const int64_t hidden = s->hidden_size, heads = s->num_heads, hd = synth_head_dim(s), rope = hd / 2;
  const int64_t lora = hidden / 2;
  const bool bias = s->attention_bias;
  add_linear(p, lora, hidden, bias, "model.layers.%d.self_attn.q_a_proj", l, 0);
  add(p, KIND_NORM, lora, 0, 0, "model.layers.%d.self_attn.q_a_layernorm.weight", l, 0);
  add_linear(p, heads * (hd + rope), lora, false, "model.layers.%d.self_attn.q_b_proj", l, 0);
  add_linear(p, lora + rope, hidden, bias, "model.layers.%d.self_attn.kv_a_proj_with_mqa", l, 0);
  add(p, KIND_NORM, lora, 0, 0, "model.layers.%d.self_attn.kv_a_layernorm.weight", l, 0);
  add_linear(p, heads * (hd + hd), lora, false, "model.layers.%d.self_attn.kv_b_proj", l, 0);
  add_linear(p, hidden, heads * hd, bias, "model.layers.%d.self_attn.o_proj", l, 0);
}

static void deepseek_v3_tensors(plan *p, const synth_spec *s, const family_variant *v) {
  (void)v;
  const int64_t hidden = s->hidden_size;
  add_head(p, s, true);
  for (int l = 0; l < s->num_layers; l++) {
    add(p, KIND_NORM, hidden, 0, 0, "model.layers.%d.input_layernorm.weight", l, 0);
    add_mla(p, s, l);
    add(p, KIND_NORM, hidden, 0, 0, "model.layers.%d.post_attention_layernorm.weight", l, 0);
    add_deepseek_mlp(p, s, l);
  }
  add_head(p, s, false);
}

/* ---- Phi-3: fused qkv_proj and gate_up_proj ---- */

static void phi3_tensors(plan *p, const synth_spec *s, const family_variant *v) {
  (void)v;
  const int64_t hd = synth_head_dim(s), hidden = s->hidden_size;
  add_head(p, s, true);
  for (int l = 0; l < s->num_layers; l++) {
    add(p, KIND_NORM, hidden, 0, 0, "model.layers.%d.input_layernorm.weight", l, 0);
    add_linear(p, (s->num_heads + 2 * s->num_kv_heads) * hd, hidden, false, "model.layers.%d.self_attn.qkv_proj", l, 0);
    add_linear(p, hidden, s->num_heads * hd, false, "model.layers.%d.self_attn.o_proj", l, 0);
    add(p, KIND_NORM, hidden, 0, 0, "model.layers.%d.post_attention_layernorm.weight", l, 0);
    add_linear(p, 2 * (int64_t)s->intermediate_size, hidden, false, "model.layers.%d.mlp.gate_up_proj", l, 0);
    add_linear(p, hidden, s->intermediate_size, false, "model.layers.%d.mlp.down_proj", l, 0);
  }
  add_head(p, s, false);
}

/* ---- Gemma, Gemma-2, Gemma-3 (norm weights w: the norm scales by 1 + w) ---- */

static void gemma_tensors(plan *p, const synth_spec *s, const family_variant *v) {
  const int generation = v->loader.gemma;
  const int64_t hidden = s->hidden_size;
  add_head(p, s, true);
  for (int l = 0; l < s->num_layers; l++) {
    add(p, KIND_NORM_DELTA, hidden, 0, 0, "model.layers.%d.input_layernorm.weight", l, 0);
    add_attention(p, s, l, s->attention_bias, generation == 3);
    if (s->attention_bias) add(p, KIND_BIAS, hidden, 0, 0, "model.layers.%d.self_attn.o_proj.bias", l, 0);
    add(p, KIND_NORM_DELTA, hidden, 0, 0, "model.layers.%d.post_attention_layernorm.weight", l, 0);
    if (generation >= 2)
      add(p, KIND_NORM_DELTA, hidden, 0, 0, "model.layers.%d.pre_feedforward_layernorm.weight", l, 0);
    add_linear(p, s->intermediate_size, hidden, false, "model.layers.%d.mlp.gate_proj", l, 0);
    add_linear(p, s->intermediate_size, hidden, false, "model.layers.%d.mlp.up_proj", l, 0);
    add_linear(p, hidden, s->intermediate_size, false, "model.layers.%d.mlp.down_proj", l, 0);
    if (generation >= 2)
      add(p, KIND_NORM_DELTA, hidden, 0, 0, "model.layers.%d.post_feedforward_layernorm.weight", l, 0);
  }
  add(p, KIND_NORM_DELTA, hidden, 0, 0, "model.norm.weight", 0, 0);
  if (!s->tie_word_embeddings) add(p, KIND_LINEAR, s->vocab_size, hidden, 0, "lm_head.weight", 0, 0);
}

/* ---- OPT: LayerNorm with biases, learned positions, fc1/fc2 ---- */

#define OPT_MAX_POSITIONS 128

static void opt_tensors(plan *p, const synth_spec *s, const family_variant *v) {
  (void)v;
  const int64_t hidden = s->hidden_size;
  add(p, KIND_EMBEDDING, s->vocab_size, hidden, 0, "model.decoder.embed_tokens.weight", 0, 0);
  add(p, KIND_EMBEDDING, OPT_MAX_POSITIONS + 2, hidden, 0, "model.decoder.embed_positions.weight", 0, 0);
  for (int l = 0; l < s->num_layers; l++) {
    add_linear(p, hidden, hidden, true, "model.decoder.layers.%d.self_attn.k_proj", l, 0);
    add_linear(p, hidden, hidden, true, "model.decoder.layers.%d.self_attn.v_proj", l, 0);
    add_linear(p, hidden, hidden, true, "model.decoder.layers.%d.self_attn.q_proj", l, 0);
    add_linear(p, hidden, hidden, true, "model.decoder.layers.%d.self_attn.out_proj", l, 0);
    add(p, KIND_NORM, hidden, 0, 0, "model.decoder.layers.%d.self_attn_layer_norm.weight", l, 0);
    add(p, KIND_BIAS, hidden, 0, 0, "model.decoder.layers.%d.self_attn_layer_norm.bias", l, 0);
    add_linear(p, s->intermediate_size, hidden, true, "model.decoder.layers.%d.fc1", l, 0);
    add_linear(p, hidden, s->intermediate_size, true, "model.decoder.layers.%d.fc2", l, 0);
    add(p, KIND_NORM, hidden, 0, 0, "model.decoder.layers.%d.final_layer_norm.weight", l, 0);
    add(p, KIND_BIAS, hidden, 0, 0, "model.decoder.layers.%d.final_layer_norm.bias", l, 0);
  }
  add(p, KIND_NORM, hidden, 0, 0, "model.decoder.final_layer_norm.weight", 0, 0);
  add(p, KIND_BIAS, hidden, 0, 0, "model.decoder.final_layer_norm.bias", 0, 0);
  if (!s->tie_word_embeddings) add(p, KIND_LINEAR, s->vocab_size, hidden, 0, "lm_head.weight", 0, 0);
}

/* ---- Nemotron-H: Mamba-2 / attention / MLP / MoE layers ---- */

static int mamba_heads_of(const synth_spec *s) { return s->mamba_num_heads ? s->mamba_num_heads : 8; }
static int mamba_synth_head_dim(const synth_spec *s) { return s->mamba_head_dim ? s->mamba_head_dim : 8; }
static int ssm_state_of(const synth_spec *s) { return s->ssm_state_size ? s->ssm_state_size : 16; }
static int groups_of(const synth_spec *s) { return s->n_groups ? s->n_groups : 2; }
static int conv_kernel_of(const synth_spec *s) { return s->conv_kernel ? s->conv_kernel : 4; }

/* The layer type of layer l: the pattern's, or "M*M-" repeated. */
static char hybrid_kind(const synth_spec *s, int l) {
  const char *p = s->hybrid_override_pattern ? s->hybrid_override_pattern : "M*M-";
  return s->hybrid_override_pattern ? p[l] : p[l % 4];
}

static void nemotron_h_tensors(plan *p, const synth_spec *s, const family_variant *v) {
  (void)v;
  const int64_t hidden = s->hidden_size, heads = mamba_heads_of(s), inter = heads * mamba_synth_head_dim(s);
  const int64_t conv_dim = inter + 2 * (int64_t)groups_of(s) * ssm_state_of(s);
  add(p, KIND_EMBEDDING, s->vocab_size, hidden, 0, "backbone.embeddings.weight", 0, 0);
  for (int l = 0; l < s->num_layers; l++) {
    add(p, KIND_NORM, hidden, 0, 0, "backbone.layers.%d.norm.weight", l, 0);
    char kind = hybrid_kind(s, l);
    if (kind == 'M') {
      add(p, KIND_A_LOG, heads, 0, 0, "backbone.layers.%d.mixer.A_log", l, 0);
      add(p, KIND_SKIP, heads, 0, 0, "backbone.layers.%d.mixer.D", l, 0);
      add(p, KIND_LINEAR, conv_dim, 1, conv_kernel_of(s), "backbone.layers.%d.mixer.conv1d.weight", l, 0);
      add(p, KIND_BIAS, conv_dim, 0, 0, "backbone.layers.%d.mixer.conv1d.bias", l, 0);
      add(p, KIND_DT_BIAS, heads, 0, 0, "backbone.layers.%d.mixer.dt_bias", l, 0);
      add_linear(p, inter + conv_dim + heads, hidden, false, "backbone.layers.%d.mixer.in_proj", l, 0);
      add(p, KIND_NORM, inter, 0, 0, "backbone.layers.%d.mixer.norm.weight", l, 0);
      add_linear(p, hidden, inter, false, "backbone.layers.%d.mixer.out_proj", l, 0);
    } else if (kind == '*') {
      const int64_t hd = synth_head_dim(s);
      add_linear(p, s->num_heads * hd, hidden, false, "backbone.layers.%d.mixer.q_proj", l, 0);
      add_linear(p, s->num_kv_heads * hd, hidden, false, "backbone.layers.%d.mixer.k_proj", l, 0);
      add_linear(p, s->num_kv_heads * hd, hidden, false, "backbone.layers.%d.mixer.v_proj", l, 0);
      add_linear(p, hidden, s->num_heads * hd, false, "backbone.layers.%d.mixer.o_proj", l, 0);
    } else if (kind == 'E') { /* Nemotron-3 MoE: router (+ correction bias), relu² experts, shared expert */
      const int64_t expert_inter = s->moe_intermediate_size ? s->moe_intermediate_size : s->intermediate_size;
      add_linear(p, synth_experts(s), hidden, false, "backbone.layers.%d.mixer.gate", l, 0);
      add(p, KIND_BIAS, synth_experts(s), 0, 0, "backbone.layers.%d.mixer.gate.e_score_correction_bias", l, 0);
      for (int e = 0; e < synth_experts(s); e++) {
        add_linear(p, expert_inter, hidden, false, "backbone.layers.%d.mixer.experts.%d.up_proj", l, e);
        add_linear(p, hidden, expert_inter, false, "backbone.layers.%d.mixer.experts.%d.down_proj", l, e);
      }
      add_linear(p, s->intermediate_size, hidden, false, "backbone.layers.%d.mixer.shared_experts.up_proj", l, 0);
      add_linear(p, hidden, s->intermediate_size, false, "backbone.layers.%d.mixer.shared_experts.down_proj", l, 0);
    } else {
      add_linear(p, s->intermediate_size, hidden, false, "backbone.layers.%d.mixer.up_proj", l, 0);
      add_linear(p, hidden, s->intermediate_size, false, "backbone.layers.%d.mixer.down_proj", l, 0);
    }
  }
  add(p, KIND_NORM, hidden, 0, 0, "backbone.norm_f.weight", 0, 0);
  if (!s->tie_word_embeddings) add(p, KIND_LINEAR, s->vocab_size, hidden, 0, "lm_head.weight", 0, 0);
}

/* ---- config.json ---- */

/* The fields every decoder config has. */
static cJSON *common_config(const synth_spec *s, const family_variant *v) {
  cJSON *c = cJSON_CreateObject();
  cJSON_AddItemToArray(cJSON_AddArrayToObject(c, "architectures"), cJSON_CreateString(v->architecture));
  cJSON_AddStringToObject(c, "model_type", v->model_types[0]);
  cJSON_AddNumberToObject(c, "bos_token_id", 1);
  cJSON_AddNumberToObject(c, "eos_token_id", 2);
  cJSON_AddNumberToObject(c, "hidden_size", s->hidden_size);
  cJSON_AddNumberToObject(c, "intermediate_size", s->intermediate_size);
  cJSON_AddNumberToObject(c, "num_hidden_layers", s->num_layers);
  cJSON_AddNumberToObject(c, "num_attention_heads", s->num_heads);
  cJSON_AddNumberToObject(c, "vocab_size", s->vocab_size);
  cJSON_AddNumberToObject(c, "initializer_range", 0.02);
  cJSON_AddNumberToObject(c, "max_position_embeddings", 2048);
  cJSON_AddBoolToObject(c, "tie_word_embeddings", s->tie_word_embeddings);
  cJSON_AddStringToObject(c, "torch_dtype", synth_torch_dtype(s->dtype));
  cJSON_AddStringToObject(c, "transformers_version", "4.51.3");
  cJSON_AddBoolToObject(c, "use_cache", true);
  return c;
}

/* The fields of a LLaMA-style attention: kv heads, head_dim, RMSNorm eps, RoPE, dropout. */
static void attention_config(cJSON *c, const synth_spec *s, bool write_head_dim) {
  cJSON_AddNumberToObject(c, "num_key_value_heads", s->num_kv_heads);
  if (write_head_dim) cJSON_AddNumberToObject(c, "head_dim", synth_head_dim(s));
  cJSON_AddNumberToObject(c, "attention_dropout", 0.0);
  cJSON_AddStringToObject(c, "hidden_act", "silu");
  cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-6);
  cJSON_AddNumberToObject(c, "rope_theta", s->rope_theta > 0 ? s->rope_theta : 10000.0);
}

static cJSON *mixtral_config(const synth_spec *s, const family_variant *v) {
  cJSON *c = common_config(s, v);
  attention_config(c, s, true);
  cJSON_AddNumberToObject(c, "num_local_experts", synth_experts(s));
  cJSON_AddNumberToObject(c, "num_experts_per_tok", top_k_of(s));
  cJSON_AddBoolToObject(c, "output_router_logits", false);
  cJSON_AddNumberToObject(c, "router_aux_loss_coef", 0.02);
  cJSON_AddNumberToObject(c, "router_jitter_noise", 0.0);
  cJSON_AddNullToObject(c, "sliding_window");
  return c;
}

static cJSON *qwen_moe_config(const synth_spec *s, const family_variant *v) {
  const bool qwen2 = v->loader.moe == MOE_QWEN2;
  cJSON *c = common_config(s, v);
  attention_config(c, s, !qwen2);
  if (!qwen2) cJSON_AddBoolToObject(c, "attention_bias", s->attention_bias);
  cJSON_AddNumberToObject(c, "decoder_sparse_step", sparse_step_of(s));
  cJSON_AddArrayToObject(c, "mlp_only_layers");
  cJSON_AddNumberToObject(c, "max_window_layers", s->num_layers);
  cJSON_AddNumberToObject(c, "moe_intermediate_size",
                          s->moe_intermediate_size ? s->moe_intermediate_size : s->intermediate_size);
  if (qwen2)
    cJSON_AddNumberToObject(c, "shared_expert_intermediate_size",
                            s->shared_expert_intermediate_size ? s->shared_expert_intermediate_size
                                                               : s->intermediate_size);
  cJSON_AddBoolToObject(c, "norm_topk_prob", s->norm_topk_prob);
  cJSON_AddNumberToObject(c, "num_experts", synth_experts(s));
  cJSON_AddNumberToObject(c, "num_experts_per_tok", top_k_of(s));
  cJSON_AddBoolToObject(c, "output_router_logits", false);
  cJSON_AddNumberToObject(c, "router_aux_loss_coef", 0.001);
  cJSON_AddNullToObject(c, "rope_scaling");
  if (qwen2)
    cJSON_AddNumberToObject(c, "sliding_window", 2048);
  else
    cJSON_AddNullToObject(c, "sliding_window");
  cJSON_AddBoolToObject(c, "use_sliding_window", false);
  return c;
}

/* Glm4MoeConfig as transformers 5 writes it: partial RoPE (0.5) in rope_parameters, grouped
 * routing (2 groups, 1 kept, when the experts split in groups of two or more). */
static cJSON *glm4_moe_config(const synth_spec *s, const family_variant *v) {
  cJSON *c = common_config(s, v);
  const int experts = synth_experts(s);
  const bool grouped = experts % 2 == 0 && experts / 2 >= top_k_of(s) && experts >= 4;
  cJSON_AddNumberToObject(c, "num_key_value_heads", s->num_kv_heads);
  cJSON_AddNumberToObject(c, "head_dim", synth_head_dim(s));
  cJSON_AddNumberToObject(c, "attention_dropout", 0.0);
  cJSON_AddBoolToObject(c, "attention_bias", true);
  cJSON_AddBoolToObject(c, "use_qk_norm", true);
  cJSON_AddStringToObject(c, "hidden_act", "silu");
  cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-5);
  cJSON *rope = cJSON_AddObjectToObject(c, "rope_parameters");
  cJSON_AddNumberToObject(rope, "partial_rotary_factor", 0.5);
  cJSON_AddNumberToObject(rope, "rope_theta", s->rope_theta > 0 ? s->rope_theta : 10000.0);
  cJSON_AddStringToObject(rope, "rope_type", "default");
  cJSON_AddNumberToObject(c, "first_k_dense_replace", glm4_dense_layers(s));
  cJSON_AddNumberToObject(c, "moe_intermediate_size",
                          s->moe_intermediate_size ? s->moe_intermediate_size : s->intermediate_size);
  cJSON_AddNumberToObject(c, "n_routed_experts", experts);
  cJSON_AddNumberToObject(c, "n_shared_experts", 1);
  cJSON_AddNumberToObject(c, "num_experts_per_tok", top_k_of(s));
  cJSON_AddNumberToObject(c, "n_group", grouped ? 2 : 1);
  cJSON_AddNumberToObject(c, "topk_group", 1);
  cJSON_AddBoolToObject(c, "norm_topk_prob", true);
  cJSON_AddNumberToObject(c, "routed_scaling_factor", 2.5);
  cJSON_AddNumberToObject(c, "num_nextn_predict_layers", 0);
  cJSON_AddBoolToObject(c, "output_router_logits", false);
  return c;
}

/* DeepseekV3Config as transformers 5 writes it: head_dim = qk_rope_head_dim, num_key_value_heads =
 * heads, interleaved RoPE, default rope type; the MoE fields as GLM-4.5's. */
static cJSON *deepseek_v3_config(const synth_spec *s, const family_variant *v) {
  cJSON *c = glm4_moe_config(s, v);
  const int hd = synth_head_dim(s);
  const char *dropped[] = {"num_key_value_heads", "head_dim",        "attention_bias",
                           "use_qk_norm",         "rope_parameters", "rms_norm_eps"};
  for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++) cJSON_DeleteItemFromObject(c, dropped[i]);
  cJSON_AddNumberToObject(c, "num_key_value_heads", s->num_heads);
  cJSON_AddNumberToObject(c, "head_dim", hd / 2);
  cJSON_AddNumberToObject(c, "qk_rope_head_dim", hd / 2);
  cJSON_AddNumberToObject(c, "qk_nope_head_dim", hd);
  cJSON_AddNumberToObject(c, "v_head_dim", hd);
  cJSON_AddNumberToObject(c, "q_lora_rank", s->hidden_size / 2);
  cJSON_AddNumberToObject(c, "kv_lora_rank", s->hidden_size / 2);
  cJSON_AddBoolToObject(c, "attention_bias", s->attention_bias);
  cJSON_AddBoolToObject(c, "rope_interleave", true);
  cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-6);
  cJSON *rope = cJSON_AddObjectToObject(c, "rope_parameters");
  cJSON_AddNumberToObject(rope, "rope_theta", s->rope_theta > 0 ? s->rope_theta : 10000.0);
  cJSON_AddStringToObject(rope, "rope_type", "default");
  return c;
}

static cJSON *phi3_config(const synth_spec *s, const family_variant *v) {
  cJSON *c = common_config(s, v);
  attention_config(c, s, false);
  /* Phi-3 has eos = pad = 32000; nn.Embedding needs padding_idx inside the vocabulary */
  cJSON_ReplaceItemInObject(c, "eos_token_id", cJSON_CreateNumber(s->vocab_size - 1));
  cJSON_ReplaceItemInObject(c, "rms_norm_eps", cJSON_CreateNumber(1e-5));
  cJSON_ReplaceItemInObject(c, "max_position_embeddings", cJSON_CreateNumber(4096));
  cJSON_AddBoolToObject(c, "attention_bias", false);
  cJSON_AddNumberToObject(c, "embd_pdrop", 0.0);
  cJSON_AddNumberToObject(c, "original_max_position_embeddings", 4096);
  cJSON_AddNumberToObject(c, "pad_token_id", s->vocab_size - 1);
  cJSON_AddNumberToObject(c, "resid_pdrop", 0.0);
  cJSON_AddNullToObject(c, "rope_scaling");
  cJSON_AddNumberToObject(c, "sliding_window", 2047);
  return c;
}

static cJSON *gemma_config(const synth_spec *s, const family_variant *v) {
  const int generation = v->loader.gemma;
  cJSON *c = common_config(s, v);
  attention_config(c, s, true);
  cJSON_ReplaceItemInObject(c, "bos_token_id", cJSON_CreateNumber(2));
  cJSON_ReplaceItemInObject(c, "eos_token_id", cJSON_CreateNumber(1));
  cJSON_ReplaceItemInObject(c, "max_position_embeddings", cJSON_CreateNumber(8192));
  cJSON_AddNumberToObject(c, "pad_token_id", 0);
  cJSON_AddBoolToObject(c, "attention_bias", s->attention_bias);
  cJSON_ReplaceItemInObject(c, "hidden_act", cJSON_CreateString("gelu_pytorch_tanh"));
  cJSON_AddStringToObject(c, "hidden_activation", "gelu_pytorch_tanh");
  if (generation == 1) {
    cJSON_AddNullToObject(c, "rope_scaling");
    return c;
  }
  if (generation == 2) cJSON_DeleteItemFromObject(c, "hidden_act"); /* Gemma2Config has hidden_activation only */
  cJSON_AddNumberToObject(c, "query_pre_attn_scalar",
                          s->query_pre_attn_scalar ? s->query_pre_attn_scalar : synth_head_dim(s));
  cJSON_AddNumberToObject(c, "sliding_window", s->sliding_window ? s->sliding_window : 4096);
  if (generation == 2) {
    cJSON_AddNumberToObject(c, "attn_logit_softcapping", 50.0);
    cJSON_AddNumberToObject(c, "final_logit_softcapping", 30.0);
    cJSON_AddStringToObject(c, "cache_implementation", "hybrid");
    return c;
  }
  cJSON_AddNullToObject(c, "attn_logit_softcapping");
  cJSON_AddNullToObject(c, "final_logit_softcapping");
  cJSON_AddNumberToObject(c, "sliding_window_pattern", s->sliding_window_pattern ? s->sliding_window_pattern : 6);
  cJSON_AddNumberToObject(c, "rope_local_base_freq", 10000.0);
  cJSON_ReplaceItemInObject(c, "rope_theta", cJSON_CreateNumber(1000000.0));
  cJSON *scaling = cJSON_AddObjectToObject(c, "rope_scaling");
  cJSON_AddNumberToObject(scaling, "factor", 8.0);
  cJSON_AddStringToObject(scaling, "rope_type", "linear");
  return c;
}

static cJSON *opt_config(const synth_spec *s, const family_variant *v) {
  cJSON *c = common_config(s, v);
  cJSON_DeleteItemFromObject(c, "intermediate_size"); /* OPTConfig calls it ffn_dim */
  cJSON_DeleteItemFromObject(c, "initializer_range");
  cJSON_ReplaceItemInObject(c, "bos_token_id", cJSON_CreateNumber(2));
  cJSON_ReplaceItemInObject(c, "max_position_embeddings", cJSON_CreateNumber(OPT_MAX_POSITIONS));
  cJSON_AddNumberToObject(c, "ffn_dim", s->intermediate_size);
  cJSON_AddNumberToObject(c, "activation_dropout", 0.0);
  cJSON_AddStringToObject(c, "activation_function", "relu");
  cJSON_AddNumberToObject(c, "attention_dropout", 0.0);
  cJSON_AddBoolToObject(c, "do_layer_norm_before", true);
  cJSON_AddNumberToObject(c, "dropout", 0.1);
  cJSON_AddBoolToObject(c, "enable_bias", true);
  cJSON_AddNumberToObject(c, "init_std", 0.02);
  cJSON_AddBoolToObject(c, "layer_norm_elementwise_affine", true);
  cJSON_AddNumberToObject(c, "layerdrop", 0.0);
  cJSON_AddNumberToObject(c, "pad_token_id", 1);
  cJSON_AddStringToObject(c, "prefix", "</s>");
  cJSON_AddNumberToObject(c, "word_embed_proj_dim", s->hidden_size);
  return c;
}

static cJSON *nemotron_h_config(const synth_spec *s, const family_variant *v) {
  cJSON *c = common_config(s, v);
  char pattern[1024];
  int layers = s->num_layers < (int)sizeof pattern - 1 ? s->num_layers : (int)sizeof pattern - 1;
  for (int l = 0; l < layers; l++) pattern[l] = hybrid_kind(s, l);
  pattern[layers] = '\0';
  cJSON_AddStringToObject(c, "hybrid_override_pattern", pattern);
  cJSON_AddNumberToObject(c, "num_key_value_heads", s->num_kv_heads);
  cJSON_AddNumberToObject(c, "head_dim", synth_head_dim(s));
  cJSON_AddBoolToObject(c, "attention_bias", false);
  cJSON_AddNumberToObject(c, "attention_dropout", 0.0);
  cJSON_AddBoolToObject(c, "mlp_bias", false);
  cJSON_AddStringToObject(c, "mlp_hidden_act", "relu2");
  cJSON_AddNumberToObject(c, "layer_norm_epsilon", 1e-5);
  if (strchr(pattern, 'E')) { /* MoE layers (Nemotron-3): NemotronHMoE's fields */
    cJSON_AddNumberToObject(c, "n_routed_experts", synth_experts(s));
    cJSON_AddNumberToObject(c, "num_experts_per_tok", top_k_of(s));
    cJSON_AddNumberToObject(c, "moe_intermediate_size",
                            s->moe_intermediate_size ? s->moe_intermediate_size : s->intermediate_size);
    cJSON_AddNumberToObject(c, "moe_shared_expert_intermediate_size", s->intermediate_size);
    cJSON_AddNumberToObject(c, "n_shared_experts", 1);
    cJSON_AddNullToObject(c, "moe_latent_size");
    cJSON_AddNumberToObject(c, "n_group", synth_experts(s) % 2 == 0 && synth_experts(s) >= 4 ? 2 : 1);
    cJSON_AddNumberToObject(c, "topk_group", 1);
    cJSON_AddBoolToObject(c, "norm_topk_prob", true);
    cJSON_AddNumberToObject(c, "routed_scaling_factor", 2.5);
  }
  cJSON_AddNumberToObject(c, "mamba_num_heads", mamba_heads_of(s));
  cJSON_AddNumberToObject(c, "mamba_head_dim", mamba_synth_head_dim(s));
  cJSON_AddNumberToObject(c, "ssm_state_size", ssm_state_of(s));
  cJSON_AddNumberToObject(c, "n_groups", groups_of(s));
  cJSON_AddNumberToObject(c, "conv_kernel", conv_kernel_of(s));
  cJSON_AddNumberToObject(c, "chunk_size", 256);
  cJSON_AddStringToObject(c, "mamba_hidden_act", "silu");
  cJSON_AddBoolToObject(c, "use_bias", false);
  cJSON_AddBoolToObject(c, "use_conv_bias", true);
  cJSON_AddBoolToObject(c, "residual_in_fp32", false);
  cJSON_AddBoolToObject(c, "rescale_prenorm_residual", true);
  cJSON_AddNumberToObject(c, "time_step_min", 0.001);
  cJSON_AddNumberToObject(c, "time_step_max", 0.1);
  cJSON_AddNumberToObject(c, "time_step_floor", 1e-4);
  return c;
}

/* ---- the generators the descriptors name ---- */

/* Sorts an object's members by key, as transformers writes config.json. */
static void sort_keys(cJSON *object) {
  for (cJSON *i = object->child; i; i = i->next)
    for (cJSON *j = i->next; j; j = j->next)
      if (strcmp(j->string, i->string) < 0) {
        /* swap the payloads of i and j (keys, values and children) */
        cJSON tmp = *i;
        i->type = j->type, i->valuestring = j->valuestring, i->valueint = j->valueint;
        i->valuedouble = j->valuedouble, i->string = j->string, i->child = j->child;
        j->type = tmp.type, j->valuestring = tmp.valuestring, j->valueint = tmp.valueint;
        j->valuedouble = tmp.valuedouble, j->string = tmp.string, j->child = tmp.child;
      }
}

static int check_spec(const synth_spec *s, const family_variant *v, rotq_error *err) {
  if (s->hidden_size < 1 || s->intermediate_size < 1 || s->num_layers < 1 || s->num_heads < 1 || s->num_kv_heads < 1 ||
      s->vocab_size < 1 || s->head_dim < 0)
    return rotq_fail(err, "synth: sizes must be positive");
  if (s->num_heads % s->num_kv_heads != 0)
    return rotq_fail(err, "synth: %d heads is not a multiple of %d kv heads", s->num_heads, s->num_kv_heads);
  if (!s->head_dim && s->hidden_size % s->num_heads != 0)
    return rotq_fail(err, "synth: hidden size %d is not a multiple of %d heads; give head_dim", s->hidden_size,
                     s->num_heads);
  if (synth_head_dim(s) % 2 != 0)
    return rotq_fail(err, "synth: head_dim %d is odd; RoPE needs it even", synth_head_dim(s));
  if (v->no_head_dim_field && synth_head_dim(s) * s->num_heads != s->hidden_size)
    return rotq_fail(err, "synth: %s has no head_dim field: head_dim must be hidden / heads", v->architecture);
  if (s->hybrid_override_pattern && (int)strlen(s->hybrid_override_pattern) != s->num_layers)
    return rotq_fail(err, "synth: hybrid_override_pattern has %zu layers, not %d", strlen(s->hybrid_override_pattern),
                     s->num_layers);
  if (top_k_of(s) > synth_experts(s))
    return rotq_fail(err, "synth: %d experts per token of %d experts", top_k_of(s), synth_experts(s));
  return 0;
}

/* Checks spec, then writes p's tensors and config (sorted) into dir; frees both. */
static int write_family(const synth_spec *spec, const family_variant *v, const char *dir,
                        void (*tensors)(plan *, const synth_spec *, const family_variant *),
                        cJSON *(*config)(const synth_spec *, const family_variant *), rotq_error *err) {
  if (check_spec(spec, v, err) != 0) return -1;
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) return rotq_fail(err, "%s: cannot create: %s", dir, strerror(errno));
  plan p = {0};
  tensors(&p, spec, v);
  cJSON *json = config(spec, v);
  int status = 0;
  if (p.failed || !json) status = rotq_fail(err, "%s: out of memory", dir);
  if (status == 0) {
    sort_keys(json);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    status = json_file_write(path, json, err);
  }
  if (status == 0) status = synth_write_tensors(spec, p.items, p.count, dir, err);
  cJSON_Delete(json);
  free(p.items);
  return status;
}

int synth_mixtral(const synth_spec *spec, const family_variant *v, const char *dir, rotq_error *err) {
  return write_family(spec, v, dir, mixtral_tensors, mixtral_config, err);
}
int synth_qwen_moe(const synth_spec *spec, const family_variant *v, const char *dir, rotq_error *err) {
  return write_family(spec, v, dir, qwen_moe_tensors, qwen_moe_config, err);
}
int synth_phi3(const synth_spec *spec, const family_variant *v, const char *dir, rotq_error *err) {
  return write_family(spec, v, dir, phi3_tensors, phi3_config, err);
}
int synth_gemma(const synth_spec *spec, const family_variant *v, const char *dir, rotq_error *err) {
  return write_family(spec, v, dir, gemma_tensors, gemma_config, err);
}
int synth_opt(const synth_spec *spec, const family_variant *v, const char *dir, rotq_error *err) {
  return write_family(spec, v, dir, opt_tensors, opt_config, err);
}
int synth_nemotron_h(const synth_spec *spec, const family_variant *v, const char *dir, rotq_error *err) {
  return write_family(spec, v, dir, nemotron_h_tensors, nemotron_h_config, err);
}
int synth_glm4_moe(const synth_spec *spec, const family_variant *v, const char *dir, rotq_error *err) {
  return write_family(spec, v, dir, glm4_moe_tensors, glm4_moe_config, err);
}
int synth_deepseek_v3(const synth_spec *spec, const family_variant *v, const char *dir, rotq_error *err) {
  return write_family(spec, v, dir, deepseek_v3_tensors, deepseek_v3_config, err);
}
