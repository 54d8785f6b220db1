/* Synthetic gpt-oss checkpoints (GptOssForCausalLM) in the layout transformers 5's save_pretrained
 * writes: q/k/v/o_proj with biases, self_attn.sinks [heads], the router mlp.router (weight, bias)
 * and the fused experts mlp.experts.gate_up_proj [E, hidden, 2·inter], gate_up_proj_bias
 * [E, 2·inter], down_proj [E, inter, hidden], down_proj_bias [E, hidden]; config.json with
 * layer_types alternating sliding / full (sliding_window: spec's, else 128) and YaRN RoPE in
 * rope_parameters as GptOssConfig's defaults. Sinks are drawn as norm weights (1 + 0.2·N(0, 1)), so
 * they take a real share of each softmax. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/json_file.h"
#include "synth/synth_internal.h"

typedef struct tensor_list {
  synth_tensor items[64];
  size_t count;
} tensor_list;

/* Appends printf(fmt, layer) of shape [d0, d1, d2] (trailing zeros drop dimensions); false when full. */
static bool add(tensor_list *p, weight_kind kind, int64_t d0, int64_t d1, int64_t d2, const char *fmt, int layer) {
  if (p->count == sizeof p->items / sizeof p->items[0]) return false;
  synth_tensor *t = &p->items[p->count++];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, fmt, layer);
  t->kind = kind;
  t->shape[0] = d0, t->shape[1] = d1, t->shape[2] = d2;
  t->ndim = d2 ? 3 : d1 ? 2 : 1;
  return true;
}

static int top_k_of(const synth_spec *s) { return s->num_experts_per_tok ? s->num_experts_per_tok : 2; }

static bool layer_tensors(tensor_list *p, const synth_spec *s, int l) {
  const int64_t hidden = s->hidden_size, inter = s->intermediate_size, E = synth_experts(s);
  const int64_t q_dim = (int64_t)s->num_heads * synth_head_dim(s),
                kv_dim = (int64_t)s->num_kv_heads * synth_head_dim(s);
  return add(p, KIND_NORM, hidden, 0, 0, "model.layers.%d.input_layernorm.weight", l) &&
         add(p, KIND_LINEAR, q_dim, hidden, 0, "model.layers.%d.self_attn.q_proj.weight", l) &&
         add(p, KIND_BIAS, q_dim, 0, 0, "model.layers.%d.self_attn.q_proj.bias", l) &&
         add(p, KIND_LINEAR, kv_dim, hidden, 0, "model.layers.%d.self_attn.k_proj.weight", l) &&
         add(p, KIND_BIAS, kv_dim, 0, 0, "model.layers.%d.self_attn.k_proj.bias", l) &&
         add(p, KIND_LINEAR, kv_dim, hidden, 0, "model.layers.%d.self_attn.v_proj.weight", l) &&
         add(p, KIND_BIAS, kv_dim, 0, 0, "model.layers.%d.self_attn.v_proj.bias", l) &&
         add(p, KIND_LINEAR, hidden, q_dim, 0, "model.layers.%d.self_attn.o_proj.weight", l) &&
         add(p, KIND_BIAS, hidden, 0, 0, "model.layers.%d.self_attn.o_proj.bias", l) &&
         add(p, KIND_NORM, s->num_heads, 0, 0, "model.layers.%d.self_attn.sinks", l) &&
         add(p, KIND_NORM, hidden, 0, 0, "model.layers.%d.post_attention_layernorm.weight", l) &&
         add(p, KIND_LINEAR, E, hidden, 0, "model.layers.%d.mlp.router.weight", l) &&
         add(p, KIND_BIAS, E, 0, 0, "model.layers.%d.mlp.router.bias", l) &&
         add(p, KIND_LINEAR, E, hidden, 2 * inter, "model.layers.%d.mlp.experts.gate_up_proj", l) &&
         add(p, KIND_BIAS, E, 2 * inter, 0, "model.layers.%d.mlp.experts.gate_up_proj_bias", l) &&
         add(p, KIND_LINEAR, E, inter, hidden, "model.layers.%d.mlp.experts.down_proj", l) &&
         add(p, KIND_BIAS, E, hidden, 0, "model.layers.%d.mlp.experts.down_proj_bias", l);
}

/* GptOssConfig as transformers 5 writes it (keys sorted by the writer's caller). */
static cJSON *gpt_oss_config(const synth_spec *s, const family_variant *v) {
  cJSON *c = cJSON_CreateObject();
  cJSON_AddItemToArray(cJSON_AddArrayToObject(c, "architectures"), cJSON_CreateString(v->architecture));
  cJSON_AddStringToObject(c, "model_type", v->model_types[0]);
  cJSON_AddBoolToObject(c, "attention_bias", true);
  cJSON_AddNumberToObject(c, "attention_dropout", 0.0);
  cJSON_AddNumberToObject(c, "bos_token_id", 1);
  cJSON_AddNumberToObject(c, "eos_token_id", 2);
  cJSON_AddNumberToObject(c, "head_dim", synth_head_dim(s));
  cJSON_AddStringToObject(c, "hidden_act", "silu");
  cJSON_AddNumberToObject(c, "hidden_size", s->hidden_size);
  cJSON_AddNumberToObject(c, "initializer_range", 0.02);
  cJSON_AddNumberToObject(c, "intermediate_size", s->intermediate_size);
  cJSON *types = cJSON_AddArrayToObject(c, "layer_types");
  for (int l = 0; l < s->num_layers; l++)
    cJSON_AddItemToArray(types, cJSON_CreateString(l % 2 == 0 ? "sliding_attention" : "full_attention"));
  cJSON_AddNumberToObject(c, "max_position_embeddings", 131072);
  cJSON_AddNumberToObject(c, "num_attention_heads", s->num_heads);
  cJSON_AddNumberToObject(c, "num_experts_per_tok", top_k_of(s));
  cJSON_AddNumberToObject(c, "num_hidden_layers", s->num_layers);
  cJSON_AddNumberToObject(c, "num_key_value_heads", s->num_kv_heads);
  cJSON_AddNumberToObject(c, "num_local_experts", synth_experts(s));
  cJSON_AddBoolToObject(c, "output_router_logits", false);
  cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-5);
  cJSON *rope = cJSON_AddObjectToObject(c, "rope_parameters");
  cJSON_AddNumberToObject(rope, "beta_fast", 32.0);
  cJSON_AddNumberToObject(rope, "beta_slow", 1.0);
  cJSON_AddNumberToObject(rope, "factor", 32.0);
  cJSON_AddNumberToObject(rope, "original_max_position_embeddings", 4096);
  cJSON_AddNumberToObject(rope, "rope_theta", s->rope_theta > 0 ? s->rope_theta : 150000.0);
  cJSON_AddStringToObject(rope, "rope_type", "yarn");
  cJSON_AddBoolToObject(rope, "truncate", false);
  cJSON_AddNumberToObject(c, "router_aux_loss_coef", 0.9);
  cJSON_AddNumberToObject(c, "sliding_window", s->sliding_window ? s->sliding_window : 128);
  cJSON_AddNumberToObject(c, "swiglu_alpha", 1.702);
  cJSON_AddNumberToObject(c, "swiglu_limit", 7.0);
  cJSON_AddBoolToObject(c, "tie_word_embeddings", s->tie_word_embeddings);
  cJSON_AddStringToObject(c, "torch_dtype", synth_torch_dtype(s->dtype));
  cJSON_AddStringToObject(c, "transformers_version", "5.0.0");
  cJSON_AddBoolToObject(c, "use_cache", true);
  cJSON_AddNumberToObject(c, "vocab_size", s->vocab_size);
  return c;
}

int synth_gpt_oss(const synth_spec *s, const family_variant *v, const char *dir, rotq_error *err) {
  if (s->hidden_size < 1 || s->intermediate_size < 1 || s->num_layers < 1 || s->num_heads < 1 || s->num_kv_heads < 1 ||
      s->vocab_size < 1 || s->head_dim < 0 || s->num_heads % s->num_kv_heads != 0 || synth_head_dim(s) % 2 != 0 ||
      top_k_of(s) > synth_experts(s))
    return rotq_fail(err,
                     "synth: %s needs positive sizes, heads a multiple of kv heads, an even head_dim and "
                     "top-k within the experts",
                     v->architecture);
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) return rotq_fail(err, "%s: cannot create: %s", dir, strerror(errno));
  tensor_list *p = calloc(1, sizeof *p);
  synth_tensor *all = malloc(sizeof *all * ((size_t)s->num_layers * 17 + 3));
  cJSON *json = gpt_oss_config(s, v);
  int status = p && all && json ? 0 : rotq_fail(err, "%s: out of memory", dir);
  size_t count = 0;
  if (status == 0) {
    add(p, KIND_EMBEDDING, s->vocab_size, s->hidden_size, 0, "model.embed_tokens.weight", 0);
    all[count++] = p->items[0];
    for (int l = 0; l < s->num_layers; l++) {
      p->count = 0;
      layer_tensors(p, s, l);
      memcpy(all + count, p->items, p->count * sizeof *all);
      count += p->count;
    }
    p->count = 0;
    add(p, KIND_NORM, s->hidden_size, 0, 0, "model.norm.weight", 0);
    if (!s->tie_word_embeddings) add(p, KIND_LINEAR, s->vocab_size, s->hidden_size, 0, "lm_head.weight", 0);
    memcpy(all + count, p->items, p->count * sizeof *all);
    count += p->count;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    status = json_file_write(path, json, err);
  }
  if (status == 0) status = synth_write_tensors(s, all, count, dir, err);
  cJSON_Delete(json);
  free(p);
  free(all);
  return status;
}
