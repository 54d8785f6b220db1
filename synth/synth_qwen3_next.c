/* Synthetic Qwen3-Next checkpoints (Qwen3NextForCausalLM) in the layout transformers saves: the
 * tensor names and shapes of modeling_qwen3_next.py (the MoE experts per expert, as transformers'
 * qwen2_moe conversion writes them back) and Qwen3NextConfig's fields as transformers 5 writes them.
 * Layer kinds: every 4th layer full attention (every 2nd below 4 layers), the rest gated DeltaNet;
 * layers off decoder_sparse_step dense MLPs. The DeltaNet has 2 key heads of head_dim and 4 value
 * heads of head_dim / 2 (two value heads per key head), conv kernel conv_kernel (0 = 4). Norm
 * weights of the (1 + w) norms are drawn around 0, the gated norm's around 1. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/json_file.h"
#include "synth/synth_internal.h"

typedef struct tensor_list {
  synth_tensor *items;
  size_t count, capacity;
  bool failed;
} tensor_list;

/* Appends a tensor named printf(fmt, layer, index) of shape [rows, cols, depth] (zeros drop dims). */
static void add(tensor_list *p, weight_kind kind, int64_t rows, int64_t cols, int64_t depth, const char *fmt, int layer,
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
  t->shape[0] = rows, t->shape[1] = cols, t->shape[2] = depth;
  t->ndim = depth ? 3 : cols ? 2 : 1;
}

typedef struct sizes {
  int head_dim, experts, top_k, step, interval, kernel;
  int k_heads, v_heads, k_dim, v_dim;
  int64_t expert_inter, shared_inter;
} sizes;

static sizes sizes_of(const synth_spec *s) {
  sizes z;
  z.head_dim = s->head_dim ? s->head_dim : s->hidden_size / s->num_heads;
  z.experts = s->num_experts ? s->num_experts : 4;
  z.top_k = s->num_experts_per_tok ? s->num_experts_per_tok : 2;
  z.step = s->decoder_sparse_step ? s->decoder_sparse_step : 1;
  z.interval = s->num_layers >= 4 ? 4 : 2;
  z.kernel = s->conv_kernel ? s->conv_kernel : 4;
  z.k_heads = 2, z.v_heads = 4;
  z.k_dim = z.head_dim, z.v_dim = z.head_dim / 2 > 2 ? z.head_dim / 2 : 2;
  z.expert_inter = s->moe_intermediate_size ? s->moe_intermediate_size : s->intermediate_size;
  z.shared_inter = s->shared_expert_intermediate_size ? s->shared_expert_intermediate_size : s->intermediate_size;
  return z;
}

static bool is_linear(const sizes *z, int layer) { return (layer + 1) % z->interval != 0; }

static void tensors(tensor_list *p, const synth_spec *s, const sizes *z) {
  const int64_t hidden = s->hidden_size, q_dim = (int64_t)s->num_heads * z->head_dim;
  const int64_t kv_dim = (int64_t)s->num_kv_heads * z->head_dim, key_dim = (int64_t)z->k_heads * z->k_dim;
  const int64_t value_dim = (int64_t)z->v_heads * z->v_dim;
  add(p, KIND_EMBEDDING, s->vocab_size, hidden, 0, "model.embed_tokens.weight", 0, 0);
  for (int l = 0; l < s->num_layers; l++) {
    add(p, KIND_NORM_DELTA, hidden, 0, 0, "model.layers.%d.input_layernorm.weight", l, 0);
    if (is_linear(z, l)) {
      add(p, KIND_LINEAR, 2 * key_dim + 2 * value_dim, hidden, 0, "model.layers.%d.linear_attn.in_proj_qkvz.weight", l,
          0);
      add(p, KIND_LINEAR, 2 * z->v_heads, hidden, 0, "model.layers.%d.linear_attn.in_proj_ba.weight", l, 0);
      add(p, KIND_LINEAR, 2 * key_dim + value_dim, 1, z->kernel, "model.layers.%d.linear_attn.conv1d.weight", l, 0);
      add(p, KIND_DT_BIAS, z->v_heads, 0, 0, "model.layers.%d.linear_attn.dt_bias", l, 0);
      add(p, KIND_A_LOG, z->v_heads, 0, 0, "model.layers.%d.linear_attn.A_log", l, 0);
      add(p, KIND_NORM, z->v_dim, 0, 0, "model.layers.%d.linear_attn.norm.weight", l, 0);
      add(p, KIND_LINEAR, hidden, value_dim, 0, "model.layers.%d.linear_attn.out_proj.weight", l, 0);
    } else {
      static const char *const names[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
      const int64_t rows[4] = {2 * q_dim, kv_dim, kv_dim, hidden}, cols[4] = {hidden, hidden, hidden, q_dim};
      for (int i = 0; i < 4; i++) {
        char fmt[96];
        snprintf(fmt, sizeof fmt, "model.layers.%%d.self_attn.%s.weight", names[i]);
        add(p, KIND_LINEAR, rows[i], cols[i], 0, fmt, l, 0);
        if (!s->attention_bias) continue;
        snprintf(fmt, sizeof fmt, "model.layers.%%d.self_attn.%s.bias", names[i]);
        add(p, KIND_BIAS, rows[i], 0, 0, fmt, l, 0);
      }
      add(p, KIND_NORM_DELTA, z->head_dim, 0, 0, "model.layers.%d.self_attn.q_norm.weight", l, 0);
      add(p, KIND_NORM_DELTA, z->head_dim, 0, 0, "model.layers.%d.self_attn.k_norm.weight", l, 0);
    }
    add(p, KIND_NORM_DELTA, hidden, 0, 0, "model.layers.%d.post_attention_layernorm.weight", l, 0);
    if ((l + 1) % z->step != 0) {
      add(p, KIND_LINEAR, s->intermediate_size, hidden, 0, "model.layers.%d.mlp.gate_proj.weight", l, 0);
      add(p, KIND_LINEAR, s->intermediate_size, hidden, 0, "model.layers.%d.mlp.up_proj.weight", l, 0);
      add(p, KIND_LINEAR, hidden, s->intermediate_size, 0, "model.layers.%d.mlp.down_proj.weight", l, 0);
      continue;
    }
    add(p, KIND_LINEAR, z->experts, hidden, 0, "model.layers.%d.mlp.gate.weight", l, 0);
    for (int e = 0; e < z->experts; e++) {
      add(p, KIND_LINEAR, z->expert_inter, hidden, 0, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e);
      add(p, KIND_LINEAR, z->expert_inter, hidden, 0, "model.layers.%d.mlp.experts.%d.up_proj.weight", l, e);
      add(p, KIND_LINEAR, hidden, z->expert_inter, 0, "model.layers.%d.mlp.experts.%d.down_proj.weight", l, e);
    }
    add(p, KIND_LINEAR, z->shared_inter, hidden, 0, "model.layers.%d.mlp.shared_expert.gate_proj.weight", l, 0);
    add(p, KIND_LINEAR, z->shared_inter, hidden, 0, "model.layers.%d.mlp.shared_expert.up_proj.weight", l, 0);
    add(p, KIND_LINEAR, hidden, z->shared_inter, 0, "model.layers.%d.mlp.shared_expert.down_proj.weight", l, 0);
    add(p, KIND_LINEAR, 1, hidden, 0, "model.layers.%d.mlp.shared_expert_gate.weight", l, 0);
  }
  add(p, KIND_NORM_DELTA, hidden, 0, 0, "model.norm.weight", 0, 0);
  if (!s->tie_word_embeddings) add(p, KIND_LINEAR, s->vocab_size, hidden, 0, "lm_head.weight", 0, 0);
}

/* Qwen3NextConfig's fields, in sorted order, as transformers 5 writes them. */
static cJSON *config(const synth_spec *s, const family_variant *v, const sizes *z) {
  cJSON *c = cJSON_CreateObject();
  cJSON_AddItemToArray(cJSON_AddArrayToObject(c, "architectures"), cJSON_CreateString(v->architecture));
  cJSON_AddBoolToObject(c, "attention_bias", s->attention_bias);
  cJSON_AddNumberToObject(c, "attention_dropout", 0.0);
  cJSON_AddNumberToObject(c, "bos_token_id", s->bos_token_id ? s->bos_token_id : 1);
  cJSON_AddNumberToObject(c, "decoder_sparse_step", z->step);
  cJSON_AddStringToObject(c, "dtype", synth_torch_dtype(s->dtype));
  cJSON_AddNumberToObject(c, "eos_token_id", s->eos_token_id ? s->eos_token_id : 2);
  cJSON_AddNumberToObject(c, "head_dim", z->head_dim);
  cJSON_AddStringToObject(c, "hidden_act", "silu");
  cJSON_AddNumberToObject(c, "hidden_size", s->hidden_size);
  cJSON_AddNumberToObject(c, "initializer_range", 0.02);
  cJSON_AddNumberToObject(c, "intermediate_size", s->intermediate_size);
  cJSON *types = cJSON_AddArrayToObject(c, "layer_types");
  for (int l = 0; l < s->num_layers; l++)
    cJSON_AddItemToArray(types, cJSON_CreateString(is_linear(z, l) ? "linear_attention" : "full_attention"));
  cJSON_AddNumberToObject(c, "linear_conv_kernel_dim", z->kernel);
  cJSON_AddNumberToObject(c, "linear_key_head_dim", z->k_dim);
  cJSON_AddNumberToObject(c, "linear_num_key_heads", z->k_heads);
  cJSON_AddNumberToObject(c, "linear_num_value_heads", z->v_heads);
  cJSON_AddNumberToObject(c, "linear_value_head_dim", z->v_dim);
  cJSON_AddNumberToObject(c, "max_position_embeddings", s->max_position_embeddings ? s->max_position_embeddings : 2048);
  cJSON_AddArrayToObject(c, "mlp_only_layers");
  cJSON_AddStringToObject(c, "model_type", v->model_types[0]);
  cJSON_AddNumberToObject(c, "moe_intermediate_size", (double)z->expert_inter);
  cJSON_AddBoolToObject(c, "norm_topk_prob", true);
  cJSON_AddNumberToObject(c, "num_attention_heads", s->num_heads);
  cJSON_AddNumberToObject(c, "num_experts", z->experts);
  cJSON_AddNumberToObject(c, "num_experts_per_tok", z->top_k);
  cJSON_AddNumberToObject(c, "num_hidden_layers", s->num_layers);
  cJSON_AddNumberToObject(c, "num_key_value_heads", s->num_kv_heads);
  cJSON_AddBoolToObject(c, "output_router_logits", false);
  cJSON_AddNumberToObject(c, "rms_norm_eps", s->rms_norm_eps > 0 ? s->rms_norm_eps : 1e-6);
  cJSON *rope = cJSON_AddObjectToObject(c, "rope_parameters");
  cJSON_AddNumberToObject(rope, "partial_rotary_factor", 0.25);
  cJSON_AddNumberToObject(rope, "rope_theta", s->rope_theta > 0 ? s->rope_theta : 10000.0);
  cJSON_AddStringToObject(rope, "rope_type", "default");
  cJSON_AddNumberToObject(c, "router_aux_loss_coef", 0.001);
  cJSON_AddNumberToObject(c, "shared_expert_intermediate_size", (double)z->shared_inter);
  cJSON_AddBoolToObject(c, "tie_word_embeddings", s->tie_word_embeddings);
  cJSON_AddStringToObject(c, "transformers_version", "5.0.0");
  cJSON_AddBoolToObject(c, "use_cache", true);
  cJSON_AddNumberToObject(c, "vocab_size", s->vocab_size);
  return c;
}

int synth_qwen3_next(const synth_spec *spec, const family_variant *v, const char *dir, rotq_error *err) {
  if (spec->hidden_size < 1 || spec->intermediate_size < 1 || spec->num_layers < 1 || spec->num_heads < 1 ||
      spec->num_kv_heads < 1 || spec->vocab_size < 1 || spec->head_dim < 0)
    return rotq_fail(err, "synth: sizes must be positive");
  if (spec->num_heads % spec->num_kv_heads != 0)
    return rotq_fail(err, "synth: %d heads is not a multiple of %d kv heads", spec->num_heads, spec->num_kv_heads);
  const sizes z = sizes_of(spec);
  if (z.head_dim < 8 || z.head_dim % 8 != 0)
    return rotq_fail(err, "synth: %s needs head_dim a multiple of 8 (partial RoPE on a quarter of it), not %d",
                     v->architecture, z.head_dim);
  if (z.top_k > z.experts) return rotq_fail(err, "synth: %d experts per token of %d experts", z.top_k, z.experts);
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) return rotq_fail(err, "%s: cannot create: %s", dir, strerror(errno));
  tensor_list p = {0};
  tensors(&p, spec, &z);
  cJSON *json = config(spec, v, &z);
  int status = 0;
  if (p.failed || !json) status = rotq_fail(err, "%s: out of memory", dir);
  if (status == 0) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    status = json_file_write(path, json, err);
  }
  if (status == 0) status = synth_write_tensors(spec, p.items, p.count, dir, err);
  cJSON_Delete(json);
  free(p.items);
  return status;
}
