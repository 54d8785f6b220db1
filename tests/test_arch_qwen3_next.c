/* Qwen3-Next (Qwen3NextForCausalLM): three gated DeltaNet layers and one gated full-attention layer
 * (q_proj with the output gate's rows, q_norm/k_norm, partial RoPE, biases), dense MLPs on layers 0
 * and 2 and MoE blocks (softmax top-2 of 4, a shared expert with its sigmoid gate) on 1 and 3,
 * (1 + w) norms. The rotated checkpoint computes the original's function to 1e-12 (relative, float64)
 * in the three modes with the built-in config (R1 only). Caught: a DeltaNet reader, the router and
 * the shared expert's gate each rotated without the (1 + w) norm fused in; fusing w instead of 1 + w.
 * Refused with the reason: R2 on v_proj/o_proj (the output gate does not commute with it). The gated
 * delta rule's chunked form (the forward pass's, transformers' prefill) equals its token recurrence. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "rotq.h"
#include "support/arch_support.h"
#include "support/test_support.h"

static const synth_spec qwen3_next = {.architecture = "Qwen3NextForCausalLM",
                                      .hidden_size = 64,
                                      .intermediate_size = 96,
                                      .num_layers = 4,
                                      .num_heads = 4,
                                      .num_kv_heads = 2,
                                      .head_dim = 16,
                                      .vocab_size = 72,
                                      .dtype = DTYPE_F64,
                                      .seed = 33,
                                      .attention_bias = true,
                                      .num_experts = 4,
                                      .num_experts_per_tok = 2,
                                      .moe_intermediate_size = 40,
                                      .shared_expert_intermediate_size = 48,
                                      .decoder_sparse_step = 2};

static void qwen3_next_is_equivalent(void **state) {
  (void)state;
  char *scratch = scratch_dir("arch-qwen3-next");
  char original[4200];
  snprintf(original, sizeof original, "%s/qwen3-next", scratch);
  synth_or_fail(&qwen3_next, original);
  rotate_all_modes_and_check(scratch, original, "qwen3-next", "qwen3_next", 1e-12);
  scratch_remove(scratch);
  free(scratch);
}

/* tensor of the rotated checkpoint replaced by its rotation from a copy whose `norm` was edited to
 * scale·w + shift (same seed, so the same R1): the logits no longer match. */
static void wrong_fusion_is_caught(const char *norm, double scale, double shift, const char *tensor) {
  char *scratch = scratch_dir("arch-qwen3-next-wrong");
  char original[4200], edited[4200], config[4200], rotated[4200], rotated_edited[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(edited, sizeof edited, "%s/edited", scratch);
  snprintf(config, sizeof config, "%s/qwen3_next.yaml", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  snprintf(rotated_edited, sizeof rotated_edited, "%s/rotated-edited", scratch);
  synth_or_fail(&qwen3_next, original);
  copy_checkpoint(original, edited);
  edit_tensor(edited, norm, scale, shift);
  write_builtin_with_mode(config, "qwen3_next", "hadamard");
  rotate_or_fail(original, rotated, config, 7);
  rotate_or_fail(edited, rotated_edited, config, 7);
  check_equivalent_logits(original, rotated, 1e-12, "qwen3-next hadamard");
  replace_tensor_bytes(rotated, rotated_edited, tensor);
  logit_diff d = compare_checkpoints(original, rotated, 24);
  printf("  %s fused with %s edited: relative %.3g\n", tensor, norm, d.relative);
  assert_true(d.relative > 1e-4);
  scratch_remove(scratch);
  free(scratch);
}

/* (1 + w) → 1 (w = 0): the reader rotated without its norm fused. */
static void unfused_deltanet_reader_is_caught(void **state) {
  (void)state;
  wrong_fusion_is_caught("model.layers.0.input_layernorm.weight", 0, 0,
                         "model.layers.0.linear_attn.in_proj_qkvz.weight");
}

static void unfused_router_is_caught(void **state) {
  (void)state;
  wrong_fusion_is_caught("model.layers.1.post_attention_layernorm.weight", 0, 0, "model.layers.1.mlp.gate.weight");
}

static void unfused_shared_expert_gate_is_caught(void **state) {
  (void)state;
  wrong_fusion_is_caught("model.layers.3.post_attention_layernorm.weight", 0, 0,
                         "model.layers.3.mlp.shared_expert_gate.weight");
}

/* Fusing w instead of (1 + w) into the full-attention layer's q_proj: the edited copy's norm is
 * w − 1, so its (1 + w') is the original w. */
static void fusing_w_instead_of_one_plus_w_is_caught(void **state) {
  (void)state;
  wrong_fusion_is_caught("model.layers.3.input_layernorm.weight", 1, -1, "model.layers.3.self_attn.q_proj.weight");
}

/* The built-in config plus R2 on v_proj's output and o_proj's input is refused naming the output
 * gate; nothing is written. */
static void value_rotation_is_refused(void **state) {
  (void)state;
  static const char config[] = "rotation_matrices:\n"
                               "  r1: {dim: hidden_size, mode: hadamard, per_layer: false}\n"
                               "  r2: {dim: head_dim, mode: hadamard, per_layer: true}\n"
                               "rotation_config:\n"
                               "  \"*embed_tokens\": [r1, null]\n"
                               "  \"*lm_head\": [r1, null]\n"
                               "  \"*q_proj|*k_proj\": [r1, null]\n"
                               "  \"*v_proj\": [r1, r2]\n"
                               "  \"*o_proj\": [r2, r1]\n"
                               "  \"*in_proj_qkvz|*in_proj_ba\": [r1, null]\n"
                               "  \"*out_proj\": [null, r1]\n"
                               "  \"*mlp.gate|*mlp.shared_expert_gate\": [r1, null]\n"
                               "  \"*gate_proj|*up_proj\": [r1, null]\n"
                               "  \"*down_proj\": [null, r1]\n"
                               "use_float64: true\n";
  char *scratch = scratch_dir("arch-qwen3-next-r2");
  char original[4200], rotated[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  synth_or_fail(&qwen3_next, original);
  rotq_rotate_options options = rotq_rotate_default_options();
  options.model_dir = original, options.output_dir = rotated, options.config_text = config, options.seed = 7;
  rotq_error err = {{0}};
  assert_int_not_equal(rotq_rotate(&options, &err), 0);
  printf("  refused: %s\n", err.message);
  assert_non_null(strstr(err.message, "sigmoid(gate)"));
  assert_non_null(strstr(err.message, "admits no rotation of the value heads"));
  assert_int_not_equal(run_command("test -e '%s'", rotated), 0);
  scratch_remove(scratch);
  free(scratch);
}

/* The gated delta rule's chunked form (chunks of 64, transformers' prefill: what the forward pass
 * runs) and its token recurrence (chunks of 1) give the same logits over 150 tokens (three chunks,
 * the last partial), and so do chunks of 7; a deliberately wrong decay (A_log moved in one layer) is
 * far off, so the comparison can fail. */
static double logits_with_chunk(const char *dir, int chunk, int n, double *logits) {
  model_options options = {.delta_rule_chunk = chunk};
  model *m = NULL;
  rotq_error err = {{0}};
  if (model_load(dir, &options, &m, &err) != 0) fail_msg("%s", err.message);
  const int vocab = model_get_config(m)->vocab_size;
  int32_t *tokens = malloc(sizeof(int32_t) * (size_t)n);
  for (int i = 0; i < n; i++) tokens[i] = i == 0 ? 1 : (int32_t)((i * 7919L + 13) % vocab);
  if (model_forward(m, tokens, n, logits, &err) != 0) fail_msg("%s", err.message);
  double max = 0;
  for (size_t i = 0; i < (size_t)n * vocab; i++) max = fabs(logits[i]) > max ? fabs(logits[i]) : max;
  free(tokens);
  model_free(m);
  return max;
}

static double relative_difference(const double *a, const double *b, size_t count, double scale) {
  double max = 0;
  for (size_t i = 0; i < count; i++) max = fabs(a[i] - b[i]) > max ? fabs(a[i] - b[i]) : max;
  return max / scale;
}

static void delta_rule_forms_agree(void **state) {
  (void)state;
  char *scratch = scratch_dir("arch-qwen3-next-chunks");
  char original[4200], edited[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(edited, sizeof edited, "%s/edited", scratch);
  synth_or_fail(&qwen3_next, original);
  const int n = 150;
  const size_t count = (size_t)n * qwen3_next.vocab_size;
  double *chunked = malloc(sizeof(double) * count), *other = malloc(sizeof(double) * count);
  const double scale = logits_with_chunk(original, 0, n, chunked);
  logits_with_chunk(original, 1, n, other);
  double recurrent = relative_difference(chunked, other, count, scale);
  logits_with_chunk(original, 7, n, other);
  double seven = relative_difference(chunked, other, count, scale);
  copy_checkpoint(original, edited);
  edit_tensor(edited, "model.layers.2.linear_attn.A_log", 1, 0.5);
  logits_with_chunk(edited, 0, n, other);
  double wrong = relative_difference(chunked, other, count, scale);
  printf("  chunks of 64 vs the recurrence: relative %.3g; vs chunks of 7: %.3g; A_log moved: %.3g\n", recurrent, seven,
         wrong);
  assert_true(recurrent <= 1e-12);
  assert_true(seven <= 1e-12);
  assert_true(wrong > 1e-4);
  free(chunked);
  free(other);
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(qwen3_next_is_equivalent),
      cmocka_unit_test(unfused_deltanet_reader_is_caught),
      cmocka_unit_test(unfused_router_is_caught),
      cmocka_unit_test(unfused_shared_expert_gate_is_caught),
      cmocka_unit_test(fusing_w_instead_of_one_plus_w_is_caught),
      cmocka_unit_test(value_rotation_is_refused),
      cmocka_unit_test(delta_rule_forms_agree),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
