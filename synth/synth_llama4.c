/* Synthetic Llama-4 text checkpoints (Llama4ForCausalLM, model_type llama4_text) in the layout
 * transformers 5's save_pretrained writes: attention q/k/v/o_proj; the odd layers (interleave step 2)
 * MoE blocks: feed_forward.router.weight [E, hidden], the fused experts
 * feed_forward.experts.gate_up_proj [E, hidden, 2·inter] and down_proj [E, inter, hidden]
 * (inter: moe_intermediate_size, else intermediate_size) and the shared expert
 * feed_forward.shared_expert.gate/up/down_proj; the even layers a dense MLP feed_forward.*_proj of
 * intermediate_size_mlp (the spec's intermediate_size). config.json: every second layer NoPE
 * (no_rope_layers), the RoPE layers chunked (attention_chunk_size: the spec's sliding_window, else 8),
 * use_qk_norm, temperature tuning with floor_scale 4 (so that short tests exercise it). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/json_file.h"
#include "synth/synth_internal.h"

static int top_k_of(const synth_spec *s) { return s->num_experts_per_tok ? s->num_experts_per_tok : 1; }
static int expert_inter(const synth_spec *s) {
  return s->moe_intermediate_size ? s->moe_intermediate_size : s->intermediate_size;
}
static bool moe_layer(int l) { return l % 2 == 1; }

/* Appends printf(fmt, layer) of shape [d0, d1, d2] (trailing zeros drop dimensions). */
static void add(synth_tensor *all, size_t *count, weight_kind kind, int64_t d0, int64_t d1, int64_t d2, const char *fmt,
                int layer) {
  synth_tensor *t = &all[(*count)++];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, fmt, layer);
  t->kind = kind;
  t->shape[0] = d0, t->shape[1] = d1, t->shape[2] = d2;
  t->ndim = d2 ? 3 : d1 ? 2 : 1;
}

static void layer_tensors(synth_tensor *all, size_t *n, const synth_spec *s, int l) {
  const int64_t H = s->hidden_size, I = expert_inter(s), E = synth_experts(s);
  const int64_t q_dim = (int64_t)s->num_heads * synth_head_dim(s),
                kv_dim = (int64_t)s->num_kv_heads * synth_head_dim(s);
  add(all, n, KIND_NORM, H, 0, 0, "model.layers.%d.input_layernorm.weight", l);
  add(all, n, KIND_LINEAR, q_dim, H, 0, "model.layers.%d.self_attn.q_proj.weight", l);
  add(all, n, KIND_LINEAR, kv_dim, H, 0, "model.layers.%d.self_attn.k_proj.weight", l);
  add(all, n, KIND_LINEAR, kv_dim, H, 0, "model.layers.%d.self_attn.v_proj.weight", l);
  add(all, n, KIND_LINEAR, H, q_dim, 0, "model.layers.%d.self_attn.o_proj.weight", l);
  add(all, n, KIND_NORM, H, 0, 0, "model.layers.%d.post_attention_layernorm.weight", l);
  if (!moe_layer(l)) {
    add(all, n, KIND_LINEAR, s->intermediate_size, H, 0, "model.layers.%d.feed_forward.gate_proj.weight", l);
    add(all, n, KIND_LINEAR, s->intermediate_size, H, 0, "model.layers.%d.feed_forward.up_proj.weight", l);
    add(all, n, KIND_LINEAR, H, s->intermediate_size, 0, "model.layers.%d.feed_forward.down_proj.weight", l);
    return;
  }
  add(all, n, KIND_LINEAR, E, H, 0, "model.layers.%d.feed_forward.router.weight", l);
  add(all, n, KIND_LINEAR, E, H, 2 * I, "model.layers.%d.feed_forward.experts.gate_up_proj", l);
  add(all, n, KIND_LINEAR, E, I, H, "model.layers.%d.feed_forward.experts.down_proj", l);
  add(all, n, KIND_LINEAR, I, H, 0, "model.layers.%d.feed_forward.shared_expert.gate_proj.weight", l);
  add(all, n, KIND_LINEAR, I, H, 0, "model.layers.%d.feed_forward.shared_expert.up_proj.weight", l);
  add(all, n, KIND_LINEAR, H, I, 0, "model.layers.%d.feed_forward.shared_expert.down_proj.weight", l);
}

static cJSON *llama4_config(const synth_spec *s, const family_variant *v) {
  cJSON *c = cJSON_CreateObject();
  cJSON_AddItemToArray(cJSON_AddArrayToObject(c, "architectures"), cJSON_CreateString(v->architecture));
  cJSON_AddBoolToObject(c, "attention_bias", false);
  cJSON_AddNumberToObject(c, "attention_chunk_size", s->sliding_window ? s->sliding_window : 8);
  cJSON_AddNumberToObject(c, "attention_dropout", 0.0);
  cJSON_AddNumberToObject(c, "attn_scale", 0.1);
  cJSON_AddBoolToObject(c, "attn_temperature_tuning", true);
  cJSON_AddNumberToObject(c, "bos_token_id", 1);
  cJSON_AddNumberToObject(c, "eos_token_id", 2);
  cJSON_AddNumberToObject(c, "floor_scale", 4);
  cJSON_AddNumberToObject(c, "head_dim", synth_head_dim(s));
  cJSON_AddStringToObject(c, "hidden_act", "silu");
  cJSON_AddNumberToObject(c, "hidden_size", s->hidden_size);
  cJSON_AddNumberToObject(c, "initializer_range", 0.02);
  cJSON_AddNumberToObject(c, "interleave_moe_layer_step", 2);
  cJSON_AddNumberToObject(c, "intermediate_size", expert_inter(s));
  cJSON_AddNumberToObject(c, "intermediate_size_mlp", s->intermediate_size);
  cJSON *types = cJSON_AddArrayToObject(c, "layer_types"), *moe = cJSON_AddArrayToObject(c, "moe_layers");
  cJSON *nope = cJSON_AddArrayToObject(c, "no_rope_layers");
  for (int l = 0; l < s->num_layers; l++) {
    const bool rope = (l + 1) % 2 != 0;
    cJSON_AddItemToArray(types, cJSON_CreateString(rope ? "chunked_attention" : "full_attention"));
    cJSON_AddItemToArray(nope, cJSON_CreateNumber(rope ? 1 : 0));
    if (moe_layer(l)) cJSON_AddItemToArray(moe, cJSON_CreateNumber(l));
  }
  cJSON_AddNumberToObject(c, "max_position_embeddings", 131072);
  cJSON_AddStringToObject(c, "model_type", v->model_types[0]);
  cJSON_AddNumberToObject(c, "no_rope_layer_interval", 2);
  cJSON_AddNumberToObject(c, "num_attention_heads", s->num_heads);
  cJSON_AddNumberToObject(c, "num_experts_per_tok", top_k_of(s));
  cJSON_AddNumberToObject(c, "num_hidden_layers", s->num_layers);
  cJSON_AddNumberToObject(c, "num_key_value_heads", s->num_kv_heads);
  cJSON_AddNumberToObject(c, "num_local_experts", synth_experts(s));
  cJSON_AddBoolToObject(c, "output_router_logits", false);
  cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-5);
  cJSON *rope = cJSON_AddObjectToObject(c, "rope_parameters");
  cJSON_AddNumberToObject(rope, "rope_theta", s->rope_theta > 0 ? s->rope_theta : 500000.0);
  cJSON_AddStringToObject(rope, "rope_type", "default");
  cJSON_AddNumberToObject(c, "router_aux_loss_coef", 0.001);
  cJSON_AddNumberToObject(c, "router_jitter_noise", 0.0);
  cJSON_AddBoolToObject(c, "tie_word_embeddings", s->tie_word_embeddings);
  cJSON_AddStringToObject(c, "torch_dtype", synth_torch_dtype(s->dtype));
  cJSON_AddStringToObject(c, "transformers_version", "5.0.0");
  cJSON_AddBoolToObject(c, "use_cache", true);
  cJSON_AddBoolToObject(c, "use_qk_norm", true);
  cJSON_AddNumberToObject(c, "vocab_size", s->vocab_size);
  return c;
}

int synth_llama4(const synth_spec *s, const family_variant *v, const char *dir, rotq_error *err) {
  if (s->hidden_size < 1 || s->intermediate_size < 1 || s->num_layers < 1 || s->num_heads < 1 || s->num_kv_heads < 1 ||
      s->vocab_size < 1 || s->head_dim < 0 || s->num_heads % s->num_kv_heads != 0 || synth_head_dim(s) % 2 != 0 ||
      top_k_of(s) > synth_experts(s))
    return rotq_fail(err,
                     "synth: %s needs positive sizes, heads a multiple of kv heads, an even head_dim and "
                     "top-k within the experts",
                     v->architecture);
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) return rotq_fail(err, "%s: cannot create: %s", dir, strerror(errno));
  synth_tensor *all = malloc(sizeof *all * ((size_t)s->num_layers * 12 + 3));
  cJSON *json = llama4_config(s, v);
  int status = all && json ? 0 : rotq_fail(err, "%s: out of memory", dir);
  size_t count = 0;
  if (status == 0) {
    add(all, &count, KIND_EMBEDDING, s->vocab_size, s->hidden_size, 0, "model.embed_tokens.weight", 0);
    for (int l = 0; l < s->num_layers; l++) layer_tensors(all, &count, s, l);
    add(all, &count, KIND_NORM, s->hidden_size, 0, 0, "model.norm.weight", 0);
    if (!s->tie_word_embeddings) add(all, &count, KIND_LINEAR, s->vocab_size, s->hidden_size, 0, "lm_head.weight", 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    status = json_file_write(path, json, err);
  }
  if (status == 0) status = synth_write_tensors(s, all, count, dir, err);
  cJSON_Delete(json);
  free(all);
  return status;
}
