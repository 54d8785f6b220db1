/* Nemotron-H (Mamba-2 / attention / MLP hybrid) with the built-in nemotron_h config: the Mamba-2
 * in_proj takes R1 on its input (the layer's norm fused in), out_proj R1 on its output, attention
 * and MLP layers as usual; the rotated checkpoint computes the original's function in every mode.
 * out_proj left without R1 is caught. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/arch_support.h"
#include "support/test_support.h"

static const synth_spec nemotron_h = {.architecture = "NemotronHForCausalLM",
                                      .hidden_size = 64,
                                      .intermediate_size = 128,
                                      .num_layers = 5,
                                      .num_heads = 4,
                                      .num_kv_heads = 2,
                                      .head_dim = 16,
                                      .vocab_size = 72,
                                      .dtype = DTYPE_F64,
                                      .seed = 51,
                                      .hybrid_override_pattern = "M-M*M",
                                      .mamba_num_heads = 8,
                                      .mamba_head_dim = 8,
                                      .ssm_state_size = 16,
                                      .n_groups = 2,
                                      .conv_kernel = 4};

/* Every layer kind, MoE ('E', Nemotron-3: router with e_score_correction_bias, relu² experts, shared
 * expert, two expert groups) included. */
static const synth_spec nemotron_h_moe = {.architecture = "NemotronHForCausalLM",
                                          .hidden_size = 64,
                                          .intermediate_size = 96,
                                          .moe_intermediate_size = 32,
                                          .num_experts = 8,
                                          .num_experts_per_tok = 2,
                                          .num_layers = 6,
                                          .num_heads = 4,
                                          .num_kv_heads = 2,
                                          .head_dim = 16,
                                          .vocab_size = 72,
                                          .dtype = DTYPE_F64,
                                          .seed = 52,
                                          .hybrid_override_pattern = "ME*-EM",
                                          .mamba_num_heads = 8,
                                          .mamba_head_dim = 8,
                                          .ssm_state_size = 16,
                                          .n_groups = 2,
                                          .conv_kernel = 4};

static void nemotron_h_is_equivalent(void **state) { check_family_equivalent(&nemotron_h, "nemotron-h", "nemotron_h"); }

static void nemotron_h_moe_is_equivalent(void **state) {
  check_family_equivalent(&nemotron_h_moe, "nemotron-h-moe", "nemotron_h");
}

/* out_proj of the Mamba-2 mixer of layer 2 without R1 (the original's bytes): caught. */
static void unrotated_out_proj_is_caught(void **state) {
  char *scratch = scratch_dir("arch-nemotron-h-wrong");
  char original[4200], config[4200], rotated[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(config, sizeof config, "%s/nemotron_h.yaml", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  synth_or_fail(&nemotron_h, original);
  write_builtin_with_mode(config, "nemotron_h", "hadamard");
  rotate_or_fail(original, rotated, config, 7);
  replace_tensor_bytes(rotated, original, "backbone.layers.2.mixer.out_proj.weight");
  logit_diff d = compare_checkpoints(original, rotated, 24);
  printf("  Mamba-2 out_proj of layer 2 without R1: relative %.3g\n", d.relative);
  assert_true(d.relative > 1e-4);
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(nemotron_h_is_equivalent),
      cmocka_unit_test(nemotron_h_moe_is_equivalent),
      cmocka_unit_test(unrotated_out_proj_is_caught),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
