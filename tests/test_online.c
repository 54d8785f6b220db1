/* Online rotations (R4 on down_proj, the o_proj heads rotation, R3 on Q/K): a checkpoint rotated
 * with them computes the original's function once model_load applies the activation halves that
 * rotation.json describes — relative logit difference < 1e-9 from a float64 checkpoint, < 1e-5
 * from a float32 one, argmax 100% — and a very different one without them. The export
 * (config.json's compressed-tensors transform_config, the stored online tensors, rotation.json's
 * "online" section) is checked against the matrices the hooks apply. */
#include <cjson/cJSON.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/json_file.h"
#include "model/model.h"
#include "model/online_hooks.h"
#include "synth/synth.h"
#include "model/transformer.h"
#include "rotate/online_processor.h"
#include "support/equivalence.h"
#include "support/test_support.h"

typedef struct online_case {
  const char *label;
  synth_spec spec;
} online_case;

static const online_case cases[] = {
    {"llama-gqa",
     {.architecture = "LlamaForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 172,
      .num_layers = 2,
      .num_heads = 8,
      .num_kv_heads = 4,
      .vocab_size = 96,
      .tie_word_embeddings = true,
      .seed = 1}},
    {"llama-6heads",
     {.architecture = "LlamaForCausalLM",
      .hidden_size = 96,
      .intermediate_size = 192,
      .num_layers = 2,
      .num_heads = 6,
      .num_kv_heads = 2,
      .vocab_size = 80,
      .llama3_rope_scaling = true,
      .seed = 2}},
    {"qwen2-bias",
     {.architecture = "Qwen2ForCausalLM",
      .hidden_size = 128,
      .intermediate_size = 320,
      .num_layers = 2,
      .num_heads = 8,
      .num_kv_heads = 2,
      .vocab_size = 64,
      .seed = 4}},
    {"qwen3-headdim",
     {.architecture = "Qwen3ForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 160,
      .num_layers = 2,
      .num_heads = 4,
      .num_kv_heads = 2,
      .head_dim = 32,
      .vocab_size = 64,
      .tie_word_embeddings = true,
      .seed = 5}},
};

static void write_synth(const synth_spec *spec, dtype t, const char *dir) {
  synth_spec s = *spec;
  s.dtype = t;
  rotq_error err = {{0}};
  if (synth_write(&s, dir, &err) < 0) fail_msg("%s", err.message);
}

/* rotq_rotate with online rotations on (config: every matrix random Hadamard, online: true). */
static void rotate_online(const char *scratch, const char *in, const char *out, const char *online_for) {
  char config[4200];
  snprintf(config, sizeof config, "%s/online.yaml", scratch);
  write_config_with_mode(config, "hadamard", true);
  rotq_rotate_options o = {.model_dir = in,
                           .output_dir = out,
                           .config = config,
                           .seed = 7,
                           .online = 1,
                           .online_for = online_for,
                           .verify = ROTQ_VERIFY_IN_STREAM};
  rotq_error err = {{0}};
  if (rotq_rotate(&o, &err) < 0) fail_msg("rotate %s: %s", in, err.message);
}

/* max|Δlogit| / max|logit| of a against b loaded with options_b (a with default options, but
 * f32 as in options_b). */
static double relative_difference(const char *a_dir, const char *b_dir, const model_options *options_b) {
  rotq_error err = {{0}};
  model_options options_a = {.f32 = options_b->f32};
  model *a = NULL, *b = NULL;
  if (model_load(a_dir, &options_a, &a, &err) < 0 || model_load(b_dir, options_b, &b, &err) < 0)
    fail_msg("%s", err.message);
  const int n = 16, vocab = model_get_config(a)->vocab_size;
  int32_t tokens[16];
  for (int i = 0; i < n; i++) tokens[i] = i == 0 ? 1 : (int32_t)((i * 7919L + 13) % vocab);
  double *la = malloc(sizeof(double) * n * vocab), *lb = malloc(sizeof(double) * n * vocab);
  if (model_forward(a, tokens, n, la, &err) < 0 || model_forward(b, tokens, n, lb, &err) < 0)
    fail_msg("%s", err.message);
  double diff = 0, scale = 0;
  for (int i = 0; i < n * vocab; i++) {
    diff = fmax(diff, fabs(la[i] - lb[i]));
    scale = fmax(scale, fabs(la[i]));
  }
  free(la), free(lb);
  model_free(a), model_free(b);
  return diff / scale;
}

static cJSON *read_json(const char *dir, const char *file) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  rotq_error err = {{0}};
  cJSON *json = json_file_read(path, &err);
  if (!json) fail_msg("%s", err.message);
  return json;
}

/* The rotation.json entry of the online rotation at site. */
static const cJSON *online_entry(const cJSON *record, const char *site) {
  const cJSON *r;
  cJSON_ArrayForEach(r, cJSON_GetObjectItem(cJSON_GetObjectItem(record, "online"), "rotations")) {
    if (strcmp(cJSON_GetObjectItem(r, "site")->valuestring, site) == 0) return r;
  }
  return NULL;
}

static bool target_matches(const cJSON *targets, const char *module) {
  const cJSON *t;
  cJSON_ArrayForEach(t, targets) {
    if (strncmp(t->valuestring, "re:", 3) != 0) {
      if (strcmp(t->valuestring, module) == 0) return true;
      continue;
    }
    regex_t re; /* anchored at the start, as Python's re.match that compressed-tensors and vLLM use */
    char anchored[1100];
    snprintf(anchored, sizeof anchored, "^(%s)", t->valuestring + 3);
    assert_int_equal(regcomp(&re, anchored, REG_EXTENDED | REG_NOSUB), 0);
    bool match = regexec(&re, module, 0, NULL, 0) == 0;
    regfree(&re);
    if (match) return true;
  }
  return false;
}

/* The first module of ck (a dotted prefix of a tensor name, e.g. "model.layers.0.self_attn")
 * matching a compressed-tensors target list ("re:<regex>" or names), into module. */
static bool first_target(const checkpoint *ck, const cJSON *targets, char *module, size_t cap) {
  for (size_t i = 0; i < ck->tensor_count; i++) {
    snprintf(module, cap, "%s", ck->tensors[i]->name);
    for (char *dot = strrchr(module, '.'); dot; dot = strrchr(module, '.')) {
      *dot = '\0';
      if (target_matches(targets, module)) return true;
    }
  }
  return false;
}

/* Row i of the matrix the stored tensor of entry must hold: √s·T, T the rotation the hooks
 * apply (one diagonal block of it for vLLM's R4, T ⊗ I_head_dim for the heads rotation). */
static void expected_row(const cJSON *entry, const rotation *r, int heads, int head_dim, int s, int i, double *row) {
  memset(row, 0, sizeof *row * (size_t)s);
  row[i] = sqrt((double)s);
  if (strcmp(cJSON_GetObjectItem(entry, "site")->valuestring, "o_proj_input") == 0)
    rotation_apply_cols_f64(r, row, (size_t)heads, (size_t)head_dim, (size_t)head_dim);
  else
    rotation_apply_rows_f64(r, row, 1, (size_t)s, (size_t)s);
}

/* config.json's quantization_config and the stored online tensors of a rotated checkpoint:
 * every group well-formed; for each online "input" (and q_attn) location, the tensor
 * "<module>.<group>_<location>.weight" of its first target exists with shape [s, s] (s = head_dim,
 * or the target's input size) and holds √s·T for the T the hooks apply. */
static void check_export(const char *dir) {
  cJSON *config = read_json(dir, "config.json"), *record = read_json(dir, "rotation.json");
  const cJSON *q = cJSON_GetObjectItem(config, "quantization_config");
  assert_non_null(q);
  assert_string_equal(cJSON_GetObjectItem(q, "quant_method")->valuestring, "compressed-tensors");
  assert_true(cJSON_IsString(cJSON_GetObjectItem(q, "version")));
  assert_true(cJSON_IsObject(cJSON_GetObjectItem(q, "sparsity_config")));
  const cJSON *groups = cJSON_GetObjectItem(cJSON_GetObjectItem(q, "transform_config"), "config_groups");
  assert_true(cJSON_IsObject(groups));
  checkpoint ck;
  rotq_error err = {{0}};
  if (checkpoint_open(dir, &ck, &err) < 0) fail_msg("%s", err.message);
  int tensors_checked = 0;
  const cJSON *g;
  cJSON_ArrayForEach(g, groups) {
    const char *type = cJSON_GetObjectItem(g, "type")->valuestring;
    assert_true(!strcmp(type, "hadamard") || !strcmp(type, "random-hadamard") || !strcmp(type, "random-matrix"));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(g, "randomize")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(g, "requires_grad")));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(g, "precision")));
    const cJSON *head_dim = cJSON_GetObjectItem(g, "head_dim");
    assert_true(cJSON_IsNull(head_dim) || cJSON_IsNumber(head_dim));
    const char *site = !strcmp(g->string, "R4")   ? "down_proj_input"
                       : !strcmp(g->string, "R3") ? "qk_after_rope"
                                                  : "o_proj_input";
    const cJSON *entry = online_entry(record, site);
    assert_non_null(entry);
    assert_string_equal(cJSON_GetObjectItem(entry, "transform_type")->valuestring, type);
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(g, "apply")) {
      const char *location = cJSON_GetObjectItem(a, "location")->valuestring;
      assert_true(cJSON_IsBool(cJSON_GetObjectItem(a, "inverse")));
      assert_true(cJSON_IsArray(cJSON_GetObjectItem(a, "ignore")));
      char module[512], tensor[600];
      bool is_attention = !strcmp(location, "q_attn") || !strcmp(location, "k_cache");
      assert_true(first_target(&ck, cJSON_GetObjectItem(a, "targets"), module, sizeof module));
      if (!strcmp(location, "weight_input")) {
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(a, "inverse")));
        continue;
      }
      if (!strcmp(location, "k_cache")) continue; /* shares the q_attn tensor */
      snprintf(tensor, sizeof tensor, "%s.%s_%s.weight", module, g->string, location);
      const st_tensor *t = checkpoint_find(&ck, tensor);
      const cJSON *named = cJSON_GetObjectItem(entry, "tensor");
      if (cJSON_IsNull(named)) { /* R3: no engine has a parameter to load it into; it cancels in q·kᵀ */
        assert_null(t);
        assert_true(is_attention);
        continue;
      }
      /* stored in the dtype the group's precision names */
      assert_int_equal(
          t->dtype, !strcmp(cJSON_GetObjectItem(g, "precision")->valuestring, "torch.float64") ? DTYPE_F64 : DTYPE_F32);
      if (!t) fail_msg("%s: tensor '%s' of transform group %s is missing", dir, tensor, g->string);
      assert_string_equal(named->valuestring, tensor);
      char weight[600];
      snprintf(weight, sizeof weight, "%s.weight", module);
      int s = cJSON_IsNumber(head_dim) ? head_dim->valueint
              : is_attention           ? 0
                                       : (int)checkpoint_find(&ck, weight)->shape[1];
      assert_int_equal(t->ndim, 2);
      assert_int_equal(t->shape[0], s);
      assert_int_equal(t->shape[1], s);
      /* its values: rows of √s·T, T rebuilt from rotation.json's recipe */
      online_recipe recipe;
      if (online_recipe_from_json(cJSON_GetObjectItem(entry, "recipe"), &recipe, "test", &err) < 0)
        fail_msg("%s", err.message);
      rotation *r = recipe.block_size ? rotation_create(recipe.block_size, recipe.mode, recipe.seed_n, 0, &err)
                                      : online_recipe_build(&recipe, &err);
      assert_non_null(r);
      double *row = malloc(sizeof(double) * (size_t)s), *stored = malloc(sizeof(double) * (size_t)s);
      double worst = 0;
      for (int k = 0; k < 8; k++) {
        int i = (int)((long)k * (s - 1) / 7);
        expected_row(entry, r, ck.config.num_attention_heads, ck.config.head_dim, s, i, row);
        dtype_to_f64(t->dtype, (const char *)t->data + (size_t)i * s * dtype_size(t->dtype), stored, (size_t)s);
        for (int j = 0; j < s; j++) {
          worst = fmax(worst, fabs(stored[j] - row[j]));
          if (strcmp(type, "random-matrix") != 0) assert_true(stored[j] == 1.0 || stored[j] == -1.0);
        }
      }
      double tolerance = t->dtype == DTYPE_F64 ? 1e-12 : 1e-5;
      if (!(worst < tolerance)) fail_msg("%s: '%s' differs from the hooks' matrix by %.3g", dir, tensor, worst);
      free(row), free(stored);
      rotation_free(r);
      tensors_checked++;
    }
  }
  printf("  export of %s: %d online tensors match the hooks' matrices\n", dir, tensors_checked);
  assert_true(tensors_checked >= 2);
  checkpoint_close(&ck);
  cJSON_Delete(config);
  cJSON_Delete(record);
}

/* Every entry of rotation.json's online section: its site, layers, recipe and tensor. */
static void check_record(const char *dir, int layers, int m, int n) {
  cJSON *record = read_json(dir, "rotation.json");
  const cJSON *down = online_entry(record, "down_proj_input");
  assert_non_null(down);
  assert_non_null(online_entry(record, "o_proj_input"));
  assert_non_null(online_entry(record, "qk_after_rope"));
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(down, "layers")), layers);
  const cJSON *orders = cJSON_GetObjectItem(cJSON_GetObjectItem(down, "recipe"), "kronecker");
  printf("  %s: R4 = R_%d ⊗ R_%d (%s)\n", dir, cJSON_GetArrayItem(orders, 0)->valueint,
         cJSON_GetArrayItem(orders, 1)->valueint, cJSON_GetObjectItem(down, "construction")->valuestring);
  assert_int_equal(cJSON_GetArrayItem(orders, 0)->valueint, m);
  assert_int_equal(cJSON_GetArrayItem(orders, 1)->valueint, n);
  cJSON_Delete(record);
}

static void synthetic_models_are_equivalent(void **state) {
  char *scratch = scratch_dir("online");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    for (int precision = 0; precision < 2; precision++) {
      char orig[4200], out[4200], label[128];
      snprintf(label, sizeof label, "%s-%s", cases[i].label, precision == 0 ? "f64" : "f32");
      snprintf(orig, sizeof orig, "%s/%s", scratch, label);
      snprintf(out, sizeof out, "%s/%s-online", scratch, label);
      write_synth(&cases[i].spec, precision == 0 ? DTYPE_F64 : DTYPE_F32, orig);
      rotate_online(scratch, orig, out, NULL);
      check_equivalent_logits(orig, out, precision == 0 ? 1e-9 : 1e-5, label);
      if (precision == 0) check_export(out);
    }
  scratch_remove(scratch);
  free(scratch);
}

/* R3 leaves the logits alone but not the KV cache: the cached keys with the hooks are each head
 * vector of the keys without them times R3 — different values, the same norms. */
static void check_r3_in_cache(const char *dir) {
  rotq_error err = {{0}};
  model_options off = {.no_online_hooks = true};
  model *with = NULL, *without = NULL;
  if (model_load(dir, NULL, &with, &err) < 0 || model_load(dir, &off, &without, &err) < 0) fail_msg("%s", err.message);
  const model_config *c = model_get_config(with);
  const int n = 8, head_dim = c->head_dim, kv_dim = c->num_key_value_heads * head_dim;
  int32_t tokens[8] = {1, 5, 9, 2, 7, 3, 11, 4};
  model_session *a = model_session_new(with, n, &err), *b = model_session_new(without, n, &err);
  double *logits = malloc(sizeof(double) * n * c->vocab_size);
  if (model_session_forward(a, tokens, n, logits, &err) < 0 || model_session_forward(b, tokens, n, logits, &err) < 0)
    fail_msg("%s", err.message);
  const double *ka = a->key_cache, *kb = b->key_cache; /* layer 0 [n, kv_dim]: same inputs in both */
  double differ = 0, norm_gap = 0;
  for (int v = 0; v < n * kv_dim / head_dim; v++) {
    double na = 0, nb = 0;
    for (int i = 0; i < head_dim; i++) {
      double x = ka[v * head_dim + i], y = kb[v * head_dim + i];
      differ = fmax(differ, fabs(x - y));
      na += x * x, nb += y * y;
    }
    norm_gap = fmax(norm_gap, fabs(sqrt(na) - sqrt(nb)) / sqrt(nb));
  }
  printf("  layer-0 keys with R3 vs without: max |Δ| %.3g, head-vector norms equal to %.3g\n", differ, norm_gap);
  assert_true(differ > 1e-3);
  assert_true(norm_gap < 1e-12);
  free(logits);
  model_session_free(a), model_session_free(b);
  model_free(with), model_free(without);
}

/* The same checkpoint without the hooks computes something else: the weight halves alone break
 * the model (also with float32 compute, where the hooks run in float). */
static void hooks_are_needed(void **state) {
  char *scratch = scratch_dir("online-nohooks");
  char orig[4200], out[4200];
  snprintf(orig, sizeof orig, "%s/orig", scratch);
  snprintf(out, sizeof out, "%s/online", scratch);
  write_synth(&cases[0].spec, DTYPE_F64, orig);
  rotate_online(scratch, orig, out, NULL);
  model_options with = {0}, without = {.no_online_hooks = true};
  double rel_with = relative_difference(orig, out, &with), rel_without = relative_difference(orig, out, &without);
  model_options f32_with = {.f32 = true};
  double rel_f32 = relative_difference(orig, out, &f32_with);
  printf("  with hooks: relative %.3g; float32 compute: %.3g; without hooks: %.3g\n", rel_with, rel_f32, rel_without);
  assert_true(rel_with < 1e-9);
  assert_true(rel_f32 < 1e-4);
  assert_true(rel_without > 1e-2);
  check_record(out, 2, 1, 172);
  check_r3_in_cache(out);
  scratch_remove(scratch);
  free(scratch);
}

static void bundled_model_is_equivalent(void **state) {
  char *scratch = scratch_dir("online-bundled");
  char out[4200], vllm[4200];
  snprintf(out, sizeof out, "%s/online", scratch);
  snprintf(vllm, sizeof vllm, "%s/vllm", scratch);
  const char *orig = source_path("models/stories260K");
  rotate_online(scratch, orig, out, NULL);
  check_equivalent_logits(orig, out, 1e-5, "stories260K online");
  check_record(out, 5, 1, 172); /* 172 = 4·43: no Hadamard of order 43 (or 86); H_172 itself */
  check_export(out);
  rotate_online(scratch, orig, vllm, "vllm");
  check_equivalent_logits(orig, vllm, 1e-5, "stories260K online vllm");
  check_record(vllm, 5, 1, 172);
  check_export(vllm);
  model_options without = {.no_online_hooks = true};
  printf("  stories260K without hooks: relative %.3g\n", relative_difference(orig, out, &without));
  assert_true(relative_difference(orig, out, &without) > 1e-2);
  scratch_remove(scratch);
  free(scratch);
}

/* intermediate 4864 = 64·76: R4 = R_64 ⊗ R_76 (a Paley II factor), stored as one 4864² tensor. */
static void kronecker_4864_is_equivalent(void **state) {
  char *scratch = scratch_dir("online-4864");
  char orig[4200], out[4200];
  snprintf(orig, sizeof orig, "%s/orig", scratch);
  snprintf(out, sizeof out, "%s/online", scratch);
  synth_spec spec = {.architecture = "LlamaForCausalLM",
                     .hidden_size = 64,
                     .intermediate_size = 4864,
                     .num_layers = 2,
                     .num_heads = 4,
                     .num_kv_heads = 2,
                     .vocab_size = 64,
                     .seed = 11};
  write_synth(&spec, DTYPE_F32, orig);
  rotate_online(scratch, orig, out, NULL);
  check_equivalent_logits(orig, out, 1e-5, "llama-4864-f32 online");
  check_record(out, 2, 64, 76);
  check_export(out);
  model_options without = {.no_online_hooks = true};
  double rel = relative_difference(orig, out, &without);
  printf("  llama-4864 without hooks: relative %.3g\n", rel);
  assert_true(rel > 1e-2);
  scratch_remove(scratch);
  free(scratch);
}

/* --online-for vllm: R4 = I ⊗ H_b (b = 32 for intermediate 160), R3 the Sylvester H_head_dim;
 * both of type "hadamard" with head_dim the block. A bias on o_proj is refused. */
static void vllm_form_is_equivalent(void **state) {
  char *scratch = scratch_dir("online-vllm");
  char orig[4200], out[4200];
  snprintf(orig, sizeof orig, "%s/orig", scratch);
  snprintf(out, sizeof out, "%s/vllm", scratch);
  write_synth(&cases[3].spec, DTYPE_F64, orig);
  rotate_online(scratch, orig, out, "vllm");
  check_equivalent_logits(orig, out, 1e-9, "qwen3-f64 online vllm");
  check_export(out);
  cJSON *config = read_json(out, "config.json");
  const cJSON *groups = cJSON_GetObjectItem(
      cJSON_GetObjectItem(cJSON_GetObjectItem(config, "quantization_config"), "transform_config"), "config_groups");
  const cJSON *r4 = cJSON_GetObjectItem(groups, "R4"), *r3 = cJSON_GetObjectItem(groups, "R3");
  assert_string_equal(cJSON_GetObjectItem(r4, "type")->valuestring, "hadamard");
  assert_int_equal(cJSON_GetObjectItem(r4, "head_dim")->valueint, 32);
  assert_string_equal(cJSON_GetObjectItem(r3, "type")->valuestring, "hadamard");
  assert_int_equal(cJSON_GetObjectItem(r3, "head_dim")->valueint, 32);
  cJSON_Delete(config);
  /* the stored block is Sylvester's H_32, (-1)^popcount(i & j): the matrix vLLM's kernel applies */
  checkpoint ck;
  rotq_error err = {{0}};
  if (checkpoint_open(out, &ck, &err) < 0) fail_msg("%s", err.message);
  const st_tensor *h = checkpoint_find(&ck, "model.layers.0.mlp.down_proj.R4_input.weight");
  assert_non_null(h);
  double *values = NULL;
  if (checkpoint_read_f64(&ck, h->name, 32 * 32, &values, &err) < 0) fail_msg("%s", err.message);
  for (int i = 0; i < 32; i++)
    for (int j = 0; j < 32; j++) assert_true(values[i * 32 + j] == (__builtin_popcount(i & j) % 2 ? -1.0 : 1.0));
  free(values);
  checkpoint_close(&ck);

  char biased[4200], refused[4200];
  snprintf(biased, sizeof biased, "%s/biased", scratch);
  snprintf(refused, sizeof refused, "%s/refused", scratch);
  synth_spec spec = cases[0].spec;
  spec.attention_bias = true;
  write_synth(&spec, DTYPE_F64, biased);
  char config_path[4200];
  snprintf(config_path, sizeof config_path, "%s/online.yaml", scratch);
  rotq_rotate_options o = {
      .model_dir = biased, .output_dir = refused, .config = config_path, .online = 1, .online_for = "vllm"};
  assert_int_equal(rotq_rotate(&o, &err), -1);
  printf("  refused: %s\n", err.message);
  assert_non_null(strstr(err.message, "bias"));
  o.online_for = NULL; /* rotq's own hooks handle the bias */
  assert_int_equal(rotq_rotate(&o, &err), 0);
  check_equivalent_logits(biased, refused, 1e-9, "llama-bias-f64 online");
  scratch_remove(scratch);
  free(scratch);
}

/* down_proj_online_layers: [1] puts R4 on layer 1 only; the transform targets it by a regex anchored
 * on "layers.1.mlp.down_proj" (not on the prefix, which loaders and engines rename). */
static void down_proj_layer_subset(void **state) {
  char *scratch = scratch_dir("online-subset");
  char orig[4200], out[4200], config[4200];
  snprintf(orig, sizeof orig, "%s/orig", scratch);
  snprintf(out, sizeof out, "%s/online", scratch);
  snprintf(config, sizeof config, "%s/subset.yaml", scratch);
  write_synth(&cases[2].spec, DTYPE_F64, orig);
  write_config_with_mode(config, "hadamard", true);
  FILE *f = fopen(config, "a");
  fputs("down_proj_online_layers: [1]\n", f);
  fclose(f);
  rotate_or_fail(orig, out, config, 3);
  check_equivalent_logits(orig, out, 1e-9, "qwen2-f64 R4 on layer 1");
  check_record(out, 1, 16, 20);
  check_export(out);
  cJSON *c = read_json(out, "config.json");
  const cJSON *r4 = cJSON_GetObjectItem(
      cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "quantization_config"), "transform_config"),
                          "config_groups"),
      "R4");
  const cJSON *targets = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(r4, "apply"), 0), "targets");
  assert_int_equal(cJSON_GetArraySize(targets), 1);
  assert_string_equal(cJSON_GetArrayItem(targets, 0)->valuestring, "re:(.*\\.)?layers\\.1\\.mlp\\.down_proj$");
  assert_true(target_matches(targets, "model.layers.1.mlp.down_proj"));
  assert_true(target_matches(targets, "language_model.model.layers.1.mlp.down_proj"));
  assert_true(target_matches(targets, "layers.1.mlp.down_proj"));
  assert_false(target_matches(targets, "model.layers.11.mlp.down_proj"));
  assert_false(target_matches(targets, "model.layers.0.mlp.down_proj"));
  assert_false(target_matches(targets, "model.sublayers.1.mlp.down_proj"));
  cJSON_Delete(c);
  scratch_remove(scratch);
  free(scratch);
}

/* msModelSlim's splits, and the fallback to one rotation when no near-square split exists. */
static void kronecker_split_rule(void **state) {
  const int cases_[][3] = {{12288, 96, 128}, {17408, 128, 136}, {25600, 160, 160}, {4864, 64, 76},
                           {172, 1, 172},    {11008, 64, 172},  {13696, 1, 13696}, {14336, 112, 128}};
  for (size_t i = 0; i < sizeof cases_ / sizeof cases_[0]; i++) {
    int m, n;
    online_kronecker_split(cases_[i][0], &m, &n);
    printf("  %5d = %d·%d\n", cases_[i][0], m, n);
    assert_int_equal(m, cases_[i][1]);
    assert_int_equal(n, cases_[i][2]);
  }
}

/* A malformed online section is an error naming the field, not a silently different model. */
static void malformed_record_is_refused(void **state) {
  char *scratch = scratch_dir("online-bad");
  char orig[4200], out[4200];
  snprintf(orig, sizeof orig, "%s/orig", scratch);
  snprintf(out, sizeof out, "%s/online", scratch);
  write_synth(&cases[0].spec, DTYPE_F64, orig);
  rotate_online(scratch, orig, out, NULL);
  assert_int_equal(run_command("sed -i 's/\"qk_after_rope\"/\"qk_before_rope\"/' '%s/rotation.json'", out), 0);
  model *m = NULL;
  rotq_error err = {{0}};
  assert_int_equal(model_load(out, NULL, &m, &err), -1);
  printf("  refused: %s\n", err.message);
  assert_non_null(strstr(err.message, "site"));
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(kronecker_split_rule),
      cmocka_unit_test(synthetic_models_are_equivalent),
      cmocka_unit_test(hooks_are_needed),
      cmocka_unit_test(bundled_model_is_equivalent),
      cmocka_unit_test(kronecker_4864_is_equivalent),
      cmocka_unit_test(vllm_form_is_equivalent),
      cmocka_unit_test(down_proj_layer_subset),
      cmocka_unit_test(malformed_record_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
