/* The forward pass on synthetic checkpoints of every supported architecture: written by
 * synth/synth.c, read back by the independent io/ reader. Incremental decoding must agree with the
 * full forward pass, float32 with float64, and each architecture's features must matter. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/json_file.h"
#include "model/model.h"
#include "model/rope.h"
#include "synth/synth.h"
#include "model/transformer.h"
#include "support/test_support.h"

#define N_TOKENS 19

static const synth_spec llama_gqa_tied = {.architecture = "LlamaForCausalLM",
                                          .hidden_size = 32,
                                          .intermediate_size = 44,
                                          .num_layers = 2,
                                          .num_heads = 4,
                                          .num_kv_heads = 2,
                                          .vocab_size = 61,
                                          .tie_word_embeddings = true,
                                          .dtype = DTYPE_F32,
                                          .seed = 1};
static const synth_spec llama_untied_biases = {.architecture = "LlamaForCausalLM",
                                               .hidden_size = 32,
                                               .intermediate_size = 40,
                                               .num_layers = 2,
                                               .num_heads = 4,
                                               .num_kv_heads = 4,
                                               .vocab_size = 50,
                                               .dtype = DTYPE_F64,
                                               .seed = 2,
                                               .attention_bias = true,
                                               .mlp_bias = true};
static const synth_spec llama3_scaled = {.architecture = "LlamaForCausalLM",
                                         .hidden_size = 64,
                                         .intermediate_size = 96,
                                         .num_layers = 2,
                                         .num_heads = 4,
                                         .num_kv_heads = 1,
                                         .vocab_size = 64,
                                         .tie_word_embeddings = true,
                                         .dtype = DTYPE_BF16,
                                         .seed = 3,
                                         .rope_theta = 500000,
                                         .llama3_rope_scaling = true};
static const synth_spec mistral = {.architecture = "MistralForCausalLM",
                                   .hidden_size = 32,
                                   .intermediate_size = 48,
                                   .num_layers = 2,
                                   .num_heads = 4,
                                   .num_kv_heads = 2,
                                   .vocab_size = 70,
                                   .dtype = DTYPE_F16,
                                   .seed = 4};
static const synth_spec qwen2 = {.architecture = "Qwen2ForCausalLM",
                                 .hidden_size = 48,
                                 .intermediate_size = 72,
                                 .num_layers = 2,
                                 .num_heads = 6,
                                 .num_kv_heads = 2,
                                 .vocab_size = 80,
                                 .tie_word_embeddings = true,
                                 .dtype = DTYPE_F32,
                                 .seed = 5,
                                 .rope_theta = 1000000,
                                 .max_shard_bytes = 40000};
static const synth_spec qwen3 = {.architecture = "Qwen3ForCausalLM",
                                 .hidden_size = 48,
                                 .intermediate_size = 64,
                                 .num_layers = 2,
                                 .num_heads = 4,
                                 .num_kv_heads = 2,
                                 .head_dim = 16,
                                 .vocab_size = 90,
                                 .tie_word_embeddings = true,
                                 .dtype = DTYPE_BF16,
                                 .seed = 6,
                                 .rope_theta = 1000000};

static char *write_synth(const synth_spec *spec) {
  char *dir = scratch_dir("model-archs");
  rotq_error err;
  if (synth_write(spec, dir, &err) != 0) fail_msg("%s", err.message);
  return dir;
}

static model *load(const char *dir, bool f32) {
  model *m = NULL;
  rotq_error err;
  model_options options = {.f32 = f32};
  if (model_load(dir, &options, &m, &err) != 0) fail_msg("%s", err.message);
  return m;
}

/* A fixed token sequence within the vocabulary, BOS first. */
static void test_tokens(int vocab, int32_t *tokens) {
  tokens[0] = 1;
  for (int i = 1; i < N_TOKENS; i++) tokens[i] = (int32_t)((i * 37 + 11) % vocab);
}

static double *full_logits(model *m) {
  int vocab = model_get_config(m)->vocab_size;
  int32_t tokens[N_TOKENS];
  test_tokens(vocab, tokens);
  double *logits = malloc(sizeof(double) * N_TOKENS * vocab);
  rotq_error err;
  if (model_forward(m, tokens, N_TOKENS, logits, &err) != 0) fail_msg("%s", err.message);
  return logits;
}

/* The same logits from a session: a prefill block of 5 tokens, then one token at a time. */
static double *session_logits(model *m) {
  int vocab = model_get_config(m)->vocab_size;
  int32_t tokens[N_TOKENS];
  test_tokens(vocab, tokens);
  double *logits = malloc(sizeof(double) * N_TOKENS * vocab);
  rotq_error err;
  model_session *s = model_session_new(m, N_TOKENS, &err);
  assert_non_null(s);
  assert_int_equal(model_session_forward(s, tokens, 5, logits, &err), 0);
  for (int i = 5; i < N_TOKENS; i++)
    assert_int_equal(model_session_step(s, tokens[i], logits + (size_t)i * vocab, &err), 0);
  assert_int_equal(model_session_length(s), N_TOKENS);
  model_session_free(s);
  return logits;
}

static double max_abs(const double *a, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
  return m;
}

/* max |a − b| / max |a| over n values. */
static double relative_diff(const double *a, const double *b, size_t n) {
  double d = 0;
  for (size_t i = 0; i < n; i++) d = fmax(d, fabs(a[i] - b[i]));
  return d / max_abs(a, n);
}

/* Session == full forward to 1e-10 in float64; float32 within 1e-5 of float64. */
static void check_architecture(const synth_spec *spec) {
  char *dir = write_synth(spec);
  model *m = load(dir, false);
  const size_t n = (size_t)N_TOKENS * spec->vocab_size;
  double *full = full_logits(m), *incremental = session_logits(m);
  assert_true(max_abs(full, n) > 0.5); /* not a degenerate model */
  double session_error = relative_diff(full, incremental, n);
  if (session_error > 1e-10) fail_msg("%s: session vs full forward: %g", spec->architecture, session_error);
  model *m32 = load(dir, true);
  double *full32 = full_logits(m32);
  double f32_error = relative_diff(full, full32, n);
  if (f32_error > 1e-5 || f32_error == 0) fail_msg("%s: float32 vs float64: %g", spec->architecture, f32_error);
  free(full);
  free(incremental);
  free(full32);
  model_free(m);
  model_free(m32);
  scratch_remove(dir);
  free(dir);
}

static void test_llama_gqa_tied(void **state) { check_architecture(&llama_gqa_tied); }
static void test_llama_untied_biases(void **state) { check_architecture(&llama_untied_biases); }
static void test_llama3_rope_scaling(void **state) { check_architecture(&llama3_scaled); }
static void test_mistral(void **state) { check_architecture(&mistral); }
static void test_qwen2_sharded(void **state) { check_architecture(&qwen2); }
static void test_qwen3_head_dim(void **state) { check_architecture(&qwen3); }

/* Replaces (or adds) a config.json field; value is consumed. */
static void edit_config(const char *dir, const char *key, cJSON *value) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  rotq_error err;
  cJSON *config = json_file_read(path, &err);
  assert_non_null(config);
  if (cJSON_GetObjectItem(config, key))
    cJSON_ReplaceItemInObject(config, key, value);
  else
    cJSON_AddItemToObject(config, key, value);
  assert_int_equal(unlink(path), 0);
  if (json_file_write(path, config, &err) != 0) fail_msg("%s", err.message);
  cJSON_Delete(config);
}

static void expect_load_error(const char *dir, const char *const *fragments) {
  model *m = NULL;
  rotq_error err;
  assert_int_equal(model_load(dir, NULL, &m, &err), -1);
  assert_null(m);
  for (; *fragments; fragments++)
    if (!strstr(err.message, *fragments)) fail_msg("error '%s' lacks '%s'", err.message, *fragments);
}

/* A tensor whose shape disagrees with config.json is named, with both shapes. */
static void test_misshaped_tensor(void **state) {
  char *dir = write_synth(&llama_gqa_tied);
  edit_config(dir, "intermediate_size", cJSON_CreateNumber(45));
  expect_load_error(
      dir, (const char *const[]){"model.layers.0.mlp.gate_proj.weight", "[44, 32]", "expected [45, 32]", NULL});
  scratch_remove(dir);
  free(dir);
}

static void test_unsupported_architecture(void **state) {
  char *dir = write_synth(&llama_gqa_tied);
  cJSON *architectures = cJSON_CreateArray();
  cJSON_AddItemToArray(architectures, cJSON_CreateString("GPT2LMHeadModel"));
  edit_config(dir, "architectures", architectures);
  expect_load_error(dir, (const char *const[]){"GPT2LMHeadModel", "not supported", "Qwen3ForCausalLM", NULL});
  scratch_remove(dir);
  free(dir);
}

/* lm_head.weight is used when present even if tie_word_embeddings is true; when absent and not
 * tied, loading fails. */
static void test_tied_embeddings(void **state) {
  char *untied = write_synth(&llama_untied_biases);
  model *m = load(untied, false);
  double *reference = full_logits(m);
  assert_ptr_not_equal(m->lm_head, m->embed);
  model_free(m);
  edit_config(untied, "tie_word_embeddings", cJSON_CreateTrue());
  m = load(untied, false);
  double *tied_flag = full_logits(m);
  const size_t n = (size_t)N_TOKENS * llama_untied_biases.vocab_size;
  assert_true(relative_diff(reference, tied_flag, n) == 0);
  model_free(m);

  char *tied = write_synth(&llama_gqa_tied);
  m = load(tied, false);
  assert_ptr_equal(m->lm_head, m->embed);
  model_free(m);
  edit_config(tied, "tie_word_embeddings", cJSON_CreateFalse());
  expect_load_error(tied, (const char *const[]){"lm_head.weight", "missing", NULL});
  free(reference);
  free(tied_flag);
  scratch_remove(untied);
  scratch_remove(tied);
  free(untied);
  free(tied);
}

/* Qwen2's q/k/v biases, Qwen3's q_norm/k_norm, Llama's o_proj and MLP biases all take part. */
static void test_features_matter(void **state) {
  struct {
    const synth_spec *spec;
    size_t offset; /* of the feature's pointer in layer_weights */
    size_t count;  /* its elements */
    double value;  /* set to */
  } cases[] = {
      {&qwen2, offsetof(layer_weights, bq), 48, 0}, /* heads·head_dim = 6·8 */
      {&qwen2, offsetof(layer_weights, bk), 16, 0}, /* kv_heads·head_dim = 2·8 */
      {&qwen2, offsetof(layer_weights, bv), 16, 0},
      {&qwen3, offsetof(layer_weights, q_norm), 16, 1}, /* head_dim */
      {&qwen3, offsetof(layer_weights, k_norm), 16, 1},
      {&llama_untied_biases, offsetof(layer_weights, bo), 32, 0},     /* hidden */
      {&llama_untied_biases, offsetof(layer_weights, b_gate), 40, 0}, /* intermediate */
      {&llama_untied_biases, offsetof(layer_weights, b_down), 32, 0},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    char *dir = write_synth(cases[c].spec);
    model *m = load(dir, false);
    double *reference = full_logits(m);
    double *weight = *(void **)((char *)&m->layers[0] + cases[c].offset);
    if (!weight) fail_msg("%s: case %zu: weight not loaded", cases[c].spec->architecture, c);
    for (size_t i = 0; i < cases[c].count; i++) weight[i] = cases[c].value;
    double *changed = full_logits(m);
    assert_true(relative_diff(reference, changed, (size_t)N_TOKENS * m->config.vocab_size) > 1e-3);
    free(reference);
    free(changed);
    model_free(m);
    scratch_remove(dir);
    free(dir);
  }
}

/* Mistral's sliding_window: positions before the window fills see what full attention sees;
 * later ones differ; the session agrees with the full pass. */
static void test_sliding_window(void **state) {
  char *dir = write_synth(&mistral);
  model *m = load(dir, false);
  double *unlimited = full_logits(m);
  model_free(m);
  const int window = 4, vocab = mistral.vocab_size;
  edit_config(dir, "sliding_window", cJSON_CreateNumber(window));
  m = load(dir, false);
  double *windowed = full_logits(m), *incremental = session_logits(m);
  assert_true(relative_diff(unlimited, windowed, (size_t)window * vocab) == 0);
  assert_true(relative_diff(unlimited + window * vocab, windowed + window * vocab, vocab) > 1e-3);
  assert_true(relative_diff(windowed, incremental, (size_t)N_TOKENS * vocab) < 1e-10);
  free(unlimited);
  free(windowed);
  free(incremental);
  model_free(m);
  scratch_remove(dir);
  free(dir);
}

/* rope_inv_freq against transformers' formulas evaluated independently (Python, float64):
 * theta 500000, head_dim 16, llama3 scaling factor 32, low 1, high 4, original 8192 — one
 * frequency of each kind (kept, smoothed, divided). */
static void test_rope_llama3_frequencies(void **state) {
  model_config c = {.head_dim = 16, .rope_theta = 500000, .path = "config.json"};
  c.rope = (rope_scaling){.type = "llama3",
                          .factor = 32,
                          .low_freq_factor = 1,
                          .high_freq_factor = 4,
                          .original_max_position_embeddings = 8192};
  const double expected[8] = {1.0,
                              0.19392274474868576,
                              0.03760603093086393,
                              0.0072926647372171085,
                              0.00042955679655936815,
                              8.570255489881478e-06,
                              1.661967467795309e-06,
                              3.2229329303788936e-07};
  double inv_freq[8];
  rotq_error err;
  assert_int_equal(rope_inv_freq(&c, inv_freq, &err), 0);
  for (int i = 0; i < 8; i++) assert_true(fabs(inv_freq[i] - expected[i]) <= 1e-14 * expected[i]);
  strcpy(c.rope.type, "linear");
  c.rope.factor = 4;
  assert_int_equal(rope_inv_freq(&c, inv_freq, &err), 0);
  assert_true(fabs(inv_freq[1] - pow(500000, -2.0 / 16) / 4) < 1e-15);
  strcpy(c.rope.type, "yarn");
  assert_int_equal(rope_inv_freq(&c, inv_freq, &err), -1);
  assert_non_null(strstr(err.message, "yarn"));
}

/* synth output read back by io/: config fields, tensor names and dtypes, norm weights that are not
 * ones, nonzero biases; the same seed gives the same bytes, another seed different ones. */
static void test_synth_round_trip(void **state) {
  char *dir = write_synth(&qwen3);
  checkpoint ck;
  rotq_error err;
  if (checkpoint_open(dir, &ck, &err) != 0) fail_msg("%s", err.message);
  assert_string_equal(ck.config.architecture, "Qwen3ForCausalLM");
  assert_string_equal(ck.config.model_type, "qwen3");
  assert_int_equal(ck.config.head_dim, 16);
  assert_int_equal(ck.config.num_key_value_heads, 2);
  assert_true(ck.config.tie_word_embeddings);
  assert_int_equal(ck.tensor_count, 1 + 2 * 11 + 1);
  assert_null(checkpoint_find(&ck, "lm_head.weight"));
  const st_tensor *q_norm = checkpoint_find(&ck, "model.layers.1.self_attn.q_norm.weight");
  assert_non_null(q_norm);
  assert_int_equal(q_norm->dtype, DTYPE_BF16);
  double *values = NULL;
  assert_int_equal(checkpoint_read_f64(&ck, "model.layers.1.self_attn.q_norm.weight", 16, &values, &err), 0);
  double spread = 0;
  for (int i = 0; i < 16; i++) spread = fmax(spread, fabs(values[i] - 1));
  assert_true(spread > 0.05 && spread < 1.5);
  free(values);
  checkpoint_close(&ck);

  char *biased = write_synth(&qwen2);
  if (checkpoint_open(biased, &ck, &err) != 0) fail_msg("%s", err.message);
  assert_true(ck.shard_count > 1);
  assert_int_equal(checkpoint_read_f64(&ck, "model.layers.0.self_attn.k_proj.bias", 16, &values, &err), 0);
  assert_true(max_abs(values, 16) > 0.01);
  free(values);
  checkpoint_close(&ck);

  char *again = write_synth(&qwen3);
  synth_spec other_seed = qwen3;
  other_seed.seed = 7;
  char *other = write_synth(&other_seed);
  assert_int_equal(run_command("cmp -s '%s/model.safetensors' '%s/model.safetensors'", dir, again), 0);
  assert_int_equal(run_command("cmp -s '%s/model.safetensors' '%s/model.safetensors'", dir, other), 1);
  char *paths[] = {dir, biased, again, other};
  for (int i = 0; i < 4; i++) {
    scratch_remove(paths[i]);
    free(paths[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_llama_gqa_tied),      cmocka_unit_test(test_llama_untied_biases),
      cmocka_unit_test(test_llama3_rope_scaling), cmocka_unit_test(test_mistral),
      cmocka_unit_test(test_qwen2_sharded),       cmocka_unit_test(test_qwen3_head_dim),
      cmocka_unit_test(test_misshaped_tensor),    cmocka_unit_test(test_unsupported_architecture),
      cmocka_unit_test(test_tied_embeddings),     cmocka_unit_test(test_features_matter),
      cmocka_unit_test(test_sliding_window),      cmocka_unit_test(test_rope_llama3_frequencies),
      cmocka_unit_test(test_synth_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
