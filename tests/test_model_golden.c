/* The bundled stories260K model against HF transformers' reference outputs
 * (tests/data/stories260K_golden.json): greedy tokens, a logits probe, and perplexity. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json_file.h"
#include "model/model.h"
#include "eval/perplexity.h"
#include "eval/token_file.h"
#include "support/test_support.h"

static cJSON *golden;

static int setup(void **state) {
  rotq_error err;
  golden = json_file_read(source_path("tests/data/stories260K_golden.json"), &err);
  if (!golden) fprintf(stderr, "%s\n", err.message);
  return golden ? 0 : -1;
}

static int teardown(void **state) {
  cJSON_Delete(golden);
  return 0;
}

static model *load_bundled(bool f32) {
  rotq_error err;
  model *m = NULL;
  model_options options = {.f32 = f32};
  if (model_load(source_path("models/stories260K"), &options, &m, &err) != 0) fail_msg("%s", err.message);
  return m;
}

static int argmax(const double *row, int n) {
  int best = 0;
  for (int j = 1; j < n; j++)
    if (row[j] > row[best]) best = j;
  return best;
}

/* Greedy decoding from BOS reproduces HF's 120 tokens exactly. */
static void test_greedy_tokens(void **state) {
  const cJSON *expected = cJSON_GetObjectItem(golden, "tokens");
  int count = cJSON_GetArraySize(expected);
  assert_int_equal(count, 121);
  model *m = load_bundled(false);
  const int vocab = model_get_config(m)->vocab_size;
  rotq_error err;
  model_session *s = model_session_new(m, count, &err);
  assert_non_null(s);
  double *logits = malloc(sizeof(double) * vocab);
  int32_t token = 1;
  for (int i = 1; i < count; i++) {
    assert_int_equal(model_session_step(s, token, logits, &err), 0);
    token = argmax(logits, vocab);
    assert_int_equal(token, cJSON_GetArrayItem(expected, i)->valueint);
  }
  free(logits);
  model_session_free(s);
  model_free(m);
}

static void assert_relative(double actual, double expected, double tolerance) {
  if (fabs(actual - expected) > tolerance * fabs(expected))
    fail_msg("%.12g differs from %.12g by more than %g relative", actual, expected, tolerance);
}

/* The logits of the first 64 tokens of the evaluation file match HF's probe to 1e-6 relative. */
static void check_probe(bool f32, double tolerance) {
  const cJSON *probe = cJSON_GetObjectItem(golden, "logits_probe");
  const cJSON *probe_tokens = cJSON_GetObjectItem(probe, "tokens");
  int32_t *file_tokens = NULL;
  size_t file_count = 0;
  rotq_error err;
  assert_int_equal(token_file_read(source_path("data/tinystories_val.tok512.u16"), &file_tokens, &file_count, &err), 0);
  const int n = cJSON_GetArraySize(probe_tokens);
  assert_int_equal(n, 64);
  for (int i = 0; i < n; i++) assert_int_equal(file_tokens[i], cJSON_GetArrayItem(probe_tokens, i)->valueint);

  model *m = load_bundled(f32);
  const int vocab = model_get_config(m)->vocab_size;
  double *logits = malloc(sizeof(double) * n * vocab);
  assert_int_equal(model_forward(m, file_tokens, n, logits, &err), 0);
  double sum = 0, abs_sum = 0;
  for (int i = 0; i < n * vocab; i++) {
    sum += logits[i];
    abs_sum += fabs(logits[i]);
  }
  assert_relative(sum, cJSON_GetObjectItem(probe, "logits_sum")->valuedouble, tolerance);
  assert_relative(abs_sum, cJSON_GetObjectItem(probe, "logits_abs_sum")->valuedouble, tolerance);
  const double *last = logits + (size_t)(n - 1) * vocab;
  assert_relative(last[argmax(last, vocab)], cJSON_GetObjectItem(probe, "last_row_max")->valuedouble, tolerance);
  const cJSON *top5 = cJSON_GetObjectItem(probe, "last_row_top5");
  for (int k = 0; k < 5; k++) { /* the k-th largest: exactly k logits of the row are larger */
    int id = cJSON_GetArrayItem(top5, k)->valueint, larger = 0;
    for (int j = 0; j < vocab; j++) larger += last[j] > last[id];
    assert_int_equal(larger, k);
  }
  const cJSON *first = cJSON_GetObjectItem(probe, "logit_0_0_to_7");
  for (int j = 0; j < 8; j++) assert_relative(logits[j], cJSON_GetArrayItem(first, j)->valuedouble, tolerance);
  free(logits);
  free(file_tokens);
  model_free(m);
}

static void test_logits_probe_f64(void **state) { check_probe(false, 1e-6); }
static void test_logits_probe_f32(void **state) { check_probe(true, 1e-5); }

/* Perplexity over the whole evaluation file: HF's reference is NLL 1.4554, ppl 4.286 over
 * 308,837 predicted tokens (984 segments, first 512 tokens of each). */
static void test_perplexity(void **state) {
  int32_t *tokens = NULL;
  size_t count = 0;
  rotq_error err;
  assert_int_equal(token_file_read(source_path("data/tinystories_val.tok512.u16"), &tokens, &count, &err), 0);
  model *m = load_bundled(false);
  perplexity_result result;
  if (perplexity_eval(m, tokens, count, 512, 0, NULL, NULL, &result, &err) != 0) fail_msg("%s", err.message);
  printf("nll %.6f ppl %.6f tokens %zu segments %zu\n", result.nll, result.ppl, result.predicted, result.segments);
  assert_int_equal(result.predicted, 308837);
  assert_int_equal(result.segments, 984);
  assert_relative(result.ppl, 4.286, 0.003);
  free(tokens);
  model_free(m);
}

/* An out-of-vocabulary id is an error naming it, not a crash; the session is left unchanged. */
static void test_token_out_of_range(void **state) {
  model *m = load_bundled(false);
  rotq_error err;
  double logits[512];
  int32_t tokens[] = {1, 512};
  assert_int_equal(model_forward(m, tokens, 2, NULL, &err), -1);
  assert_non_null(strstr(err.message, "token id 512 at position 1"));
  model_session *s = model_session_new(m, 2, &err);
  assert_int_equal(model_session_step(s, -3, logits, &err), -1);
  assert_non_null(strstr(err.message, "token id -3"));
  assert_int_equal(model_session_length(s), 0);
  assert_int_equal(model_session_step(s, 1, logits, &err), 0);
  assert_int_equal(model_session_step(s, 2, logits, &err), 0);
  assert_int_equal(model_session_step(s, 3, logits, &err), -1); /* cache full */
  assert_non_null(strstr(err.message, "overflow"));
  model_session_free(s);
  model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_greedy_tokens),    cmocka_unit_test(test_logits_probe_f64),
      cmocka_unit_test(test_logits_probe_f32), cmocka_unit_test(test_token_out_of_range),
      cmocka_unit_test(test_perplexity),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
