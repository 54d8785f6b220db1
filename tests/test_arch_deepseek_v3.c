/* DeepSeek-V3 (DeepseekV3ForCausalLM): multi-head latent attention (q_a_proj → q_a_layernorm →
 * q_b_proj, kv_a_proj_with_mqa → kv_a_layernorm → kv_b_proj plus the shared interleaved-RoPE key,
 * biases on q_a_proj / kv_a_proj_with_mqa / o_proj), a dense first layer, then MoE layers with
 * DeepSeek-V3 routing and shared experts. R1 only (the deepseek_v3 config): the rotated checkpoint
 * computes the original's function to 1e-12 (relative, float64) in the three modes;
 * kv_a_proj_with_mqa or the router rotated without the input / post-attention norm fused in is
 * caught by the same check. A config for q/k/v layouts (qwen_moe) is refused, naming deepseek_v3. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/arch_support.h"
#include "support/test_support.h"

static const synth_spec deepseek_v3 = {.architecture = "DeepseekV3ForCausalLM",
                                       .hidden_size = 64,
                                       .intermediate_size = 96,
                                       .num_layers = 3,
                                       .num_heads = 4,
                                       .num_kv_heads = 4,
                                       .head_dim = 16,
                                       .vocab_size = 72,
                                       .attention_bias = true,
                                       .dtype = DTYPE_F64,
                                       .seed = 19,
                                       .num_experts = 8,
                                       .num_experts_per_tok = 2,
                                       .moe_intermediate_size = 40};

static void deepseek_v3_is_equivalent(void **state) {
  (void)state;
  char *scratch = scratch_dir("arch-deepseek-v3");
  char original[4200];
  snprintf(original, sizeof original, "%s/deepseek-v3", scratch);
  synth_or_fail(&deepseek_v3, original);
  rotate_all_modes_and_check(scratch, original, "deepseek-v3", "deepseek_v3", 1e-12);
  scratch_remove(scratch);
  free(scratch);
}

/* tensor of the rotated checkpoint replaced by its rotation without norm fused (from a copy whose
 * norm is all ones, same seed so the same R1): the logits no longer match. */
static void unfused_tensor_is_caught(const char *norm, const char *tensor) {
  char *scratch = scratch_dir("arch-deepseek-v3-wrong");
  char original[4200], unnormed[4200], config[4200], rotated[4200], rotated_unnormed[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(unnormed, sizeof unnormed, "%s/unnormed", scratch);
  snprintf(config, sizeof config, "%s/deepseek_v3.yaml", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  snprintf(rotated_unnormed, sizeof rotated_unnormed, "%s/rotated-unnormed", scratch);
  synth_or_fail(&deepseek_v3, original);
  copy_checkpoint(original, unnormed);
  edit_tensor(unnormed, norm, 0, 1);
  write_builtin_with_mode(config, "deepseek_v3", "hadamard");
  rotate_or_fail(original, rotated, config, 7);
  rotate_or_fail(unnormed, rotated_unnormed, config, 7);
  check_equivalent_logits(original, rotated, 1e-12, "deepseek-v3 hadamard");
  replace_tensor_bytes(rotated, rotated_unnormed, tensor);
  logit_diff d = compare_checkpoints(original, rotated, 24);
  printf("  %s without %s fused: relative %.3g\n", tensor, norm, d.relative);
  assert_true(d.relative > 1e-4);
  scratch_remove(scratch);
  free(scratch);
}

static void unfused_kv_a_proj_is_caught(void **state) {
  (void)state;
  unfused_tensor_is_caught("model.layers.1.input_layernorm.weight",
                           "model.layers.1.self_attn.kv_a_proj_with_mqa.weight");
}

static void unfused_router_is_caught(void **state) {
  (void)state;
  unfused_tensor_is_caught("model.layers.2.post_attention_layernorm.weight", "model.layers.2.mlp.gate.weight");
}

/* The qwen_moe config (R2 on v_proj/o_proj, q/k/v fused) does not fit MLA: refused, naming it. */
static void r2_config_is_refused(void **state) {
  (void)state;
  char *scratch = scratch_dir("arch-deepseek-v3-r2");
  char original[4200], out[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(out, sizeof out, "%s/out", scratch);
  synth_or_fail(&deepseek_v3, original);
  rotq_rotate_options o = {.model_dir = original, .output_dir = out, .config = "qwen_moe"};
  rotq_error err = {{0}};
  assert_int_equal(rotq_rotate(&o, &err), -1);
  printf("  %s\n", err.message);
  assert_non_null(strstr(err.message, "--config deepseek_v3"));
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(deepseek_v3_is_equivalent),
      cmocka_unit_test(unfused_kv_a_proj_is_caught),
      cmocka_unit_test(unfused_router_is_caught),
      cmocka_unit_test(r2_config_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
