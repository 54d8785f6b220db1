/* Fake quantization of a whole model: bits 16 reproduce the full-precision forward pass exactly,
 * activation and KV quantization act, GPTQ beats RTN on its calibration data, the settings are
 * checked, and on a synthetic model with planted massive activations the statistics show the
 * outliers and a rotation removes them and the activation-quantization damage they cause. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/activation_stats.h"
#include "eval/perplexity.h"
#include "eval/quantize_model.h"
#include "synth/synth.h"
#include "eval/token_file.h"
#include "rotq.h"
#include "support/test_support.h"

static int32_t *tokens;
static size_t token_count;

static int setup(void **state) {
  rotq_error err;
  return token_file_read(source_path("data/tinystories_val.tok512.u16"), &tokens, &token_count, &err);
}

static int teardown(void **state) {
  free(tokens);
  return 0;
}

static model *load(const char *dir, bool f32, const activation_quant *quant) {
  rotq_error err;
  model *m = NULL;
  model_options options = {.f32 = f32};
  if (quant) options.quant = *quant;
  if (model_load(dir, &options, &m, &err) != 0) fail_msg("%s", err.message);
  return m;
}

/* Mean KL per token from reference over the first `segments` segments of ctx tokens. */
static perplexity_result measure(model *m, model *reference, size_t first, size_t segments, int ctx) {
  rotq_error err;
  perplexity_result r;
  const perplexity_options o = {.ctx = ctx, .first_segment = first, .max_segments = segments, .reference = reference};
  if (perplexity_measure(m, tokens, token_count, &o, &r, &err) != 0) fail_msg("%s", err.message);
  return r;
}

/* Bits 16 everywhere (weights by RTN and by GPTQ, activations, KV) give bitwise the logits of
 * the unquantized model, in float64 and float32. */
static void test_bits_16_is_exact(void **state) {
  for (int f32 = 0; f32 <= 1; f32++) {
    model *plain = load(source_path("models/stories260K"), f32, NULL);
    const activation_quant off = {.abits = 16, .a_clip = 0.9, .kvbits = 16, .kv_clip = 0.95};
    model *quantized = load(source_path("models/stories260K"), f32, &off);
    rotq_error err;
    const weight_quant rtn16 = {.bits = 16},
                       gptq16 = {.bits = 16, .method = WEIGHT_GPTQ, .group = 128, .act_order = true};
    assert_int_equal(model_quantize_weights(quantized, &rtn16, NULL, NULL, NULL, &err), 0);
    assert_int_equal(model_quantize_weights(quantized, &gptq16, NULL, NULL, NULL, &err), 0);
    const int n = 96, vocab = model_get_config(plain)->vocab_size;
    double *a = malloc(sizeof(double) * n * vocab), *b = malloc(sizeof(double) * n * vocab);
    assert_int_equal(model_forward(plain, tokens, n, a, &err), 0);
    assert_int_equal(model_forward(quantized, tokens, n, b, &err), 0);
    assert_memory_equal(a, b, sizeof(double) * n * vocab);
    free(a);
    free(b);
    model_free(plain);
    model_free(quantized);
  }
}

/* Fewer bits, more damage; 8 bits is close; KV quantization adds to activation quantization. */
static void test_activation_and_kv_quantization(void **state) {
  model *reference = load(source_path("models/stories260K"), false, NULL);
  double kl[4];
  const activation_quant settings[4] = {
      {.abits = 8}, {.abits = 4}, {.abits = 4, .kvbits = 4}, {.abits = 4, .kvbits = 4, .kv_group = 4}};
  for (int i = 0; i < 4; i++) {
    model *m = load(source_path("models/stories260K"), false, &settings[i]);
    kl[i] = measure(m, reference, 0, 4, 128).kl;
    model_free(m);
  }
  assert_true(kl[0] > 0 && kl[0] < 0.02);
  assert_true(kl[1] > 5 * kl[0]);
  assert_true(kl[2] > kl[1]);
  assert_true(kl[3] != kl[2]); /* groups of 4 within each head of 8 */
  model_free(reference);
}

/* Activation groups (int, a_group): a group as long as any input is one scale per token, bit for
 * bit; groups of 4 lose less than one scale per token; a negative group is refused. */
static void test_activation_groups(void **state) {
  model *reference = load(source_path("models/stories260K"), false, NULL);
  const activation_quant token = {.abits = 4}, whole = {.abits = 4, .a_group = 1 << 20},
                         g4 = {.abits = 4, .a_group = 4};
  model *a = load(source_path("models/stories260K"), false, &token);
  model *b = load(source_path("models/stories260K"), false, &whole);
  rotq_error err;
  const int n = 64, vocab = model_get_config(a)->vocab_size;
  double *la = malloc(sizeof(double) * n * vocab), *lb = malloc(sizeof(double) * n * vocab);
  assert_int_equal(model_forward(a, tokens, n, la, &err), 0);
  assert_int_equal(model_forward(b, tokens, n, lb, &err), 0);
  assert_memory_equal(la, lb, sizeof(double) * n * vocab);
  free(la);
  free(lb);
  model *c = load(source_path("models/stories260K"), false, &g4);
  const double kl_token = measure(a, reference, 0, 4, 128).kl, kl_g4 = measure(c, reference, 0, 4, 128).kl;
  printf("  A4 per token KL %.4g, groups of 4 KL %.4g\n", kl_token, kl_g4);
  assert_true(kl_g4 > 0 && kl_g4 < 0.5 * kl_token);
  const activation_quant bad = {.abits = 4, .a_group = -1};
  assert_int_equal(model_set_activation_quant(c, &bad, &err), -1);
  assert_non_null(strstr(err.message, "activation group"));
  model_free(a);
  model_free(b);
  model_free(c);
  model_free(reference);
}

/* The settings are checked where they are given. */
static void test_settings_are_checked(void **state) {
  model *m = load(source_path("models/stories260K"), false, NULL);
  rotq_error err;
  const activation_quant bad_bits = {.abits = 9}, bad_clip = {.abits = 4, .a_clip = 1.5},
                         bad_group = {.kvbits = 4, .kv_group = 3};
  assert_int_equal(model_set_activation_quant(m, &bad_bits, &err), -1);
  assert_non_null(strstr(err.message, "2..8"));
  assert_int_equal(model_set_activation_quant(m, &bad_clip, &err), -1);
  assert_non_null(strstr(err.message, "clip"));
  assert_int_equal(model_set_activation_quant(m, &bad_group, &err), -1);
  assert_non_null(strstr(err.message, "head_dim 8"));
  const weight_quant bad_weight = {.bits = 1}, gptq = {.bits = 4, .method = WEIGHT_GPTQ};
  assert_int_equal(model_quantize_weights(m, &bad_weight, NULL, NULL, NULL, &err), -1);
  assert_int_equal(model_quantize_weights(m, &gptq, NULL, NULL, NULL, &err), -1);
  assert_non_null(strstr(err.message, "calibration"));
  model_free(m);
  model *refused = NULL;
  model_options options = {.quant = bad_group};
  assert_int_equal(model_load(source_path("models/stories260K"), &options, &refused, &err), -1);
  assert_null(refused);
}

static int layers_done;
static void count_layers(int done, int layers, void *user) { layers_done = done; }

/* GPTQ's weights damage the model less than RTN's on the calibration segments, in both compute
 * types; calibration leaves the activation settings as they were. */
static void test_gptq_beats_rtn_on_calibration_data(void **state) {
  rotq_error err;
  token_segment *segments = NULL;
  size_t segment_count = 0;
  assert_int_equal(token_segments(tokens, token_count, &segments, &segment_count, &err), 0);
  const calibration_set calibration = {tokens, segments, 8, 128};
  for (int f32 = 0; f32 <= 1; f32++) {
    model *reference = load(source_path("models/stories260K"), f32, NULL);
    const activation_quant a8 = {.abits = 8};
    model *rtn = load(source_path("models/stories260K"), f32, &a8),
          *gptq = load(source_path("models/stories260K"), f32, &a8);
    const weight_quant w_rtn = {.bits = 4}, w_gptq = {.bits = 4, .method = WEIGHT_GPTQ};
    assert_int_equal(model_quantize_weights(rtn, &w_rtn, NULL, NULL, NULL, &err), 0);
    layers_done = 0;
    assert_int_equal(model_quantize_weights(gptq, &w_gptq, &calibration, count_layers, NULL, &err), 0);
    assert_int_equal(layers_done, 5);
    double kl_rtn = measure(rtn, reference, 0, 8, 128).kl, kl_gptq = measure(gptq, reference, 0, 8, 128).kl;
    if (!(kl_gptq < 0.8 * kl_rtn)) fail_msg("GPTQ KL %g is not well below RTN's %g", kl_gptq, kl_rtn);
    model_free(reference);
    model_free(rtn);
    model_free(gptq);
  }
  free(segments);
}

/* A model with a massive activation planted in one residual channel (28× the others, in a feature
 * subspace of rank 8): the statistics show it at the q/k/v input (largest/median channel 9.1,
 * kurtosis 79; rotated 1.6 and 1.5), R1R2 spreads it, and with it 4-bit activations do far less
 * damage (KL 11× less). */
static void test_outliers_and_rotation(void **state) {
  char *dir = scratch_dir("quant-outliers");
  char original[4200], rotated[4200];
  snprintf(original, sizeof original, "%s/original", dir);
  snprintf(rotated, sizeof rotated, "%s/rotated", dir);
  const synth_spec spec = {.architecture = "LlamaForCausalLM",
                           .hidden_size = 128,
                           .intermediate_size = 256,
                           .num_layers = 2,
                           .num_heads = 4,
                           .num_kv_heads = 4,
                           .vocab_size = 512,
                           .dtype = DTYPE_F32,
                           .seed = 1,
                           .outlier_channels = 1,
                           .outlier_scale = 28,
                           .feature_rank = 8};
  rotq_error err;
  if (synth_write(&spec, original, &err) != 0) fail_msg("%s", err.message);
  const rotq_rotate_options o = {
      .model_dir = original, .output_dir = rotated, .verify = ROTQ_VERIFY_IN_STREAM, .quiet = 1};
  if (rotq_rotate(&o, &err) != 0) fail_msg("%s", err.message);

  model *a = load(original, false, NULL), *b = load(rotated, false, NULL);
  activation_stats sa, sb;
  assert_int_equal(activation_stats_measure(a, tokens, token_count, 128, 4, &sa, &err), 0);
  assert_int_equal(activation_stats_measure(b, tokens, token_count, 128, 4, &sb, &err), 0);
  const input_stats *qkv_a = activation_stats_at(&sa, 0, 0), *qkv_b = activation_stats_at(&sb, 0, 0);
  double ratio_a = max_median_ratio(qkv_a->channel_max, qkv_a->dim),
         ratio_b = max_median_ratio(qkv_b->channel_max, qkv_b->dim);
  if (!(ratio_a > 5 && ratio_b < 3)) fail_msg("largest/median channel: %g original, %g rotated", ratio_a, ratio_b);
  assert_true(qkv_a->kurtosis > 20 && qkv_b->kurtosis < 4);
  activation_stats_free(&sa);
  activation_stats_free(&sb);

  const activation_quant a4 = {.abits = 4};
  assert_int_equal(model_set_activation_quant(a, &a4, &err), 0);
  assert_int_equal(model_set_activation_quant(b, &a4, &err), 0);
  model *reference = load(original, false, NULL);
  double kl_a = measure(a, reference, 0, 4, 128).kl, kl_b = measure(b, reference, 0, 4, 128).kl;
  if (!(kl_b < 0.2 * kl_a)) fail_msg("W16A4 KL: %g original, %g rotated", kl_a, kl_b);
  model_free(a);
  model_free(b);
  model_free(reference);
  scratch_remove(dir);
  free(dir);
}

/* A logit scale multiplies lm_head, so every logit exactly (float64), and nothing else; it needs
 * an untied lm_head. */
static void test_logit_scale(void **state) {
  char *dir = scratch_dir("quant-logit-scale");
  char plain_dir[4200], scaled_dir[4200];
  snprintf(plain_dir, sizeof plain_dir, "%s/plain", dir);
  snprintf(scaled_dir, sizeof scaled_dir, "%s/scaled", dir);
  synth_spec spec = {.architecture = "LlamaForCausalLM",
                     .hidden_size = 64,
                     .intermediate_size = 128,
                     .num_layers = 2,
                     .num_heads = 4,
                     .num_kv_heads = 2,
                     .vocab_size = 512,
                     .dtype = DTYPE_F64,
                     .seed = 3,
                     .outlier_channels = 4};
  rotq_error err;
  if (synth_write(&spec, plain_dir, &err) != 0) fail_msg("%s", err.message);
  spec.logit_scale = 4;
  if (synth_write(&spec, scaled_dir, &err) != 0) fail_msg("%s", err.message);
  model *plain = load(plain_dir, false, NULL), *scaled = load(scaled_dir, false, NULL);
  enum { N = 16, VOCAB = 512 };
  double *a = malloc(sizeof(double) * N * VOCAB), *b = malloc(sizeof(double) * N * VOCAB);
  assert_int_equal(model_forward(plain, tokens, N, a, &err), 0);
  assert_int_equal(model_forward(scaled, tokens, N, b, &err), 0);
  for (int i = 0; i < N * VOCAB; i++) assert_true(fabs(b[i] - 4 * a[i]) <= 1e-12 * (1 + fabs(b[i])));
  free(a);
  free(b);
  model_free(plain);
  model_free(scaled);
  spec.tie_word_embeddings = true;
  snprintf(scaled_dir, sizeof scaled_dir, "%s/tied", dir);
  assert_int_equal(synth_write(&spec, scaled_dir, &err), -1);
  assert_non_null(strstr(err.message, "untied lm_head"));
  scratch_remove(dir);
  free(dir);
}

/* The evaluation range and the KL of a model against itself. */
static void test_measure_range_and_self_kl(void **state) {
  model *m = load(source_path("models/stories260K"), false, NULL);
  perplexity_result all = measure(m, m, 0, 3, 64), later = measure(m, NULL, 2, 1, 64);
  assert_true(all.kl == 0 && all.segments == 3 && later.segments == 1);
  assert_true(later.nll != all.nll);
  rotq_error err;
  perplexity_result r;
  const perplexity_options past_end = {.ctx = 64, .first_segment = 1u << 30};
  assert_int_equal(perplexity_measure(m, tokens, token_count, &past_end, &r, &err), -1);
  model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bits_16_is_exact),
      cmocka_unit_test(test_activation_and_kv_quantization),
      cmocka_unit_test(test_activation_groups),
      cmocka_unit_test(test_settings_are_checked),
      cmocka_unit_test(test_gptq_beats_rtn_on_calibration_data),
      cmocka_unit_test(test_outliers_and_rotation),
      cmocka_unit_test(test_logit_scale),
      cmocka_unit_test(test_measure_range_and_self_kl),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
