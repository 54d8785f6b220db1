/* Mixture-of-experts families (Mixtral, Qwen2-MoE with a shared expert and a dense layer,
 * Qwen3-MoE with q_norm/k_norm): the rotated checkpoint computes the original's function. The
 * post-attention norm is fused into the router, every expert and the shared expert, which all
 * take R1 on the input; every expert's down projection takes R1 on the output. Skipping the norm
 * fusion of a single expert is caught by the same check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/arch_support.h"
#include "support/test_support.h"

static const synth_spec mixtral = {.architecture = "MixtralForCausalLM",
                                   .hidden_size = 64,
                                   .intermediate_size = 96,
                                   .num_layers = 2,
                                   .num_heads = 4,
                                   .num_kv_heads = 2,
                                   .vocab_size = 64,
                                   .dtype = DTYPE_F64,
                                   .seed = 11,
                                   .rope_theta = 1e6,
                                   .num_experts = 4,
                                   .num_experts_per_tok = 2};
static const synth_spec qwen2_moe = {.architecture = "Qwen2MoeForCausalLM",
                                     .hidden_size = 64,
                                     .intermediate_size = 80,
                                     .num_layers = 3,
                                     .num_heads = 4,
                                     .num_kv_heads = 2,
                                     .vocab_size = 72,
                                     .tie_word_embeddings = true,
                                     .dtype = DTYPE_F64,
                                     .seed = 12,
                                     .num_experts = 5,
                                     .num_experts_per_tok = 2,
                                     .moe_intermediate_size = 48,
                                     .shared_expert_intermediate_size = 96,
                                     .decoder_sparse_step = 2};
static const synth_spec qwen3_moe = {.architecture = "Qwen3MoeForCausalLM",
                                     .hidden_size = 64,
                                     .intermediate_size = 96,
                                     .num_layers = 2,
                                     .num_heads = 4,
                                     .num_kv_heads = 2,
                                     .head_dim = 32,
                                     .vocab_size = 64,
                                     .dtype = DTYPE_F64,
                                     .seed = 13,
                                     .num_experts = 6,
                                     .num_experts_per_tok = 3,
                                     .moe_intermediate_size = 40,
                                     .norm_topk_prob = true};

static void mixtral_is_equivalent(void **state) { check_family_equivalent(&mixtral, "mixtral", "mixtral"); }
static void qwen2_moe_is_equivalent(void **state) { check_family_equivalent(&qwen2_moe, "qwen2-moe", "qwen_moe"); }
static void qwen3_moe_is_equivalent(void **state) { check_family_equivalent(&qwen3_moe, "qwen3-moe", "qwen_moe"); }

/* One expert's w1 rotated but without the post-attention norm fused in (taken from the rotation of
 * a copy whose norm is all ones, same seed so the same R1): the logits no longer match. */
static void skipped_expert_fusion_is_caught(void **state) {
  char *scratch = scratch_dir("arch-moe-wrong");
  char original[4200], unnormed[4200], config[4200], rotated[4200], rotated_unnormed[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(unnormed, sizeof unnormed, "%s/unnormed", scratch);
  snprintf(config, sizeof config, "%s/mixtral.yaml", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  snprintf(rotated_unnormed, sizeof rotated_unnormed, "%s/rotated-unnormed", scratch);
  synth_or_fail(&mixtral, original);
  copy_checkpoint(original, unnormed);
  edit_tensor(unnormed, "model.layers.1.post_attention_layernorm.weight", 0, 1);
  write_builtin_with_mode(config, "mixtral", "hadamard");
  rotate_or_fail(original, rotated, config, 7);
  rotate_or_fail(unnormed, rotated_unnormed, config, 7);
  check_equivalent_logits(original, rotated, 1e-9, "mixtral hadamard");
  replace_tensor_bytes(rotated, rotated_unnormed, "model.layers.1.block_sparse_moe.experts.1.w1.weight");
  logit_diff d = compare_checkpoints(original, rotated, 24);
  printf("  expert 1 of layer 1 without the norm fused: relative %.3g\n", d.relative);
  assert_true(d.relative > 1e-4);
  scratch_remove(scratch);
  free(scratch);
}

/* The LLaMA fuse map of transformer_universal does not fit a MoE layer: refused, naming it. */
static void universal_config_is_refused(void **state) {
  char *scratch = scratch_dir("arch-moe-universal");
  char original[4200], out[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(out, sizeof out, "%s/out", scratch);
  synth_or_fail(&mixtral, original);
  rotq_rotate_options o = {.model_dir = original, .output_dir = out, .config = "transformer_universal"};
  rotq_error err = {{0}};
  assert_int_equal(rotq_rotate(&o, &err), -1);
  printf("  %s\n", err.message);
  assert_non_null(strstr(err.message, "mlp.up_proj"));
  assert_non_null(strstr(err.message, "--config mixtral"));
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(mixtral_is_equivalent),       cmocka_unit_test(qwen2_moe_is_equivalent),
      cmocka_unit_test(qwen3_moe_is_equivalent),     cmocka_unit_test(skipped_expert_fusion_is_caught),
      cmocka_unit_test(universal_config_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
