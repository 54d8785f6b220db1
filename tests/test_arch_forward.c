/* The forward pass of the families beyond LLaMA: decoding token by token through the KV cache
 * gives the full pass's logits (sliding windows, Gemma-3's local RoPE and OPT's positions at
 * positions > 0), and the family features change the logits (so none is a silent no-op). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json_file.h"
#include "model/model.h"
#include "support/arch_support.h"
#include "support/test_support.h"

#define N_TOKENS 20

static const synth_spec specs[] = {
    {.architecture = "MixtralForCausalLM",
     .hidden_size = 32,
     .intermediate_size = 48,
     .num_layers = 2,
     .num_heads = 4,
     .num_kv_heads = 2,
     .vocab_size = 40,
     .dtype = DTYPE_F64,
     .seed = 61},
    {.architecture = "Qwen2MoeForCausalLM",
     .hidden_size = 32,
     .intermediate_size = 48,
     .num_layers = 2,
     .num_heads = 4,
     .num_kv_heads = 2,
     .vocab_size = 40,
     .dtype = DTYPE_F64,
     .seed = 62,
     .moe_intermediate_size = 24},
    {.architecture = "Phi3ForCausalLM",
     .hidden_size = 32,
     .intermediate_size = 48,
     .num_layers = 2,
     .num_heads = 4,
     .num_kv_heads = 2,
     .vocab_size = 40,
     .dtype = DTYPE_F64,
     .seed = 63},
    {.architecture = "GemmaForCausalLM",
     .hidden_size = 32,
     .intermediate_size = 48,
     .num_layers = 2,
     .num_heads = 2,
     .num_kv_heads = 1,
     .head_dim = 16,
     .vocab_size = 40,
     .tie_word_embeddings = true,
     .dtype = DTYPE_F64,
     .seed = 64},
    {.architecture = "Gemma2ForCausalLM",
     .hidden_size = 32,
     .intermediate_size = 48,
     .num_layers = 2,
     .num_heads = 2,
     .num_kv_heads = 1,
     .head_dim = 16,
     .vocab_size = 40,
     .tie_word_embeddings = true,
     .dtype = DTYPE_F64,
     .seed = 65,
     .sliding_window = 6},
    {.architecture = "Gemma3ForCausalLM",
     .hidden_size = 32,
     .intermediate_size = 48,
     .num_layers = 3,
     .num_heads = 2,
     .num_kv_heads = 1,
     .head_dim = 16,
     .vocab_size = 40,
     .tie_word_embeddings = true,
     .dtype = DTYPE_F64,
     .seed = 66,
     .sliding_window = 6,
     .sliding_window_pattern = 3},
    {.architecture = "OPTForCausalLM",
     .hidden_size = 32,
     .intermediate_size = 64,
     .num_layers = 2,
     .num_heads = 4,
     .num_kv_heads = 4,
     .vocab_size = 40,
     .tie_word_embeddings = true,
     .dtype = DTYPE_F64,
     .seed = 67},
};

static void tokens_of(int vocab, int32_t *tokens) {
  for (int i = 0; i < N_TOKENS; i++) tokens[i] = i == 0 ? 1 : (int32_t)((i * 13 + 7) % vocab);
}

static double *full_logits(const char *dir) {
  rotq_error err = {{0}};
  model *m = NULL;
  if (model_load(dir, NULL, &m, &err) < 0) fail_msg("%s", err.message);
  int vocab = model_get_config(m)->vocab_size;
  int32_t tokens[N_TOKENS];
  tokens_of(vocab, tokens);
  double *logits = malloc(sizeof(double) * N_TOKENS * vocab);
  if (model_forward(m, tokens, N_TOKENS, logits, &err) < 0) fail_msg("%s", err.message);
  model_free(m);
  return logits;
}

/* A prefill of 5 tokens, then one at a time. */
static double *session_logits(const char *dir) {
  rotq_error err = {{0}};
  model *m = NULL;
  if (model_load(dir, NULL, &m, &err) < 0) fail_msg("%s", err.message);
  int vocab = model_get_config(m)->vocab_size;
  int32_t tokens[N_TOKENS];
  tokens_of(vocab, tokens);
  double *logits = malloc(sizeof(double) * N_TOKENS * vocab);
  model_session *s = model_session_new(m, N_TOKENS, &err);
  if (!s || model_session_forward(s, tokens, 5, logits, &err) < 0) fail_msg("%s", err.message);
  for (int i = 5; i < N_TOKENS; i++)
    if (model_session_step(s, tokens[i], logits + (size_t)i * vocab, &err) < 0) fail_msg("%s", err.message);
  model_session_free(s);
  model_free(m);
  return logits;
}

static double max_diff(const double *a, const double *b, size_t first, size_t count) {
  double d = 0;
  for (size_t i = first; i < first + count; i++) d = fmax(d, fabs(a[i] - b[i]));
  return d;
}

static void sessions_match_full_pass(void **state) {
  char *scratch = scratch_dir("arch-forward");
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%zu", scratch, i);
    synth_or_fail(&specs[i], dir);
    double *full = full_logits(dir), *step = session_logits(dir);
    double d = max_diff(full, step, 0, (size_t)N_TOKENS * specs[i].vocab_size);
    printf("  %-22s session vs full: max|Δ| %.3g\n", specs[i].architecture, d);
    assert_true(d < 1e-12);
    free(full);
    free(step);
  }
  scratch_remove(scratch);
  free(scratch);
}

/* Sets config.json's key to value (a number, or null when value < 0) in dir. */
static void set_config_number(const char *dir, const char *key, double value) {
  char path[4200];
  snprintf(path, sizeof path, "%s/config.json", dir);
  rotq_error err = {{0}};
  cJSON *json = json_file_read(path, &err);
  assert_non_null(json);
  cJSON_DeleteItemFromObject(json, key);
  if (value < 0)
    cJSON_AddNullToObject(json, key);
  else
    cJSON_AddNumberToObject(json, key, value);
  assert_int_equal(unlink(path), 0);
  assert_int_equal(json_file_write(path, json, &err), 0);
  cJSON_Delete(json);
}

/* Gemma-2's window: positions before it see everything either way, later ones differ; its
 * soft-capping bounds the logits by the cap and changes them. */
static void gemma2_features_matter(void **state) {
  char *scratch = scratch_dir("arch-forward-gemma2");
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/gemma2", scratch);
  synth_or_fail(&specs[4], dir);
  const size_t vocab = (size_t)specs[4].vocab_size;
  double *windowed = full_logits(dir);
  set_config_number(dir, "sliding_window", 4096);
  double *full = full_logits(dir);
  double early = max_diff(windowed, full, 0, 6 * vocab),
         late = max_diff(windowed, full, 6 * vocab, (N_TOKENS - 6) * vocab);
  printf("  window 6 vs 4096: positions < 6 max|Δ| %.3g, later %.3g\n", early, late);
  assert_true(early < 1e-12 && late > 1e-6);
  set_config_number(dir, "final_logit_softcapping", 0.5);
  double *capped = full_logits(dir);
  for (size_t i = 0; i < N_TOKENS * vocab; i++) assert_true(fabs(capped[i]) < 0.5);
  set_config_number(dir, "attn_logit_softcapping", -1);
  set_config_number(dir, "final_logit_softcapping", -1);
  double *uncapped = full_logits(dir);
  printf("  soft-capping off vs on: max|Δ| %.3g\n", max_diff(full, uncapped, 0, N_TOKENS * vocab));
  assert_true(max_diff(full, uncapped, 0, N_TOKENS * vocab) > 1e-9);
  free(windowed), free(full), free(capped), free(uncapped);
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(sessions_match_full_pass),
      cmocka_unit_test(gemma2_features_matter),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
