/* Llama-4 text (Llama4ForCausalLM): a dense layer, then an MoE layer (interleave step 2) whose router's
 * sigmoid top-1 score scales the expert's input, experts stored fused in [experts, in, out] layout
 * (gate | up halves), a shared expert; RoPE on pairs, NoPE layers with temperature tuning (floor
 * scale 4), L2 qk-norm and chunked attention (chunks of 5 over 24 tokens). The rotated checkpoint
 * computes the original's function to 1e-12 (relative, float64) in the three modes; gate_up_proj
 * or the shared expert rotated without the post-attention norm fused, or down_proj left unrotated, are
 * caught by the same check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/arch_support.h"
#include "support/test_support.h"

static const synth_spec llama4 = {.architecture = "Llama4ForCausalLM",
                                  .hidden_size = 64,
                                  .intermediate_size = 96,
                                  .moe_intermediate_size = 40,
                                  .num_layers = 4,
                                  .num_heads = 4,
                                  .num_kv_heads = 2,
                                  .head_dim = 16,
                                  .vocab_size = 72,
                                  .dtype = DTYPE_F64,
                                  .seed = 20,
                                  .num_experts = 4,
                                  .num_experts_per_tok = 1,
                                  .sliding_window = 5};

static void llama4_is_equivalent(void **state) {
  (void)state;
  char *scratch = scratch_dir("arch-llama4");
  char original[4200];
  snprintf(original, sizeof original, "%s/llama4", scratch);
  synth_or_fail(&llama4, original);
  rotate_all_modes_and_check(scratch, original, "llama4", "llama4", 1e-12);
  scratch_remove(scratch);
  free(scratch);
}

/* The rotated checkpoint with `tensor` from a rotation of a copy whose `edited` norm is all ones
 * (or, edited NULL, the original's unrotated tensor): the logits no longer match. */
static void wrong_tensor_is_caught(const char *tensor, const char *edited, const char *label) {
  char *scratch = scratch_dir("arch-llama4-wrong");
  char original[4200], other[4200], config[4200], rotated[4200], rotated_other[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(other, sizeof other, "%s/other", scratch);
  snprintf(config, sizeof config, "%s/llama4.yaml", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  snprintf(rotated_other, sizeof rotated_other, "%s/rotated-other", scratch);
  synth_or_fail(&llama4, original);
  copy_checkpoint(original, other);
  if (edited) edit_tensor(other, edited, 0, 1);
  write_builtin_with_mode(config, "llama4", "hadamard");
  rotate_or_fail(original, rotated, config, 7);
  check_equivalent_logits(original, rotated, 1e-12, "llama4 hadamard");
  if (edited)
    rotate_or_fail(other, rotated_other, config, 7);
  else
    copy_checkpoint(original, rotated_other);
  replace_tensor_bytes(rotated, rotated_other, tensor);
  logit_diff d = compare_checkpoints(original, rotated, 24);
  printf("  %s: relative %.3g\n", label, d.relative);
  assert_true(d.relative > 1e-4);
  scratch_remove(scratch);
  free(scratch);
}

static void unfused_gate_up_is_caught(void **state) {
  (void)state;
  wrong_tensor_is_caught("model.layers.1.feed_forward.experts.gate_up_proj",
                         "model.layers.1.post_attention_layernorm.weight", "gate_up_proj without the norm fused");
}

static void unfused_shared_expert_is_caught(void **state) {
  (void)state;
  wrong_tensor_is_caught("model.layers.3.feed_forward.shared_expert.up_proj.weight",
                         "model.layers.3.post_attention_layernorm.weight", "shared expert without the norm fused");
}

static void unrotated_down_proj_is_caught(void **state) {
  (void)state;
  wrong_tensor_is_caught("model.layers.1.feed_forward.experts.down_proj", NULL, "experts' down_proj left unrotated");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(llama4_is_equivalent),
      cmocka_unit_test(unfused_gate_up_is_caught),
      cmocka_unit_test(unfused_shared_expert_is_caught),
      cmocka_unit_test(unrotated_down_proj_is_caught),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
