/* GLM-4.5 / GLM-4.6 MoE (Glm4MoeForCausalLM): a dense first layer, then MoE layers with DeepSeek-V3
 * routing (sigmoid scores + e_score_correction_bias, 4 groups of 2 with the best 2 kept, top-2,
 * routed_scaling_factor) and an ungated shared expert; q/k/v biases, q_norm/k_norm, RoPE on half of
 * each head. The rotated checkpoint computes the original's function to 1e-12 (relative, float64)
 * in the three modes; the router and the shared expert each rotated without the post-attention norm
 * fused in (the rest exact) are caught by the same check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/arch_support.h"
#include "support/test_support.h"

static const synth_spec glm4_moe = {.architecture = "Glm4MoeForCausalLM",
                                    .hidden_size = 64,
                                    .intermediate_size = 96,
                                    .num_layers = 3,
                                    .num_heads = 4,
                                    .num_kv_heads = 2,
                                    .head_dim = 16,
                                    .vocab_size = 72,
                                    .dtype = DTYPE_F64,
                                    .seed = 18,
                                    .num_experts = 8,
                                    .num_experts_per_tok = 2,
                                    .moe_intermediate_size = 40};

static void glm4_moe_is_equivalent(void **state) {
  (void)state;
  char *scratch = scratch_dir("arch-glm4-moe");
  char original[4200];
  snprintf(original, sizeof original, "%s/glm4-moe", scratch);
  synth_or_fail(&glm4_moe, original);
  rotate_all_modes_and_check(scratch, original, "glm4-moe", "qwen_moe", 1e-12);
  scratch_remove(scratch);
  free(scratch);
}

/* tensor of the rotated checkpoint replaced by its rotation without the post-attention norm fused
 * (from a copy whose norm is all ones, same seed so the same R1): the logits no longer match. */
static void unfused_tensor_is_caught(const char *tensor) {
  char *scratch = scratch_dir("arch-glm4-moe-wrong");
  char original[4200], unnormed[4200], config[4200], rotated[4200], rotated_unnormed[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(unnormed, sizeof unnormed, "%s/unnormed", scratch);
  snprintf(config, sizeof config, "%s/qwen_moe.yaml", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  snprintf(rotated_unnormed, sizeof rotated_unnormed, "%s/rotated-unnormed", scratch);
  synth_or_fail(&glm4_moe, original);
  copy_checkpoint(original, unnormed);
  edit_tensor(unnormed, "model.layers.1.post_attention_layernorm.weight", 0, 1);
  write_builtin_with_mode(config, "qwen_moe", "hadamard");
  rotate_or_fail(original, rotated, config, 7);
  rotate_or_fail(unnormed, rotated_unnormed, config, 7);
  check_equivalent_logits(original, rotated, 1e-12, "glm4-moe hadamard");
  replace_tensor_bytes(rotated, rotated_unnormed, tensor);
  logit_diff d = compare_checkpoints(original, rotated, 24);
  printf("  %s without the norm fused: relative %.3g\n", tensor, d.relative);
  assert_true(d.relative > 1e-4);
  scratch_remove(scratch);
  free(scratch);
}

static void unfused_router_is_caught(void **state) {
  (void)state;
  unfused_tensor_is_caught("model.layers.1.mlp.gate.weight");
}

static void unfused_shared_expert_is_caught(void **state) {
  (void)state;
  unfused_tensor_is_caught("model.layers.1.mlp.shared_experts.up_proj.weight");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(glm4_moe_is_equivalent),
      cmocka_unit_test(unfused_router_is_caught),
      cmocka_unit_test(unfused_shared_expert_is_caught),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
